// The control plane with real proxies: live route changes, refused resources, NACKs, a control
// plane killed under load, lapsed leases, and kill -9 during applies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, createServer, request, type Server } from 'node:http';
import { connect } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  apiFetch,
  eventually,
  freePort,
  runWeft,
  startControl,
  startEcho,
  startProxyWith,
  startTcpEcho,
  tempFile,
  type RunningControl,
  type RunningProxy,
} from './harness.js';

const SERVICES = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo-v1 }
spec: { selector: { app: echo, version: v1 }, ports: [{ name: http, port: 80 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo-v2 }
spec: { selector: { app: echo, version: v2 }, ports: [{ name: http, port: 80 }] }
`;

const split = (v1: number, v2: number): string => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo-split }
spec:
  parentRefs: [{ kind: Service, name: echo, port: 80 }]
  rules:
  - backendRefs: [{ name: echo-v1, port: 80, weight: ${v1} }, { name: echo-v2, port: 80, weight: ${v2} }]
`;

async function apply(cp: RunningControl, yaml: string): Promise<{ status: number; body: any }> {
  const res = await apiFetch(`${cp.url}/api/v1/apply`, { method: 'POST', body: yaml, headers: { 'content-type': 'application/yaml' } });
  return { status: res.status, body: await res.json() };
}

async function getJson(url: string): Promise<any> {
  const res = await apiFetch(url);
  return res.json();
}

const agent = new Agent({ keepAlive: true, maxSockets: 32 });

/** GET through a proxy's outbound listener; resolves with status and the x-upstream header. */
function viaProxy(port: number, host: string, path = '/'): Promise<{ status: number; upstream: string | undefined; error: string | undefined }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: `http://${host}${path}`, headers: { host }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, upstream: res.headers['x-upstream'] as string | undefined, error: res.headers['weft-error'] as string | undefined }));
    });
    req.on('error', (e) => resolve({ status: 0, upstream: undefined, error: e.message }));
    req.end();
  });
}

async function allSynced(cp: RunningControl, n: number): Promise<boolean> {
  const { items } = await getJson(`${cp.url}/api/v1/proxies`);
  return items.length >= n && items.every((p: any) => p.connected && p.notice === null && Object.values(p.types).every((t: any) => t.state === 'SYNCED' && t.acked === t.latest));
}

/** The workloads behind echo.default:80 in a proxy's configuration, sorted. */
async function echoEndpoints(proxy: RunningProxy): Promise<string[]> {
  const dump = await getJson(`http://127.0.0.1:${proxy.admin}/config_dump`);
  const cluster = dump.snapshot.clusters.find((c: any) => c.name === 'echo.default:80');
  return cluster === undefined ? [] : cluster.endpoints.map((e: any) => e.workload).sort();
}

/** Two echo apps (v1, v2) with registering sidecars, and a client sidecar. */
async function startMesh(cp: RunningControl, clientExtra: string[] = []) {
  const v1 = await startEcho('v1');
  const v2 = await startEcho('v2');
  const sidecar = (name: string, port: number, version: string): Promise<RunningProxy> =>
    startProxyWith(['--control-plane', cp.url, '--workload', name, '--app-port', `http=${port}`, '--label', 'app=echo', '--label', `version=${version}`]);
  const s1 = await sidecar('echo-1', v1.port, 'v1');
  const s2 = await sidecar('echo-2', v2.port, 'v2');
  const client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--app-port', `http=${v1.port}`, '--label', 'app=client', ...clientExtra]);
  await eventually(() => allSynced(cp, 3), 10_000, 'three proxies synced');
  return {
    v1, v2, s1, s2, client,
    async close() {
      await Promise.all([client.stop(), s1.stop(), s2.stop()]);
      await Promise.all([v1.close(), v2.close()]);
    },
  };
}

