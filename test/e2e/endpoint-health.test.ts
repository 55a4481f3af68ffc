// Endpoint health in the control plane: a caller proxy (joined with a token, its config stream on
// mTLS) runs an HTTP health check on `web`, two endpoints of which one starts failing. Its report
// reaches the control plane: `GET /api/v1/endpoints?service=default/web` shows the failing one
// FAILING_HEALTH_CHECKS by that caller and the other HEALTHY, then HEALTHY again once it recovers;
// `weft proxy-config … endpoints` shows the HEALTH column from the control plane, and with `--admin`
// from the proxy itself; a service nobody checks is `checked: false`; the view goes with the proxy.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { applyYaml, eventually, joinToken, runWeft, startControl, startProxyWith, type RunningControl, type RunningProxy, listenLocal } from './harness.js';

/** An app whose `/healthz` answers `health`; counts the checks. */
interface App {
  port: number;
  health: number;
  checks: number;
  close(): Promise<void>;
}

async function startApp(): Promise<App> {
  const app: App = { port: 0, health: 200, checks: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    req.resume();
    const status = req.url === '/healthz' ? (app.checks++, app.health) : 200;
    res.writeHead(status, { 'content-length': 2 });
    res.end('ok');
  });
  const listening = await listenLocal(server);
  app.port = listening.port;
  app.close = listening.close;
  return app;
}

const mesh = (a: App, b: App, plain: App): string => `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: web }
spec: { selector: { app: web }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: plain }
spec: { selector: { app: plain }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: web-a, labels: { app: web } }
spec: { address: 127.0.0.1, ports: { http: ${a.port} } }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: web-b, labels: { app: web } }
spec: { address: 127.0.0.1, ports: { http: ${b.port} } }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: plain-1, labels: { app: plain } }
spec: { address: 127.0.0.1, ports: { http: ${plain.port} } }
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: web }
spec:
  targetRefs: [{ kind: Service, name: web }]
  healthCheck: { http: { path: /healthz }, interval: 300ms, timeout: 250ms, healthyThreshold: 2, unhealthyThreshold: 2 }
`;

interface EndpointView {
  workload: string;
  address: string;
  health: string;
  checked: boolean;
  checkedBy: number;
  excludedBy: number;
  by: Array<{ proxy: string; health: string; reason: string | null; until: string | null }>;
  summary: string;
}
interface ServiceView {
  service: string;
  policy: { outlierDetection: boolean; healthCheck: boolean };
  reporting: string[];
  endpoints: EndpointView[];
}

let cp: RunningControl;
let client: RunningProxy;
let apps: App[] = [];
const closers: Array<() => Promise<unknown>> = [];

async function service(name: string): Promise<ServiceView> {
  const r = await cp.api(`/api/v1/endpoints?service=default/${name}`);
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as ServiceView;
}

const byWorkload = (v: ServiceView): Record<string, EndpointView> => Object.fromEntries(v.endpoints.map((e) => [e.workload.replace('default/', ''), e]));

before(async () => {
  cp = await startControl();
  closers.push(() => cp.stop());
  apps = await Promise.all([startApp(), startApp(), startApp()]);
  closers.push(async () => Promise.all(apps.map((a) => a.close())));
  await applyYaml(cp, mesh(apps[0]!, apps[1]!, apps[2]!));
  client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client-1', '--register', '--label', 'app=client', '--service-account', 'client', '--token', await joinToken(cp, 'client'), '-q']);
  closers.push(() => client.stop());
});

after(async () => {
  for (const c of closers.reverse()) await c();
});

