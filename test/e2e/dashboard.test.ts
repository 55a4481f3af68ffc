// The web dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core) against the
// shop demo under live load (`weft up`, tracing at 100 %): `weft dashboard` prints a URL carrying the
// admin token, the page moves it out of the address bar; the topology graph shows the shop's services
// and the calls between them; a service page shows its routes; tap streams live requests; a trace
// waterfall renders its spans. The API refuses calls without the token. Screenshots of every page go
// to test-output/dashboard/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchWatchedPage } from './browser.js';
import { eventually, root, runWeft, weftBin, processAlive } from './harness.js';

const OUT = join(root, 'test-output', 'dashboard');
const file = join(root, 'examples/shop', `.test-dashboard-${process.pid}.yaml`);

let up: ChildProcess | null = null;
let exited: Promise<number | null> = Promise.resolve(0);
let log = '';
let pids: number[] = [];
let server = '';
let url = '';
let token = '';
let browser: Browser | null = null;
let page: Page;
/** Errors the page reported (uncaught exceptions, console errors such as CSP violations). */
let pageErrors: string[] = [];
/** API answers of 400 and above the page received: only the refused wrong token (401) and a trace not yet stored (404) are expected. */
let failedResponses: string[] = [];

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}

before(async () => {
  mkdirSync(OUT, { recursive: true });
  const shop = readFileSync(join(root, 'examples/shop/mesh.yaml'), 'utf8').replace(/RATE: "20"/, 'RATE: "8"');
  writeFileSync(file, `${shop}---
apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: shop-mesh }
spec: { tracing: { sampling: 100 } }
`);
  up = spawn(process.execPath, [weftBin, 'up', '-f', file, '--api-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  up.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  up.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const proc = up;
  exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  await eventually(() => log.includes('"event":"listening"'), 25_000, 'weft up listening');
  const started = JSON.parse(log.split('\n').find((l) => l.startsWith('{"event":"listening"'))!) as { apiPort: number; apps: Record<string, { pid: number; sidecarPid: number }> };
  pids = Object.values(started.apps).flatMap((a) => [a.pid, a.sidecarPid]);
  server = `http://127.0.0.1:${started.apiPort}`;

  const printed = await runWeft(['dashboard'], server);
  assert.equal(printed.code, 0, printed.stderr);
  url = printed.stdout.trim();
  const m = /^http:\/\/127\.0\.0\.1:\d+\/#token=(weft-admin\.[A-Za-z0-9_-]+)$/.exec(url);
  assert.ok(m, `weft dashboard printed ${JSON.stringify(printed.stdout)}`);
  token = decodeURIComponent(m[1]!);

  ({ browser, page, pageErrors, failedResponses } = await launchWatchedPage());
}, { timeout: 60_000 });

after(async () => {
  await browser?.close().catch(() => {});
  if (up !== null) {
    up.kill('SIGINT');
    const kill = setTimeout(() => up!.kill('SIGKILL'), 20_000);
    const code = await exited;
    clearTimeout(kill);
    assert.equal(code, 0, log.slice(-3000));
  }
  rmSync(file, { force: true });
  await eventually(() => pids.every((p) => !processAlive(p)), 5000, 'no process left');
}, { timeout: 40_000 });

test('the page is public with a strict CSP; the API refuses calls without the admin token', async () => {
  const res = await fetch(`${server}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  const csp = res.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/, 'no inline scripts');
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
  const html = await res.text();
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html), 'every script is a file');
  const js = await fetch(`${server}/dashboard/app.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
  assert.equal((await fetch(`${server}/dashboard/../admin-token`)).status, 404);
  assert.equal((await fetch(`${server}/dashboard/nope.js`)).status, 404);
  const refused: number[] = [];
  for (const path of ['/api/v1/stats?by=service', '/api/v1/stats/edges', '/api/v1/resources', '/api/v1/traces', '/api/v1/tap?service=default/web&seconds=1']) {
    const r = await fetch(`${server}${path}`);
    refused.push(r.status);
    assert.equal(r.status, 401, `${path} without the token`);
    const wrong = await fetch(`${server}${path}`, { headers: { authorization: 'Bearer weft-admin.wrong' } });
    assert.equal(wrong.status, 401, `${path} with a wrong token`);
    await wrong.body?.cancel();
  }
  const ok = await fetch(`${server}/api/v1/stats?by=service`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200, 'the same call with the token');

  // The page without a token asks for one; a wrong one is refused and asked again.
  await page.goto(`${server}/`);
  await page.waitForSelector('form.token-card');
  await shot('0-token-prompt');
  await page.fill('#token', 'weft-admin.wrong');
  await page.click('form.token-card button');
  await page.waitForSelector('text=The admin token was refused');
  console.log(`dashboard: without the token ${refused.length} API paths answered ${[...new Set(refused)].join(',')}; the page prompts for it`);
});

test('the topology shows the shop: services, calls between them, live numbers', async () => {
  await page.goto(url);
  await page.waitForSelector('svg.topology');
  assert.ok(!page.url().includes('token='), `the token left the address bar: ${page.url()}`);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('weft.token')), token);
  // The shop: loadgen → web → catalog → reviews → ratings, every hop over mTLS.
  const expected = [['default/web', 'default/catalog'], ['default/catalog', 'default/reviews'], ['default/reviews', 'default/ratings']];
  await eventually(async () => {
    const edges = await page.$$eval('svg.topology path.edge', (els) => els.map((e) => e.getAttribute('data-edge')));
    return expected.every(([a, b]) => edges.includes(`${a}→${b}`));
  }, 25_000, 'the graph draws the shop\'s calls');
  const names = await page.$$eval('svg.topology g.node', (els) => els.map((e) => e.getAttribute('data-service')));
  for (const s of ['web', 'catalog', 'reviews', 'ratings']) assert.ok(names.includes(`default/${s}`), `node ${s} in ${names.join(',')}`);
  const texts = await page.$$eval('svg.topology .node-name', (els) => els.map((e) => e.textContent));
  for (const s of ['web', 'catalog', 'reviews', 'ratings']) assert.ok(texts.includes(s), `the graph names ${s}: ${texts.join(',')}`);
  // Live numbers: web's node shows a request rate above zero and a success rate; its edge to catalog a rate and the mTLS lock.
  await eventually(async () => {
    const values = await page.$$eval('svg.topology g.node[data-service="default/web"] .node-value', (els) => els.map((e) => e.textContent ?? ''));
    return Number(values[0]) > 0 && /%$/.test(values[1] ?? '');
  }, 15_000, 'web shows live numbers');
  const label = page.locator('svg.topology g.edge-label[data-edge="default/web→default/catalog"]');
  assert.match((await label.textContent()) ?? '', /[\d.]+ rps/);
  assert.equal(await label.locator('g.lock').count(), 1, 'web → catalog is mTLS');
  // Layered left to right by call depth.
  const x = async (s: string): Promise<number> => (await page.locator(`svg.topology g.node[data-service="default/${s}"]`).boundingBox())!.x;
  assert.ok((await x('web')) < (await x('catalog')) && (await x('catalog')) < (await x('reviews')) && (await x('reviews')) < (await x('ratings')), 'columns follow the calls');
  const header = await page.textContent('header.top');
  assert.match(header ?? '', /shop-mesh/);
  assert.match(header ?? '', /cluster\.local/);
  await eventually(async () => /\d+ proxies/.test((await page.textContent('#proxies')) ?? ''), 5000, 'the header counts proxies');
  const edges = await page.$$eval('svg.topology path.edge', (els) => els.map((e) => e.getAttribute('data-edge')));
  const webRps = await page.$$eval('svg.topology g.node[data-service="default/web"] .node-value', (els) => els.map((e) => e.textContent).join(' '));
  await shot('1-topology');
  console.log(`dashboard topology: ${names.length} nodes, ${edges.length} edges (${edges.join(', ')}); web: ${webRps}; header: ${header?.replace(/\s+/g, ' ').trim()}`);
});

test('a service page shows its routes, policies, endpoints and certificates', async () => {
  // An active health check on reviews and the versions its route splits to: its caller (catalog's
  // proxy, which holds the version clusters) reports each endpoint's health to the control plane.
  const applied = await runWeft(['apply', '-f', '-'], server, `apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: reviews-health }
spec: { targetRefs: [{ kind: Service, name: reviews }, { kind: Service, name: reviews-v1 }, { kind: Service, name: reviews-v2 }], healthCheck: { tcp: {}, interval: 1s } }
`);
  assert.equal(applied.code, 0, applied.stdout + applied.stderr);
  // Click the node, as an operator would.
  await page.click('svg.topology g.node[data-service="default/reviews"]');
  await page.waitForURL(/#\/service\/default\/reviews$/);
  const route = page.locator('.route[data-route="default/reviews"]');
  await route.waitFor();
  const text = (await route.textContent()) ?? '';
  assert.match(text, /HTTPRoute/);
  assert.match(text, /reviews-v1:80.*90 \(90%\)/);
  assert.match(text, /reviews-v2:80.*10 \(10%\)/);
  await page.waitForSelector('tr[data-workload="default/reviews-v1"]');
  const workloads = await page.$$eval('tr[data-workload]', (els) => els.map((e) => e.getAttribute('data-workload')));
  assert.deepEqual(workloads.sort(), ['default/reviews-v1', 'default/reviews-v2']);
  await eventually(async () => ((await page.textContent('tr[data-workload="default/reviews-v1"]')) ?? '').includes('serving'), 10_000, 'reviews-v1 serving');
  await page.waitForSelector('text=spiffe://cluster.local/ns/default/sa/reviews');
  // Beside the proxy status, the endpoint's health as its callers see it.
  const endpointHealth = page.locator('tr[data-workload="default/reviews-v1"] td[data-endpoint-health="HEALTHY"]');
  await endpointHealth.waitFor();
  assert.match((await endpointHealth.textContent()) ?? '', /healthy.*checked by 1 caller/);
  // The charts: a latency line with points once the window has traffic.
  await eventually(async () => (await page.$$eval('svg.chart path.line[data-series="p99"]', (els) => els.map((e) => e.getAttribute('d') ?? ''))).some((d) => d.includes('L') || d.includes('M')), 15_000, 'a p99 line');
  const signals = await page.$$eval('.signal', (els) => els.map((e) => e.textContent).join(' | '));
  await shot('2-service-reviews');
  console.log(`dashboard service page: reviews route 90/10, workloads ${workloads.join(',')}; endpoint health ${await endpointHealth.textContent()}; signals ${signals}`);
});

test('tap shows live requests within seconds; a row with a trace id opens its waterfall', async () => {
  await page.click('a[data-nav="tap"]');
  await page.waitForSelector('#tap-service option[value="default/web"]', { state: 'attached' });
  await page.selectOption('#tap-service', 'default/web');
  const started = Date.now();
  await page.click('#tap-toggle');
  await eventually(async () => (await page.locator('#tap-rows tr').count()) >= 5, 10_000, 'five tapped requests');
  const firstRows = Date.now() - started;
  await eventually(async () => (await page.locator('#tap-rows tr').count()) >= 16, 10_000, 'more tapped requests');
  const rows = await page.$$eval('#tap-rows tr', (els) => els.map((e) => e.textContent ?? ''));
  assert.ok(rows.some((r) => /GET/.test(r) && /200/.test(r)), rows.slice(0, 3).join('\n'));
  assert.match((await page.textContent('#tap-state')) ?? '', /live/);
  await shot('3-tap');
  await page.click('#tap-toggle');
  await page.waitForSelector('#tap-state:text("stopped")');
  const n = await page.locator('#tap-rows tr').count();
  const counts = await page.textContent('#tap-counts');

  // A traced request through the whole shop (/product/…): its row opens the trace, whose waterfall shows every span.
  const traced = page.locator('#tap-rows tr[data-trace]', { hasText: '/product/' }).first();
  const id = await traced.getAttribute('data-trace');
  assert.match(id ?? '', /^[0-9a-f]{32}$/);
  await traced.locator('td').first().click();
  await page.waitForURL(new RegExp(`#/traces/${id}$`));
  await eventually(async () => {
    await page.reload();
    await page.waitForSelector('.waterfall, .card .empty');
    return (await page.locator('.span-rows .span-row').count()) >= 8;
  }, 15_000, 'the trace has its eight spans in the store');
  const spans = await page.$$eval('.span-rows .span-row', (els) => els.map((e) => ({ depth: Number(e.getAttribute('data-depth')), text: e.textContent ?? '' })));
  assert.deepEqual(spans.map((s) => s.depth), [0, 1, 2, 3, 4, 5, 6, 7], 'each hop under the one before: loadgen → web → catalog → reviews → ratings');
  assert.ok(spans.some((s) => /web/.test(s.text)) && spans.some((s) => /catalog/.test(s.text)), spans.map((s) => s.text).join('\n'));
  const widths = await page.$$eval('.span-rows .bar', (els) => els.map((e) => e.getBoundingClientRect().width));
  assert.ok(widths.every((w) => w >= 2), `every span has a bar: ${widths.join(',')}`);
  await page.click('.span-rows .span-row >> nth=1');
  await page.waitForSelector('#span-details th:text("http.request.method")');
  await shot('4-trace-waterfall');
  console.log(`dashboard tap: first 5 rows after ${firstRows} ms, ${n} rows (${counts}); trace ${id}: ${spans.length} spans, depth ${Math.max(...spans.map((s) => s.depth))}`);
});

test('the traces page lists recent traces', async () => {
  await page.click('a[data-nav="traces"]');
  await page.waitForSelector('tr[data-trace]');
  const count = await page.locator('tr[data-trace]').count();
  assert.ok(count >= 1);
  await shot('5-traces');
  assert.deepEqual(pageErrors, [], 'no script errors and no CSP violations');
  const unexpected = failedResponses.filter((r) => !r.startsWith('401 ') && !r.startsWith('404 /api/v1/traces/'));
  assert.deepEqual(unexpected, [], `unexpected API failures (all: ${failedResponses.join(', ')})`);
  console.log(`dashboard traces: ${count} listed; page errors: ${pageErrors.length}; screenshots in ${OUT}`);
});