test('applied route changes steer traffic live; a bad resource is refused by field while the rest applies', async () => {
  const cp = await startControl();
  const mesh = await startMesh(cp, []).catch(async (e) => {
    await cp.stop();
    throw e;
  });
  try {
    assert.equal((await apply(cp, SERVICES + '---\n' + split(100, 0))).status, 200);
    await eventually(async () => (await viaProxy(mesh.client.outbound, 'echo')).upstream === 'v1', 5000, 'route to v1');
    for (let i = 0; i < 20; i++) assert.equal((await viaProxy(mesh.client.outbound, 'echo')).upstream, 'v1');

    // Shift everything to v2 and time how long the client's proxy takes to acknowledge it.
    const before = Date.now();
    const r = await apply(cp, split(0, 100));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.results, [{ kind: 'HTTPRoute', namespace: 'default', name: 'echo-split', action: 'configured' }]);
    await eventually(async () => (await viaProxy(mesh.client.outbound, 'echo')).upstream === 'v2', 5000, 'route to v2');
    const { items } = await getJson(`${cp.url}/api/v1/proxies`);
    const client = items.find((p: any) => p.id === 'default/client');
    console.log(`# route change acknowledged by the client proxy ${client.types.routes.ackedAt - before} ms after the apply was sent`);
    for (let i = 0; i < 20; i++) assert.equal((await viaProxy(mesh.client.outbound, 'echo')).upstream, 'v2');

    // One bad document among good ones: 422 naming the field, and the good ones are in force.
    const bad = await apply(cp, `${split(50, 50)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: broken }
spec:
  parentRefs: [{ kind: Service, name: echo-v1 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: "no-slash" } }]
    backendRefs: [{ name: echo-v1, port: 80 }]
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: extra }
spec: { selector: { app: extra }, ports: [{ name: http, port: 8080, protocol: SCTP }] }
`);
    assert.equal(bad.status, 422);
    const texts = bad.body.errors.map((e: any) => e.text);
    assert.ok(texts.some((t: string) => /HTTPRoute\/broken: spec\.rules\[0\]\.matches\[0\]\.path\.value: must start with "\/"/.test(t)), texts.join('\n'));
    assert.ok(texts.some((t: string) => /Service\/extra: spec\.ports\[0\]\.protocol/.test(t)), texts.join('\n'));
    assert.equal(bad.body.errors.length, 2, 'every error of the request, not only the first');
    assert.deepEqual(bad.body.results.find((x: any) => x.name === 'echo-split'), { kind: 'HTTPRoute', namespace: 'default', name: 'echo-split', action: 'configured' });
    assert.equal((await apiFetch(`${cp.url}/api/v1/resources/HTTPRoute/default/broken`)).status, 404);
    const seen = new Set<string>();
    await eventually(async () => {
      seen.add((await viaProxy(mesh.client.outbound, 'echo')).upstream ?? '');
      return seen.has('v1') && seen.has('v2');
    }, 5000, 'the 50/50 split in force');

    // A resource that is valid but refers to nothing gets a status with the problem, and the rest works.
    const dangling = await apply(cp, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: to-nowhere }
spec:
  parentRefs: [{ kind: Service, name: echo-v1 }]
  rules: [{ backendRefs: [{ name: ghost, port: 80 }] }]
`);
    assert.equal(dangling.status, 200);
    assert.match(dangling.body.warnings[0].text, /backendRefs\[0\]: backend Service ghost not found/);
    const status = (await getJson(`${cp.url}/api/v1/resources/HTTPRoute/default/to-nowhere`)).status;
    assert.equal(status.state, 'Problems');
    const check = await runWeft(['check'], cp.url);
    assert.equal(check.code, 1, check.stdout);
    assert.match(check.stdout, /× 1 resource\(s\) with problems/);
    assert.match(check.stdout, /ghost not found/);

    const get = await runWeft(['get', 'routes', '-o', 'json'], cp.url);
    assert.equal(get.code, 0);
    assert.deepEqual(JSON.parse(get.stdout).items.map((i: any) => i.metadata.name), ['echo-split', 'to-nowhere']);
    const del = await runWeft(['delete', 'route', 'to-nowhere'], cp.url);
    assert.equal(del.code, 0, del.stderr);
    const ok = await runWeft(['check', '--wait', '5s'], cp.url);
    assert.equal(ok.code, 0, ok.stdout);
  } finally {
    await mesh.close();
    await cp.stop();
  }
});

test('a proxy NACKs a configuration it cannot apply, keeps serving the last good one, and check says so', async () => {
  const cp = await startControl();
  const tcp = await startTcpEcho();
  const http = await startEcho('db-admin');
  const db = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: db }
spec: { selector: { app: db }, ports: [{ name: sql, port: 5432, protocol: TCP }, { name: http, port: 80 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: db-1, labels: { app: db } }
spec: { address: 127.0.0.1, ports: { sql: ${tcp.port}, http: ${http.port} } }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: app-1, labels: { app: app } }
spec: { address: 127.0.0.1, ports: { http: 1 } }
`;
  assert.equal((await apply(cp, db)).status, 200);
  const app = await startProxyWith(['--control-plane', cp.url, '--workload', 'app-1', '--upstream', 'db:5432=0']);
  try {
    await eventually(() => allSynced(cp, 1), 10_000, 'proxy synced');
    const local = app.upstreams['db.default:5432']!;
    const roundTrip = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = connect(local, '127.0.0.1', () => s.end('ping'));
        let got = '';
        s.on('data', (c) => (got += c));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
    assert.equal(await roundTrip(), 'ping');

    // The TCP port moves: this proxy's local --upstream port would point at nothing, so it refuses.
    assert.equal((await apply(cp, db.replace('port: 5432, protocol: TCP', 'port: 5433, protocol: TCP'))).status, 200);
    await eventually(async () => {
      const { items } = await getJson(`${cp.url}/api/v1/proxies`);
      return items[0].types.routes.state === 'NACKED';
    }, 5000, 'routes NACKED');
    const status = await runWeft(['proxy-status'], cp.url);
    // One push (clusters, endpoints, routes) is applied or refused as a whole, however it arrives.
    assert.match(status.stdout, /default\/app-1\s+yes\s+plaintext\s+NACKED\s+NACKED\s+SYNCED\s+NACKED/);
    assert.match(status.stdout, /refused routes \w+: --upstream db:5432 listens on local port 0, but the configuration has no TCP service db\.default:5432/);
    const check = await runWeft(['check'], cp.url);
    assert.equal(check.code, 1);
    assert.match(check.stdout, /× 1 of 1 proxies not synced/);
    assert.match(check.stdout, /default\/app-1: routes NACKED: --upstream db:5432/);
    // Still serving the last good configuration, TCP and HTTP alike.
    assert.equal(await roundTrip(), 'ping');
    assert.equal((await viaProxy(app.outbound, 'db')).status, 200);
    assert.match(app.stderr(), /configuration refused, keeping the last good one/);

    // Put it back: the proxy takes it and is synced again.
    assert.equal((await apply(cp, db)).status, 200);
    await eventually(() => allSynced(cp, 1), 5000, 'synced again');
    assert.equal((await runWeft(['check'], cp.url)).code, 0);
  } finally {
    await app.stop();
    tcp.close();
    await http.close();
    await cp.stop();
  }
});