test('a caller\'s health check verdicts reach the control plane, the CLI and go with the proxy', { timeout: 60_000 }, async () => {
  // The report travels on the mTLS stream, once the proxy has its certificate.
  await eventually(async () => {
    const items = ((await (await cp.api('/api/v1/proxies')).json()) as { items: Array<{ id: string; transport: string | null }> }).items;
    return items.some((p) => p.id === 'default/client-1' && p.transport === 'mtls');
  }, 15_000, 'client-1 on an mTLS stream');
  await eventually(async () => {
    const v = await service('web');
    return v.endpoints.length === 2 && v.endpoints.every((e) => e.checked && e.health === 'HEALTHY');
  }, 10_000, 'both web endpoints checked and HEALTHY');
  let v = await service('web');
  assert.deepEqual(v.policy, { outlierDetection: false, healthCheck: true });
  assert.deepEqual(v.reporting, ['default/client-1']);
  assert.equal(byWorkload(v)['web-a']!.summary, 'checked by 1 caller');

  // Nobody checks `plain`: its endpoint is HEALTHY and unchecked.
  const plain = await service('plain');
  assert.equal(plain.endpoints.length, 1);
  assert.equal(plain.endpoints[0]!.health, 'HEALTHY');
  assert.equal(plain.endpoints[0]!.checked, false);
  assert.equal(plain.endpoints[0]!.summary, 'not checked');

  // web-a starts failing its checks: the caller takes it out and the control plane shows why.
  const failedAt = Date.now();
  apps[0]!.health = 503;
  await eventually(async () => byWorkload(await service('web'))['web-a']!.health === 'FAILING_HEALTH_CHECKS', 10_000, 'web-a FAILING_HEALTH_CHECKS in the control plane');
  const failSeenMs = Date.now() - failedAt;
  v = await service('web');
  const a = byWorkload(v)['web-a']!;
  const b = byWorkload(v)['web-b']!;
  assert.equal(a.excludedBy, 1);
  assert.equal(a.checkedBy, 1);
  assert.equal(a.by.length, 1);
  assert.equal(a.by[0]!.proxy, 'default/client-1');
  assert.equal(a.by[0]!.health, 'FAILING_HEALTH_CHECKS');
  assert.match(a.by[0]!.reason ?? '', /503/);
  assert.equal(a.summary, 'excluded by 1 of 1 caller that check it');
  assert.equal(b.health, 'HEALTHY');
  assert.equal(b.excludedBy, 0);

  // The CLI: the HEALTH column from the control plane, and from the proxy's admin port with --admin.
  const fromCp = await runWeft(['proxy-config', 'client-1', 'endpoints'], cp.url);
  assert.equal(fromCp.code, 0, fromCp.stderr);
  const row = (out: string, wl: string): string => out.split('\n').find((l) => l.startsWith('web.default:80') && l.includes(`default/${wl}`)) ?? '';
  assert.match(fromCp.stdout, /\bHEALTH\b/);
  assert.match(row(fromCp.stdout, 'web-a'), /FAILING_HEALTH_CHECKS \(.*503.*\)/);
  assert.match(row(fromCp.stdout, 'web-b'), /HEALTHY/);
  assert.match(fromCp.stdout.split('\n').find((l) => l.startsWith('plain.default:80')) ?? '', /unchecked/);
  const fromAdmin = await runWeft(['proxy-config', 'client-1', 'endpoints', '--admin', `127.0.0.1:${client.admin}`], cp.url);
  assert.equal(fromAdmin.code, 0, fromAdmin.stderr);
  assert.match(row(fromAdmin.stdout, 'web-a'), /FAILING_HEALTH_CHECKS/);
  assert.match(row(fromAdmin.stdout, 'web-b'), /HEALTHY/);
  const badAdmin = await runWeft(['proxy-config', 'client-1', 'endpoints', '--admin', '127.0.0.1:1'], cp.url);
  assert.notEqual(badAdmin.code, 0);
  assert.match(badAdmin.stderr, /--admin: cannot read http:\/\/127\.0\.0\.1:1\/clusters/);

  // Back: two passing checks, and the control plane shows it HEALTHY again.
  const recoveredAt = Date.now();
  apps[0]!.health = 200;
  await eventually(async () => byWorkload(await service('web'))['web-a']!.health === 'HEALTHY', 10_000, 'web-a HEALTHY again');
  const recoverSeenMs = Date.now() - recoveredAt;
  const again = await runWeft(['proxy-config', 'client-1', 'endpoints'], cp.url);
  assert.match(row(again.stdout, 'web-a'), /HEALTHY/);
  assert.doesNotMatch(again.stdout, /FAILING/);

  // The caller leaves: its view goes with it, and nobody checks web any more.
  await client.stop();
  await eventually(async () => (await service('web')).reporting.length === 0, 10_000, 'the view dropped with the proxy');
  v = await service('web');
  assert.ok(v.endpoints.every((e) => e.health === 'HEALTHY' && !e.checked && e.checkedBy === 0));
  const metrics = await (await cp.api('/metrics')).text();
  const reports = Number(/weft_control_endpoint_health_reports_total\{result="accepted"\} (\d+)/.exec(metrics)?.[1] ?? '0');
  assert.ok(reports >= 3, `at least three reports (healthy, failing, recovered): ${reports}`);
  assert.match(metrics, /weft_control_endpoint_health_reports_total\{result="malformed"\} 0/);
  console.log(`endpoint health: web-a failing seen by the control plane ${failSeenMs} ms after its app failed (checks every 300 ms, 2 to fail), recovered seen after ${recoverSeenMs} ms; ${reports} reports, 0 malformed; checks web-a ${apps[0]!.checks}, web-b ${apps[1]!.checks}`);
});
