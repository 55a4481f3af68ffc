// Outlier detection and active health checks end to end: a caller `weft proxy --file` in front of
// apps in this process whose answers the tests change. Ejection after consecutive 503s (and its
// return, its growing length, maxEjectionPercent); an HTTP check through the endpoint's own proxy
// that takes it out and brings it back; a TCP check that takes a dead endpoint out.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Agent, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { writeFileSync } from 'node:fs';
import { eventually, proxyMetrics, startProxy, tempFile, type RunningProxy, listenLocal } from './harness.js';

/** An app whose `/` answers `status` (naming itself) and `/healthz` answers `health`; counts both. */
interface App {
  name: string;
  port: number;
  status: number;
  health: number;
  hits: number;
  checks: number;
  checkAgents: Set<string>;
  close(): Promise<void>;
}

async function startApp(name: string): Promise<App> {
  const app: App = { name, port: 0, status: 200, health: 200, hits: 0, checks: 0, checkAgents: new Set(), close: async () => {} };
  const server: Server = createServer((req, res) => {
    req.resume();
    if (req.url === '/healthz') {
      app.checks++;
      app.checkAgents.add(String(req.headers['user-agent']));
      res.writeHead(app.health, { 'content-length': 2 });
      res.end('hc');
      return;
    }
    app.hits++;
    res.writeHead(app.status, { 'content-type': 'text/plain', 'content-length': name.length });
    res.end(name);
  });
  const listening = await listenLocal(server);
  app.port = listening.port;
  app.close = listening.close;
  return app;
}

