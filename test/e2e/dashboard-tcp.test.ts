// The dashboard shows a TCP service's golden signals, in headless Chromium (as dashboard.test.ts):
// `worker`'s proxy tunnels TCP connections over mutual TLS to `db`'s proxy at a known load — 4
// connections a second, each sending 64 KiB to an app that answers `got 65536 bytes` — while 3 more
// stay open. The topology must draw db as a TCP node (not idle) with CONN/S, ACTIVE and BYTES/S,
// and a TCP edge worker → db with its throughput and a padlock; db's page must show a TCP section
// with `weft stat tcp`'s columns per window and worker as its client. Numbers must match the load:
// the 1 m figures (the topology's), read 20 s or more into the load, from 25 % under to 10 % over it
// (the window is measured from the first report, which may cover up to 4 s before the load began;
// it ends 2-4 s ago), and the 10 s ones within 15 %, as tcp-stats.test.ts; ACTIVE is the 3 held, or
// 4 with one of the load's in flight.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchWatchedPage } from './browser.js';
import { startTcpApp, tcpExchange } from './tcp-apps.js';
import { applyYaml, eventually, joinToken, root, startControl, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';

const OUT = join(root, 'test-output', 'dashboard-tcp');
const RATE = 4;
const PAYLOAD = 64 * 1024;
const HELD = 3;
const LOAD_MS = 36_000;
/** The app's answer to one load connection. */
const REPLY = `got ${PAYLOAD} bytes`.length;

const SERVICES = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: db }
spec: { selector: { app: db }, ports: [{ name: sql, port: 9000, protocol: TCP }] }
`;

let cp: RunningControl;
let server: RunningProxy;
let client: RunningProxy;
let app: Awaited<ReturnType<typeof startTcpApp>>;
let browser: Browser | null = null;
let page: Page;
const closers: Array<() => Promise<unknown> | unknown> = [];
let pageErrors: string[] = [];
let failedResponses: string[] = [];
/** The load: when it started, the connections that got their answer, and those that did not. */
const load = { start: 0, done: null as Promise<void> | null, started: 0, ok: 0, failed: 0, held: [] as Socket[] };

/** `256 KiB/s`, `60 B/s`, `1.50 MiB/s` → bytes per second. */
function parseRate(text: string): number {
  const m = /^([\d.]+) (B|KiB|MiB|GiB)\/s$/.exec(text.trim());
  assert.ok(m, `${JSON.stringify(text)} is not a byte rate`);
  return Number(m[1]) * 1024 ** ['B', 'KiB', 'MiB', 'GiB'].indexOf(m[2]!);
}

const within = (x: number, want: number, tolerance: number): boolean => Math.abs(x - want) <= want * tolerance;
/** A 1 m figure against the load: the window may reach before the load began, never past it. */
const nearLoad = (x: number, want: number): boolean => x >= want * 0.75 && x <= want * 1.1;

/** One load connection through the worker's upstream port: 64 KiB out, the app's count back. */
async function exchange(payload: Buffer | string): Promise<boolean> {
  const r = await tcpExchange(client.upstreams['db.default:9000']!, payload, 5000);
  return r.data.toString() === `got ${Buffer.byteLength(payload)} bytes`;
}

/** A connection held open (it has sent `hold`); destroyed in `after`. */
async function hold(): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port: client.upstreams['db.default:9000']!, allowHalfOpen: true });
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write('hold');
  return s;
}

/** A table row's cells, `a | b | c`. */
function cells(row: string): Promise<string> {
  return page.$$eval(`${row} td`, (els) => els.map((e) => (e.textContent ?? '').trim()).join(' | '));
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}

before(async () => {
  mkdirSync(OUT, { recursive: true });
  cp = await startControl();
  closers.push(() => cp.stop());
  await applyYaml(cp, SERVICES);
  app = await startTcpApp('report');
  closers.push(() => app.close());
  server = await startProxyWith(['--control-plane', cp.url, '--workload', 'db-1', '--app-port', `sql=${app.port}`, '--label', 'app=db', '--service-account', 'db', '--token', await joinToken(cp, 'db'), '-q']);
  closers.push(() => server.stop());
  client = await startProxyWith(['--control-plane', cp.url, '--workload', 'worker-1', '--register', '--label', 'app=worker', '--service-account', 'worker', '--token', await joinToken(cp, 'worker'), '--upstream', 'db:9000=0', '-q']);
  closers.push(() => client.stop());
  await eventually(() => exchange('ping'), 15_000, 'TCP through the mesh');

  // The load starts at once, so the 1 m window (measured from the first report) is nearly all load.
  load.held = await Promise.all(Array.from({ length: HELD }, () => hold()));
  const payload = Buffer.alloc(PAYLOAD, 'x');
  load.start = Date.now();
  load.done = (async () => {
    const inFlight: Array<Promise<void>> = [];
    for (let i = 1; i <= (RATE * LOAD_MS) / 1000; i++) {
      const wait = load.start + (i * 1000) / RATE - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      load.started++;
      inFlight.push(exchange(payload).then((ok) => void (ok ? load.ok++ : load.failed++)));
    }
    await Promise.all(inFlight);
  })();

  ({ browser, page, pageErrors, failedResponses } = await launchWatchedPage());
}, { timeout: 45_000 });

after(async () => {
  await browser?.close().catch(() => {});
  for (const s of load.held) s.destroy();
  await load.done;
  for (const c of closers.reverse()) await c();
}, { timeout: 45_000 });

/** Waits until the load has run `ms`. */
async function loadFor(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, Math.max(0, load.start + ms - Date.now())));
}

test('the topology draws the TCP service with its live connections and bytes, and a TCP edge from its client', async () => {
  await page.goto(`${cp.url}/#token=${encodeURIComponent(cp.adminToken)}`);
  await page.waitForSelector('svg.topology');
  const node = 'svg.topology g.node[data-service="default/db"]';
  await page.waitForSelector(`${node}[data-protocol="tcp"]`, { timeout: 15_000 });
  // 20 s into the load, at least 16 s of the 1 m window (which covers the time since the first report) are load.
  await loadFor(20_000);
  const wantBytes = RATE * (PAYLOAD + REPLY);
  let seen = { conn: '', active: '', bytes: '', edge: '' };
  await eventually(async () => {
    const values = await page.$$eval(`${node} g[data-metric] .node-value`, (els) => els.map((e) => e.textContent ?? ''));
    const [conn = '', active = '', bytes = ''] = values;
    const edge = (await page.locator('svg.topology g.edge-label[data-protocol="tcp"][data-edge="default/worker→default/db"] text').textContent().catch(() => null)) ?? '';
    seen = { conn, active, bytes, edge };
    if (!/\/s$/.test(bytes) || !/\/s$/.test(edge)) return false;
    return nearLoad(Number(conn), RATE) && Number(active) >= HELD && Number(active) <= HELD + 1 && nearLoad(parseRate(bytes), wantBytes) && nearLoad(parseRate(edge), wantBytes);
  }, 12_000, `db's node and edge near the load (last seen ${JSON.stringify(seen)}; want ${RATE} conn/s, ${HELD} active, ${wantBytes} B/s)`);
  const captions = await page.$$eval(`${node} .node-caption`, (els) => els.map((e) => e.textContent));
  assert.deepEqual(captions, ['CONN/S', 'ACTIVE', 'BYTES/S']);
  assert.equal(await page.locator(`${node} g.lock`).count(), 1, 'db: every connection over mTLS');
  const edge = page.locator('svg.topology path.edge[data-protocol="tcp"][data-edge="default/worker→default/db"]');
  assert.equal(await edge.count(), 1, 'a TCP edge worker → db');
  assert.match((await edge.getAttribute('class')) ?? '', /\btcp\b/);
  assert.equal(await page.locator('svg.topology g.edge-label[data-edge="default/worker→default/db"] g.lock').count(), 1, 'the edge is mTLS');
  // worker serves nothing: it shows the connections it opens.
  const worker = await page.$$eval('svg.topology g.node[data-service="default/worker"] .node-caption', (els) => els.map((e) => e.textContent));
  assert.deepEqual(worker, ['CONN/S', 'ACTIVE', 'BYTES/S OUT']);
  // Neither sits in the row of services without traffic.
  const y = async (sel: string): Promise<number> => (await page.locator(sel).boundingBox())!.y;
  assert.ok((await page.locator('svg.topology .idle-title').count()) === 0 || (await y(node)) < (await y('svg.topology .idle-title')), 'db is not drawn as idle');
  // The TCP services table: the same figures.
  const row = await cells('#tcp-services tr[data-service="default/db"]');
  assert.match(row, /^db \| [\d.]+ \| [34] \| [\d.]+ KiB\/s \| \d+ B\/s \| 100% \| \d+$/);
  await shot('1-topology-tcp');
  console.log(`dashboard tcp topology (${((Date.now() - load.start) / 1000).toFixed(0)} s into ${RATE}/s × ${PAYLOAD} B, ${HELD} held): db ${seen.conn} conn/s, ${seen.active} active, ${seen.bytes} (want ${wantBytes} B/s, -25 %..+10 %); edge worker→db ${seen.edge}; table: ${row}`);
});

