// Load balancing end to end: caller `weft proxy --file` processes in front of three apps in this
// process that answer with their name. Session affinity (Maglev on a header, ring hash on a cookie)
// from a caller without a zone; locality from a caller in zone a — everything to the zone-a app while
// it is healthy, to zone b when its health check fails, and back when it passes again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type OutgoingHttpHeaders, type Server } from 'node:http';
import { eventually, startProxy, tempFile, type RunningProxy, listenLocal } from './harness.js';

/** An app whose `/` answers its name (after `delayMs`) and `/healthz` answers `health`. */
interface App {
  name: string;
  port: number;
  health: number;
  delayMs: number;
  close(): Promise<void>;
}

async function startApp(name: string): Promise<App> {
  const app: App = { name, port: 0, health: 200, delayMs: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    req.resume();
    const check = req.url === '/healthz';
    const body = check ? 'hc' : name;
    const reply = (): void => {
      res.writeHead(check ? app.health : 200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    };
    if (check || app.delayMs === 0) reply();
    else setTimeout(reply, app.delayMs);
  });
  const listening = await listenLocal(server);
  app.port = listening.port;
  app.close = listening.close;
  return app;
}

function get(port: number, headers: OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers }, (res) => {
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

/** Sends `n` requests one after another; how many each app answered, and how many were not 200. */
async function burst(port: number, headers: OutgoingHttpHeaders, n: number): Promise<{ by: Record<string, number>; errors: number }> {
  const by: Record<string, number> = {};
  let errors = 0;
  for (let i = 0; i < n; i++) {
    const r = await get(port, headers);
    if (r.status !== 200) errors++;
    else by[r.body] = (by[r.body] ?? 0) + 1;
  }
  return { by, errors };
}

function mesh(apps: App[]): string {
  const zones = ['a', 'b', 'b'];
  const svc = (name: string) => `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: ${name} }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
`;
  const wl = (name: string, labels: string, port: number) => `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: ${name}, labels: { ${labels} } }
spec: { address: 127.0.0.1, ports: { http: ${port} } }
---
`;
  const topology = (zone: string) => `topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: ${zone}`;
  const policy = (name: string, body: string) => `apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: ${name} }
spec:
  targetRefs: [{ kind: Service, name: ${name} }]
${body}
---
`;
  return (
    svc('sticky') +
    svc('cookie') +
    svc('zoned') +
    svc('fastest') +
    apps.map((a, i) => wl(a.name, `app: echo, ${topology(zones[i]!)}`, a.port)).join('') +
    wl('client-plain', 'app: client', 1) +
    wl('client-a', `app: client, ${topology('a')}`, 1) +
    policy('sticky', '  loadBalancer: { type: Maglev, hashOn: { header: { name: x-user } } }') +
    policy('cookie', '  loadBalancer: { type: RingHash, hashOn: { cookie: { name: sid } } }') +
    policy('fastest', '  loadBalancer: { type: PeakEWMA, decay: 10s }') +
    policy('zoned', '  healthCheck: { http: { path: /healthz }, interval: 300ms, timeout: 200ms, unhealthyThreshold: 2, healthyThreshold: 1 }')
  );
}

describe('load balancing', () => {
  let apps: App[];
  let plain: RunningProxy;
  let zoneA: RunningProxy;

  before(async () => {
    apps = await Promise.all(['echo-a', 'echo-b', 'echo-c'].map(startApp));
    const file = tempFile('mesh.yaml', mesh(apps));
    [plain, zoneA] = await Promise.all([startProxy(file, 'client-plain'), startProxy(file, 'client-a')]);
  });

  after(async () => {
    await Promise.all([plain?.stop(), zoneA?.stop()]);
    await Promise.all((apps ?? []).map((a) => a.close()));
  });

  /** For each of `keys` keys, 5 requests: each key must stay on one app; returns the apps the keys landed on. */
  async function affinity(headers: (key: string) => OutgoingHttpHeaders, keys: number): Promise<{ spread: Record<string, number>; errors: number }> {
    const spread: Record<string, number> = {};
    let errors = 0;
    for (let k = 0; k < keys; k++) {
      const r = await burst(plain.outbound, headers(`user-${k}`), 5);
      errors += r.errors;
      const names = Object.keys(r.by);
      assert.equal(names.length, 1, `key user-${k} went to ${JSON.stringify(r.by)}`);
      spread[names[0]!] = (spread[names[0]!] ?? 0) + 1;
    }
    return { spread, errors };
  }

  test('Maglev on a header: one key always lands on one app; different keys spread over all three', async () => {
    const { spread, errors } = await affinity((key) => ({ host: 'sticky', 'x-user': key }), 30);
    const noKey = await burst(plain.outbound, { host: 'sticky' }, 60);
    console.log(`affinity by header: 30 keys × 5 requests, keys per app ${JSON.stringify(spread)}, ${errors} errors; 60 requests without the key: ${JSON.stringify(noKey.by)}`);
    assert.equal(errors + noKey.errors, 0);
    assert.equal(Object.keys(spread).length, 3, JSON.stringify(spread));
    assert.ok(Object.keys(noKey.by).length >= 2, `without the key, requests spread: ${JSON.stringify(noKey.by)}`);
  });

  test('ring hash on a cookie: one session always lands on one app; sessions spread', async () => {
    const { spread, errors } = await affinity((key) => ({ host: 'cookie', cookie: `theme=dark; sid=${key}` }), 30);
    console.log(`affinity by cookie: 30 sessions × 5 requests, sessions per app ${JSON.stringify(spread)}, ${errors} errors`);
    assert.equal(errors, 0);
    assert.equal(Object.keys(spread).length, 3, JSON.stringify(spread));
  });

  test('peak EWMA: a slow app gets little traffic once its latency is seen', async () => {
    apps[2]!.delayMs = 150;
    try {
      const r = await burst(plain.outbound, { host: 'fastest' }, 60);
      console.log(`peak EWMA: 60 requests with echo-c answering in 150 ms: ${JSON.stringify(r.by)}, ${r.errors} errors`);
      assert.equal(r.errors, 0);
      // After its first slow answer echo-c loses every pairing until its estimate decays (seconds).
      assert.ok((r.by['echo-c'] ?? 0) <= 5, JSON.stringify(r.by));
      // The fast two share the rest (unevenly: the one observed first at ~1 ms wins their pairings, the
      // other still wins its pairings with echo-c, about a third).
      assert.ok(r.by['echo-a']! >= 5 && r.by['echo-b']! >= 5, JSON.stringify(r.by));
    } finally {
      apps[2]!.delayMs = 0;
    }
  });

  test('locality: a caller in zone a sends everything to the zone-a app; to zone b when it fails its checks; back when it recovers', async () => {
    const host = { host: 'zoned' };
    const local = await burst(zoneA.outbound, host, 60);
    // A caller without a zone spreads over all three (so the preference above is locality's doing).
    const anywhere = await burst(plain.outbound, host, 60);
    assert.deepEqual(local, { by: { 'echo-a': 60 }, errors: 0 });
    assert.equal(Object.keys(anywhere.by).length, 3, JSON.stringify(anywhere.by));

    const failedAt = Date.now();
    apps[0]!.health = 503;
    // Requests during the switch are still answered (the app itself serves; only its check fails).
    let during = 0;
    await eventually(async () => {
      const r = await burst(zoneA.outbound, host, 10);
      during += r.errors;
      return r.by['echo-a'] === undefined;
    }, 10_000, 'traffic leaving zone a');
    const movedMs = Date.now() - failedAt;
    const away = await burst(zoneA.outbound, host, 60);
    assert.equal(away.errors, 0);
    assert.equal(away.by['echo-a'], undefined, JSON.stringify(away.by));
    assert.ok(away.by['echo-b']! > 10 && away.by['echo-c']! > 10, `zone b's two apps share: ${JSON.stringify(away.by)}`);

    const recoveredAt = Date.now();
    apps[0]!.health = 200;
    await eventually(async () => (await burst(zoneA.outbound, host, 10)).by['echo-a'] === 10, 10_000, 'traffic returning to zone a');
    const backMs = Date.now() - recoveredAt;
    const back = await burst(zoneA.outbound, host, 60);
    console.log(
      `locality: zone-a caller ${JSON.stringify(local.by)}, zoneless caller ${JSON.stringify(anywhere.by)}; zone a failing: moved in ${movedMs} ms, then ${JSON.stringify(away.by)}; ` +
        `recovered: back in ${backMs} ms, then ${JSON.stringify(back.by)}; errors ${local.errors + anywhere.errors + during + away.errors + back.errors}`,
    );
    assert.deepEqual(back, { by: { 'echo-a': 60 }, errors: 0 });
    assert.equal(during, 0);
  });
});