async function startTcpEcho(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<import('node:net').Socket>();
  const server: TcpServer = createTcpServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function get(port: number, host: string, agent?: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Sends `n` requests one after another; returns how many each app answered and the statuses. */
async function burst(port: number, host: string, n: number): Promise<{ by: Record<string, number>; errors: number }> {
  const by: Record<string, number> = {};
  let errors = 0;
  for (let i = 0; i < n; i++) {
    const r = await get(port, host);
    by[r.body] = (by[r.body] ?? 0) + 1;
    if (r.status >= 500) errors++;
  }
  return { by, errors };
}

interface EndpointState {
  workload: string;
  health: string;
  ejectedUntil?: string | null;
  ejections?: number;
  failingHealthChecks?: boolean;
}

async function endpoints(p: RunningProxy, cluster: string): Promise<Record<string, EndpointState>> {
  const all = (await (await fetch(`http://127.0.0.1:${p.admin}/clusters`)).json()) as Array<{ name: string; endpoints: EndpointState[] }>;
  const c = all.find((x) => x.name === cluster);
  if (c === undefined) throw new Error(`no cluster ${cluster}`);
  return Object.fromEntries(c.endpoints.map((e) => [e.workload.replace('default/', ''), e]));
}

const metricValue = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};

function mesh(p: { api: App[]; web: App[]; webInbound: number | null; tcp: number[] }): string {
  const svc = (name: string, port: number, protocol: string) => `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: ${name} }
spec: { selector: { app: ${name} }, ports: [{ name: p, port: ${port}, protocol: ${protocol} }] }
---
`;
  const wl = (name: string, app: string, port: number, extra = '') => `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: ${name}, labels: { app: ${app} } }
spec: { address: 127.0.0.1, ports: { p: ${port} }${extra} }
---
`;
  return (
    svc('api', 80, 'HTTP') +
    svc('web', 80, 'HTTP') +
    svc('raw', 9000, 'TCP') +
    p.api.map((a) => wl(a.name, 'api', a.port)).join('') +
    wl(p.web[0]!.name, 'web', p.web[0]!.port, p.webInbound === null ? '' : `, proxy: { inboundPort: ${p.webInbound} }`) +
    wl(p.web[1]!.name, 'web', p.web[1]!.port) +
    p.tcp.map((port, i) => wl(`raw-${i + 1}`, 'raw', port)).join('') +
    wl('client-1', 'client', 1) +
    `apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: api }
spec:
  targetRefs: [{ kind: Service, name: api }]
  loadBalancer: { type: RoundRobin }
  outlierDetection: { consecutive5xx: 3, baseEjectionTime: 2s, interval: 1m, maxEjectionPercent: 10 }
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: web }
spec:
  targetRefs: [{ kind: Service, name: web }]
  loadBalancer: { type: RoundRobin }
  healthCheck: { http: { path: /healthz }, interval: 300ms, timeout: 250ms, healthyThreshold: 2, unhealthyThreshold: 2 }
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: raw }
spec:
  targetRefs: [{ kind: Service, name: raw }]
  healthCheck: { tcp: {}, interval: 300ms, timeout: 250ms, unhealthyThreshold: 2 }
`
  );
}

describe('outlier detection and health checks', () => {
  let api: App[];
  let web: App[];
  let tcp: Array<Awaited<ReturnType<typeof startTcpEcho>>>;
  let webProxy: RunningProxy;
  let proxy: RunningProxy;

  before(async () => {
    api = await Promise.all(['api-a', 'api-b', 'api-c'].map(startApp));
    web = await Promise.all(['web-x', 'web-y'].map(startApp));
    tcp = await Promise.all([startTcpEcho(), startTcpEcho()]);
    const file = tempFile('mesh.yaml', mesh({ api, web, webInbound: null, tcp: tcp.map((t) => t.port) }));
    // web-x has a proxy of its own: the caller's checks go through it, as its requests do.
    webProxy = await startProxy(file, 'web-x');
    writeFileSync(file, mesh({ api, web, webInbound: webProxy.inbound, tcp: tcp.map((t) => t.port) }));
    proxy = await startProxy(file, 'client-1', ['--upstream', 'raw:9000=0']);
  });

  after(async () => {
    await proxy?.stop();
    await webProxy?.stop();
    for (const a of [...(api ?? []), ...(web ?? [])]) await a.close();
    for (const t of tcp ?? []) await t.close();
  });

  test('503s in a row eject an endpoint at once; it returns after the ejection time, which grows; maxEjectionPercent holds', async () => {
    const [a, b, c] = api;
    a!.status = 503;
    // Round robin over three: a's third 503 comes within the first 9 requests and ejects it.
    const first = await burst(proxy.outbound, 'api', 9);
    assert.equal(first.errors, 3, 'exactly the three 503s before the ejection');
    const hitsA = a!.hits;
    const afterEjection = await burst(proxy.outbound, 'api', 30);
    assert.equal(a!.hits, hitsA, 'nothing reaches the ejected endpoint');
    assert.equal(afterEjection.errors, 0);
    assert.deepEqual(afterEjection.by, { 'api-b': 15, 'api-c': 15 });
    let state = await endpoints(proxy, 'api.default:80');
    assert.equal(state['api-a']!.health, 'EJECTED');
    const firstLength = Date.parse(state['api-a']!.ejectedUntil!) - Date.now();
    assert.ok(firstLength > 0 && firstLength <= 2000, `first ejection ends within 2s (${firstLength} ms left)`);
    let metrics = await proxyMetrics(proxy);
    assert.equal(metricValue(metrics, 'weft_outlier_ejections_total{destination_service="api.default",reason="consecutive_5xx"}'), 1);
    assert.equal(metricValue(metrics, 'weft_endpoints_ejected{destination_service="api.default"}'), 1);

    // Back after its time: it takes traffic again, fails three more, and is out for twice as long.
    await eventually(async () => (await endpoints(proxy, 'api.default:80'))['api-a']!.health === 'HEALTHY', 4000, 'api-a back');
    const second = await burst(proxy.outbound, 'api', 9);
    assert.equal(second.errors, 3);
    state = await endpoints(proxy, 'api.default:80');
    assert.equal(state['api-a']!.health, 'EJECTED');
    assert.equal(state['api-a']!.ejections, 2);
    const secondLength = Date.parse(state['api-a']!.ejectedUntil!) - Date.now();
    assert.ok(secondLength > 3000 && secondLength <= 4000, `second ejection lasts 4s (${secondLength} ms left)`);

    // While a is out, b fails too: 10 % of three is less than one, and only one may be out at once.
    b!.status = 503;
    const both = await burst(proxy.outbound, 'api', 12);
    state = await endpoints(proxy, 'api.default:80');
    assert.equal(state['api-b']!.health, 'HEALTHY', 'maxEjectionPercent keeps b in');
    assert.equal(both.by['api-a'], undefined);
    metrics = await proxyMetrics(proxy);
    assert.ok(metricValue(metrics, 'weft_outlier_ejections_skipped_total{destination_service="api.default",reason="consecutive_5xx"}') >= 1);
    assert.equal(metricValue(metrics, 'weft_outlier_ejections_total{destination_service="api.default",reason="consecutive_5xx"}'), 2);
    a!.status = b!.status = c!.status = 200;
    console.log(`outlier: first ejection after 3 of 9 requests failed, 0 of 30 after it reached the ejected endpoint; ejections lasted ${Math.round(firstLength)}+ ms then ${Math.round(secondLength)}+ ms; b kept in by maxEjectionPercent (${both.errors} 503s of 12)`);
  });

  test('an HTTP check through the endpoint\'s proxy takes a failing endpoint out and brings it back', async () => {
    const [x, y] = web;
    await eventually(() => x!.checks >= 2 && y!.checks >= 2, 5000, 'both web endpoints checked');
    assert.deepEqual([...x!.checkAgents], ['weft-health-check']);
    x!.health = 503;
    await eventually(async () => (await endpoints(proxy, 'web.default:80'))['web-x']!.health === 'FAILING_HEALTH_CHECKS', 5000, 'web-x failing its checks');
    const out = await burst(proxy.outbound, 'web', 20);
    assert.deepEqual(out.by, { 'web-y': 20 }, 'traffic only to the endpoint that passes');
    x!.health = 200;
    await eventually(async () => (await endpoints(proxy, 'web.default:80'))['web-x']!.health === 'HEALTHY', 5000, 'web-x back');
    const back = await burst(proxy.outbound, 'web', 20);
    assert.deepEqual(back.by, { 'web-x': 10, 'web-y': 10 });
    const metrics = await proxyMetrics(proxy);
    const failed = metricValue(metrics, 'weft_health_checks_total{destination_service="web.default",result="failure"}');
    const passed = metricValue(metrics, 'weft_health_checks_total{destination_service="web.default",result="success"}');
    assert.ok(failed >= 2 && passed >= 4, `checks counted (${passed} passed, ${failed} failed)`);
    // The checks of web-x went through its proxy: its inbound side counted them.
    assert.match(await proxyMetrics(webProxy), /weft_requests_total\{direction="inbound",[^}]*response_code="503"[^}]*\} [1-9]/);
    console.log(`http check: web-x out after failing checks (0 of 20 requests to it), back after passing (10 of 20); ${passed} checks passed, ${failed} failed`);
  });

  test('a TCP check takes a dead endpoint out', async () => {
    const local = proxy.upstreams['raw.default:9000']!;
    await tcp[1]!.close();
    await eventually(async () => (await endpoints(proxy, 'raw.default:9000'))['raw-2']!.health === 'FAILING_HEALTH_CHECKS', 5000, 'raw-2 failing its checks');
    let ok = 0;
    for (let i = 0; i < 10; i++) {
      const echoed = await new Promise<boolean>((resolve) => {
        const s = connect(local, '127.0.0.1');
        s.once('error', () => resolve(false));
        s.once('data', (d: Buffer) => {
          resolve(d.toString() === `ping ${i}`);
          s.destroy();
        });
        s.write(`ping ${i}`);
        setTimeout(() => {
          s.destroy();
          resolve(false);
        }, 2000);
      });
      if (echoed) ok++;
    }
    assert.equal(ok, 10, 'every connection reaches the live endpoint');
    const metrics = await proxyMetrics(proxy);
    assert.equal(metricValue(metrics, 'weft_endpoints_failing_health_checks{destination_service="raw.default"}'), 1);
    console.log(`tcp check: dead raw-2 out; ${ok}/10 connections echoed through raw-1`);
  });
});