test("the TCP service's page shows weft stat tcp's columns per window and its client", async () => {
  await page.click('svg.topology g.node[data-service="default/db"]');
  await page.waitForURL(/#\/service\/default\/db$/);
  await page.waitForSelector('#tcp table[data-tcp="windows"]');
  assert.deepEqual(await page.$$eval('#tcp table[data-tcp="windows"] th', (els) => els.map((e) => e.textContent)), ['Window', 'Conn/s', 'Active', 'Read/s', 'Write/s', 'mTLS', 'Connections']);
  assert.equal(await page.textContent('.page-head .badge'), 'TCP traffic');
  assert.ok(await page.locator('.signals').isHidden(), 'a TCP-only service shows no request numbers');
  await loadFor(14_000);
  const cell = (w: string, c: string): Promise<string> => page.locator(`#tcp tr[data-window="${w}"] td[data-col="${c}"]`).textContent().then((t) => t ?? '');
  let seen: Record<string, string> = {};
  // The 10 s window lies wholly inside the load; the page refreshes every 5 s.
  await eventually(async () => {
    seen = { conn: await cell('10s', 'conn'), active: await cell('10s', 'active'), read: await cell('10s', 'read'), write: await cell('10s', 'write'), mtls: await cell('10s', 'mtls'), connections: await cell('1m', 'connections') };
    if (!/\/s$/.test(seen.read!) || !/\/s$/.test(seen.write!)) return false;
    return within(Number(seen.conn), RATE, 0.15) && Number(seen.active) >= HELD && Number(seen.active) <= HELD + 1 && within(parseRate(seen.read!), RATE * PAYLOAD, 0.15) && within(parseRate(seen.write!), RATE * REPLY, 0.15) && seen.mtls === '100%';
  }, 12_000, `db's 10 s TCP row near the load (last seen ${JSON.stringify(seen)})`);
  // The 1 m window counts every connection so far: at least the load's first 16 s, at most what was sent.
  const sentSoFar = load.started + HELD + 1;
  assert.ok(Number(seen.connections) >= RATE * 16 && Number(seen.connections) <= sentSoFar, `1 m connections ${seen.connections}: between ${RATE * 16} and ${sentSoFar}`);
  const clientRow = await cells('#tcp tr[data-client="default/worker"]');
  assert.match(clientRow, /^worker \| [\d.]+ \| [34] \| [\d.]+ KiB\/s \| \d+ B\/s \| mutual TLS$/, 'worker → db over mTLS (the padlock\'s title)');
  await shot('2-service-db-tcp');
  assert.deepEqual(pageErrors, [], 'no script errors and no CSP violations');
  assert.deepEqual(failedResponses, [], 'every API call answered');
  await load.done;
  assert.equal(load.failed, 0, 'every load connection answered by the app');
  console.log(`dashboard tcp service page: 10 s row ${seen.conn} conn/s, ${seen.active} active, read ${seen.read} (want ${RATE * PAYLOAD} B/s ±15 %), write ${seen.write} (want ${RATE * REPLY} B/s), mTLS ${seen.mtls}; 1 m ${seen.connections} connections; client: ${clientRow}; load ${load.ok} ok, ${load.failed} failed`);
});