test('killing the control plane under load fails no request; on restart the proxies resynchronise', async () => {
  let cp = await startControl(undefined, ['--lease-ttl', '3s']);
  // Restarts reuse the port the first start was given, as a real control plane's address stays put.
  const port = cp.listening.apiPort;
  const mesh = await startMesh(cp);
  let sent = 0;
  const failures: string[] = [];
  let running = true;
  try {
    assert.equal((await apply(cp, SERVICES + '---\n' + split(100, 0))).status, 200);
    await eventually(async () => (await viaProxy(mesh.client.outbound, 'echo')).upstream === 'v1', 5000, 'route to v1');
    // Steady load: 8 concurrent loops for the whole outage, bounded in count and time.
    const deadline = Date.now() + 15_000;
    const loops = Array.from({ length: 8 }, async () => {
      while (running && Date.now() < deadline && sent < 20_000) {
        sent++;
        const r = await viaProxy(mesh.client.outbound, 'echo');
        if (r.status !== 200) failures.push(`${r.status} ${r.error ?? ''}`);
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    cp.proc.kill('SIGKILL');
    await new Promise((r) => cp.proc.once('exit', r));
    await new Promise((r) => setTimeout(r, 1500));
    cp = await startControl(cp.dataDir, ['--api-port', String(port), '--lease-ttl', '3s']);
    await eventually(() => allSynced(cp, 3), 10_000, 'all three proxies back and synced');
    // Resynchronised: a change made after the restart reaches them.
    assert.equal((await apply(cp, split(0, 100))).status, 200);
    await eventually(async () => (await viaProxy(mesh.client.outbound, 'echo')).upstream === 'v2', 5000, 'route to v2 after restart');
    await new Promise((r) => setTimeout(r, 500));
    running = false;
    await Promise.all(loops);
    console.log(`# ${sent} requests across the control plane outage, ${failures.length} failed`);
    assert.ok(sent > 200, `load ran (${sent} requests)`);
    assert.deepEqual(failures, []);
  } finally {
    running = false;
    await mesh.close();
    await cp.stop();
  }
});

test('when a proxy dies its lease lapses and its endpoint leaves the other proxies within the TTL', async () => {
  const cp = await startControl(undefined, ['--lease-ttl', '1s']);
  const mesh = await startMesh(cp);
  try {
    assert.equal((await apply(cp, SERVICES)).status, 200);
    const endpoints = (): Promise<string[]> => echoEndpoints(mesh.client);
    await eventually(async () => (await endpoints()).length === 2, 5000, 'two endpoints');
    assert.deepEqual(await endpoints(), ['default/echo-1', 'default/echo-2']);
    const killedAt = Date.now();
    mesh.s2.proc.kill('SIGKILL');
    await eventually(async () => (await endpoints()).length === 1, 3000, 'endpoint withdrawn');
    const took = Date.now() - killedAt;
    console.log(`# endpoint withdrawn ${took} ms after its proxy was killed (lease TTL 1000 ms)`);
    assert.ok(took >= 500, `not before the lease could lapse (${took} ms)`);
    assert.ok(took <= 1000 + 500, `within the TTL, plus delivery (${took} ms)`);
    assert.deepEqual(await endpoints(), ['default/echo-1']);
    for (let i = 0; i < 10; i++) assert.equal((await viaProxy(mesh.client.outbound, 'echo')).upstream, 'v1');

    // A proxy that leaves cleanly (SIGTERM) releases its lease at once.
    const leftAt = Date.now();
    await mesh.s1.stop();
    const wl = await getJson(`${cp.url}/api/v1/resources?kind=Workload`);
    assert.deepEqual(wl.items.map((w: any) => w.metadata.name), ['client']);
    console.log(`# clean leave took ${Date.now() - leftAt} ms including the drain`);
  } finally {
    await mesh.close();
    await cp.stop();
  }
});

test('a registering sidecar adds its app to the endpoints only once the app accepts connections', async () => {
  const cp = await startControl();
  const mesh = await startMesh(cp);
  const port = await freePort();
  const late = await startProxyWith(['--control-plane', cp.url, '--workload', 'echo-3', '--app-port', `http=${port}`, '--label', 'app=echo']);
  let app: Server | null = null;
  try {
    assert.equal((await apply(cp, SERVICES)).status, 200);
    const endpoints = (): Promise<string[]> => echoEndpoints(mesh.client);
    await eventually(async () => (await endpoints()).length === 2, 5000, 'the two listening apps are endpoints');
    // Registered, synced, but without ports while nothing listens: no caller is sent there.
    await eventually(() => allSynced(cp, 4), 5000, 'the late proxy synced');
    const wl = await getJson(`${cp.url}/api/v1/resources/Workload/default/echo-3`);
    assert.deepEqual(wl.spec.ports, {});
    assert.deepEqual(await endpoints(), ['default/echo-1', 'default/echo-2']);
    for (let i = 0; i < 6; i++) assert.equal((await viaProxy(mesh.client.outbound, 'echo')).status, 200);

    app = createServer((_req, res) => res.writeHead(200, { 'x-upstream': 'late' }).end('late'));
    await new Promise<void>((r) => app!.listen(port, '127.0.0.1', r));
    await eventually(async () => (await endpoints()).includes('default/echo-3'), 5000, 'the late app joined');
    const seen = new Set<string | undefined>();
    for (let i = 0; i < 30; i++) seen.add((await viaProxy(mesh.client.outbound, 'echo')).upstream);
    assert.ok(seen.has('late'), `traffic reaches the late app: ${[...seen].join(', ')}`);
  } finally {
    await late.stop();
    await mesh.close();
    await cp.stop();
    if (app !== null) await new Promise((r) => app!.close(r));
  }
});

test('kill -9 of the control plane during a stream of applies loses no acknowledged resource', async () => {
  let cp = await startControl();
  const port = cp.listening.apiPort;
  const acked = new Set<string>();
  try {
    for (let round = 0; round < 3; round++) {
      let n = 0;
      let stop = false;
      const writers = Array.from({ length: 6 }, async (_, w) => {
        while (!stop && n < 5000) {
          const name = `svc-r${round}-w${w}-${n++}`;
          try {
            const r = await apiFetch(`${cp.url}/api/v1/apply`, {
              method: 'POST',
              body: `apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: { name: ${name} }\nspec: { selector: { app: ${name} }, ports: [{ name: http, port: 80 }] }\n`,
            });
            if (r.status === 200) acked.add(name);
            await r.arrayBuffer();
          } catch {
            return; // the control plane is gone
          }
        }
      });
      await eventually(() => acked.size >= (round + 1) * 60, 10_000, 'applies acknowledged');
      await new Promise((r) => setTimeout(r, Math.random() * 100));
      cp.proc.kill('SIGKILL');
      await new Promise((r) => cp.proc.once('exit', r));
      stop = true;
      await Promise.all(writers);
      cp = await startControl(cp.dataDir, ['--api-port', String(port)]);
      const { items } = await getJson(`${cp.url}/api/v1/resources?kind=Service`);
      const present = new Set(items.map((i: any) => i.metadata.name));
      const lost = [...acked].filter((a) => !present.has(a));
      console.log(`# round ${round}: ${acked.size} acknowledged so far, ${present.size} present after restart, ${lost.length} lost`);
      assert.deepEqual(lost, []);
    }
  } finally {
    await cp.stop();
  }
});

test('a watched config directory: good files apply, a broken edit keeps the last good version, the API cannot take its resources', async () => {
  const dir = join(tempFile('x', '').replace(/x$/, ''), 'conf');
  mkdirSync(dir);
  writeFileSync(join(dir, 'services.yaml'), SERVICES);
  const cp = await startControl(undefined, ['--config-dir', dir]);
  try {
    const names = async (): Promise<string[]> => (await getJson(`${cp.url}/api/v1/resources?kind=Service`)).items.map((i: any) => `${i.metadata.name}:${i.spec.ports[0].port}`);
    assert.deepEqual(await names(), ['echo:80', 'echo-v1:80', 'echo-v2:80']);
    writeFileSync(join(dir, 'services.yaml'), SERVICES.replace('name: echo-v2 }\nspec: { selector: { app: echo, version: v2 }, ports: [{ name: http, port: 80 }]', 'name: echo-v2 }\nspec: { selector: { app: echo, version: v2 }, ports: [{ name: http, port: 81 }]'));
    await eventually(async () => (await names()).includes('echo-v2:81'), 5000, 'edit applied');
    // Break echo-v1: its last good version stays, and check reports the file.
    writeFileSync(join(dir, 'services.yaml'), SERVICES.replace('ports: [{ name: http, port: 80 }] }\n---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: { name: echo-v2 }', 'ports: [{ name: http, port: 99999 }] }\n---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: { name: echo-v2 }'));
    await eventually(async () => (await getJson(`${cp.url}/api/v1/problems`)).files.length === 1, 5000, 'file problem reported');
    assert.deepEqual(await names(), ['echo:80', 'echo-v1:80', 'echo-v2:80']);
    const check = await runWeft(['check'], cp.url);
    assert.equal(check.code, 1);
    assert.match(check.stdout, /services\.yaml:\d+ Service\/echo-v1: spec\.ports\[0\]\.port/);
    assert.match(check.stdout, /kept the last good version of Service\/default\/echo-v1/);
    const conflict = await apply(cp, SERVICES);
    assert.equal(conflict.status, 422);
    assert.match(conflict.body.errors[0].text, /is managed by the file services\.yaml/);
  } finally {
    await cp.stop();
  }
});
