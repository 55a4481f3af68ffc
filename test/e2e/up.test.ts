// `weft up` runs the shop (examples/shop/mesh.yaml): every app behind its sidecar, traffic through
// the whole chain, the canary split changed live, a crashed app restarted, a one-shot job taking its
// sidecar with it, and Ctrl-C leaving no process behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, root, runWeft, tempFile, weftBin, processAlive } from './harness.js';

interface UpApps {
  apiPort: number;
  apps: Record<string, { ports: Record<string, number>; outbound: number; admin: number; pid: number; sidecarPid: number }>;
}

const MARK = 'WEFT_UP_TEST';

/** Pids of processes whose environment carries this test's marker. */
function marked(): number[] {
  const want = `${MARK}=${process.pid}\0`;
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').includes(want)) found.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

test('weft up runs the shop, follows a live split change, restarts a crashed app, and stops cleanly', async () => {
  // The shop as shipped, plus a one-shot job, from a copy beside the real apps.
  const shop = readFileSync(join(root, 'examples/shop/mesh.yaml'), 'utf8').replace(/RATE: "20"/, 'RATE: "40"');
  const file = join(root, 'examples/shop', `.test-mesh-${process.pid}.yaml`);
  writeFileSync(
    file,
    `${shop}---
apiVersion: weft.dev/v1alpha1
kind: App
metadata: { name: once, labels: { app: once } }
spec: { command: [node, apps/loadgen.mjs], env: { RATE: "10", DURATION: "1" }, ports: {}, restart: Never }
`,
  );
  const up = spawn(process.execPath, [weftBin, 'up', '-f', file, '--api-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, [MARK]: String(process.pid) } });
  let out = '';
  up.stdout.on('data', (c: Buffer) => (out += c.toString()));
  up.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => up.once('exit', (code) => r(code)));
  let started: UpApps | null = null;
  try {
    await eventually(() => out.includes('"event":"listening"'), 20_000, 'weft up listening');
    started = JSON.parse(out.split('\n').find((l) => l.startsWith('{"event":"listening"'))!) as UpApps;
    const server = `http://127.0.0.1:${started.apiPort}`;
    assert.deepEqual(Object.keys(started.apps).sort(), ['catalog', 'loadgen', 'once', 'ratings', 'reviews-v1', 'reviews-v2', 'web']);

    // The whole chain answers through the sidecar of loadgen, which calls web.
    const viaWeb = async (path: string): Promise<{ status: number; body: any }> => {
      const { request } = await import('node:http');
      return new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: started!.apps.loadgen!.outbound, path: `http://web${path}`, headers: { host: 'web' } }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(b) }));
        });
        req.on('error', reject);
        req.end();
      });
    };
    // Settled when the whole chain answers (a split may first pick a version whose endpoint is still joining).
    await eventually(async () => {
      const r = await viaWeb('/product/3');
      return r.status === 200 && typeof r.body.reviews?.rating?.stars === 'number';
    }, 10_000, 'web answers with reviews and ratings');
    const product = await viaWeb('/product/3');
    assert.equal(product.body.id, 3, JSON.stringify(product));
    assert.ok(['v1', 'v2'].includes(product.body.reviews.version), JSON.stringify(product.body));
    assert.equal(typeof product.body.reviews.rating.stars, 'number', 'ratings reached through reviews');

    // Each sidecar knows only the services its app calls (spec.calls): catalog's knows the clusters
    // reviews' route splits to (reviews-v1, reviews-v2), not ratings or web.
    const config = await runWeft(['proxy-config', 'catalog', 'clusters', '-o', 'json'], server);
    assert.equal(config.code, 0, config.stderr);
    const clusterNames = (JSON.parse(config.stdout) as Array<{ name: string }>).map((c) => c.name).sort();
    assert.deepEqual(clusterNames, ['reviews-v1.default:80', 'reviews-v2.default:80'], config.stdout);

    // weft up provisioned every sidecar's identity itself: each app its own, all installed.
    await eventually(async () => {
      const certs = JSON.parse((await runWeft(['get', 'certificates', '-o', 'json'], server)).stdout);
      return certs.items.filter((i: any) => i.installed).length >= 6;
    }, 10_000, 'every sidecar holds its certificate');
    const certs = JSON.parse((await runWeft(['get', 'certificates', '-o', 'json'], server)).stdout);
    const identities = Object.fromEntries(certs.items.map((i: any) => [i.proxy, i.identity]));
    assert.equal(identities['default/web'], 'spiffe://cluster.local/ns/default/sa/web');
    assert.equal(identities['default/reviews-v2'], 'spiffe://cluster.local/ns/default/sa/reviews');

    const check = await runWeft(['check', '--wait', '10s'], server);
    assert.equal(check.code, 0, check.stdout);

    // The one-shot job ends and its sidecar with it; the proxy leaves the mesh.
    await eventually(() => !processAlive(started!.apps.once!.sidecarPid), 10_000, 'the job sidecar stopped');
    assert.match(out, /once\s+\| loadgen: sent \d+, ok \d+, failed 0/);
    assert.match(out, /once finished \(exit 0\); stopping its sidecar/);

    // Shift reviews to v2 only, live, and see the shop follow.
    const applied = await runWeft(['apply', '-f', tempFile('all-v2.yaml', readFileSync(join(root, 'examples/shop/canary-50.yaml'), 'utf8').replace('weight: 50 }\n    - { name: reviews-v2, port: 80, weight: 50', 'weight: 0 }\n    - { name: reviews-v2, port: 80, weight: 100'))], server);
    assert.equal(applied.code, 0, applied.stderr);
    await eventually(async () => (await viaWeb('/product/1')).body.reviews?.version === 'v2', 5000, 'reviews served by v2');
    for (let i = 0; i < 10; i++) assert.equal((await viaWeb(`/product/${1 + (i % 5)}`)).body.reviews.version, 'v2');

    // A crashed app is restarted; the mesh keeps answering.
    const ratingsPid = started.apps.ratings!.pid;
    process.kill(ratingsPid, 'SIGKILL');
    await eventually(() => /ratings exited \(SIGKILL\); restarting in/.test(out), 5000, 'restart announced');
    await eventually(() => (out.match(/ratings listening on/g) ?? []).length >= 2, 10_000, 'ratings back');
    await eventually(async () => (await viaWeb('/product/2')).status === 200, 5000, 'chain answers after the restart');

    const status = await runWeft(['proxy-status', '-o', 'json'], server);
    const ids = JSON.parse(status.stdout).items.filter((p: any) => p.connected).map((p: any) => p.id);
    assert.deepEqual(ids.sort(), ['default/catalog', 'default/loadgen', 'default/ratings', 'default/reviews-v1', 'default/reviews-v2', 'default/web']);
  } finally {
    up.kill('SIGINT');
    const kill = setTimeout(() => up.kill('SIGKILL'), 20_000);
    const code = await exited;
    clearTimeout(kill);
    const { rmSync } = await import('node:fs');
    rmSync(file, { force: true });
    assert.equal(code, 0, out.slice(-3000));
    assert.match(out, /weft up\s+\| stopped/);
    // Every process it started is gone (the restarted ratings included: its pid is in the log).
    if (started !== null) {
      const pids = Object.values(started.apps).flatMap((a) => [a.pid, a.sidecarPid]);
      await eventually(() => pids.every((p) => !processAlive(p)), 5000, 'no process left');
    }
    // And nothing else it spawned: every descendant inherited the marker in its environment.
    await eventually(() => marked().length === 0, 5000, `no marked process left (${marked().join(', ')})`);
  }
});
