// Golden signals end to end: a client proxy calls `web` over mTLS at a known load — 20 requests a
// second for 18 s, one in ten answered 500 by the app, four in five delayed 30 ms by it — while
// `weft tap` and `weft top` watch; then `weft stat` must agree with the load (requests/s within
// ±15 %, success rate within ±3 points, p50 inside the (25 ms, 50 ms] bucket of the delay), and
// `weft edges` must show client → web with both SPIFFE IDs and mTLS. The figures are printed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, Agent, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { applyYaml, eventually, joinToken, runWeft, startControl, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';

const RATE = 20;
const LOAD_MS = 18_000;
const DELAY_MS = 30;

const MESH = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: web }
spec: { selector: { app: web }, ports: [{ name: http, port: 80, protocol: HTTP }] }
`;

/** The app: `/items/<i>` waits DELAY_MS, `/fast/<i>` does not; request number i answers 500 when i % 10 === 0. */
async function startApp(): Promise<{ port: number; seen: () => number; close(): Promise<void> }> {
  let seen = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen++;
      const m = /^\/(items|fast)\/(\d+)/.exec(req.url ?? '');
      const status = m !== null && Number(m[2]) % 10 === 0 ? 500 : 200;
      const reply = (): void => {
        res.writeHead(status, { 'content-type': 'text/plain', 'content-length': 2 });
        res.end('ok');
      };
      if (m?.[1] === 'items') setTimeout(reply, DELAY_MS);
      else reply();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen: () => seen,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

/** GET through the client proxy's outbound listener; resolves with the status (0 on a transport error). */
function get(p: RunningProxy, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: p.outbound, path: `http://web${path}`, headers: { host: 'web' }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

let cp: RunningControl;
let web: RunningProxy;
let client: RunningProxy;
let app: Awaited<ReturnType<typeof startApp>>;
const closers: Array<() => Promise<unknown> | unknown> = [];

before(async () => {
  cp = await startControl();
  closers.push(() => cp.stop());
  await applyYaml(cp, MESH);
  app = await startApp();
  closers.push(() => app.close());
  web = await startProxyWith(['--control-plane', cp.url, '--workload', 'web-1', '--app-port', `http=${app.port}`, '--label', 'app=web', '--service-account', 'web', '--token', await joinToken(cp, 'web'), '-q']);
  closers.push(() => web.stop());
  client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client-1', '--register', '--label', 'app=client', '--service-account', 'client', '--token', await joinToken(cp, 'client'), '-q']);
  closers.push(() => client.stop());
  await eventually(async () => {
    const items = ((await (await cp.api('/api/v1/certificates')).json()) as { items: Array<{ installed: boolean }> }).items;
    return items.length === 2 && items.every((i) => i.installed);
  }, 15_000, 'both proxies hold certificates');
  await eventually(async () => (await get(client, '/fast/1')) === 200, 15_000, 'web reachable through the mesh');
});

after(async () => {
  agent.destroy();
  for (const c of closers.reverse()) await c();
});

interface Row { namespace: string; service: string; route: string | null; workload: string | null; requestsPerSecond: number; successRate: number | null; p50Ms: number | null; p95Ms: number | null; p99Ms: number | null; requests: number; errors: number; mtlsRate: number | null }
interface Edge { source: string; destination: string; sourceIdentity: string | null; destinationIdentity: string | null; mtls: boolean; requestsPerSecond: number; successRate: number | null }

test('stat, edges, tap and top agree with a known load', async () => {
  const seenBefore = app.seen();
  const statuses: number[] = [];
  const start = Date.now();
  const total = (RATE * LOAD_MS) / 1000;
  // The load: request i leaves at start + i / RATE seconds, whatever the answers take.
  const load = (async () => {
    const inFlight: Array<Promise<void>> = [];
    for (let i = 1; i <= total; i++) {
      const wait = start + (i * 1000) / RATE - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const path = i % 5 === 4 ? `/fast/${i}` : `/items/${i}`;
      inFlight.push(get(client, path).then((s) => void statuses.push(s)));
    }
    await Promise.all(inFlight);
  })();

  // While it runs: a tap of 5xx only, a tap of /fast with a limit, and top, each for a few seconds.
  await new Promise((r) => setTimeout(r, 3000));
  const [tap5xx, tapFast, top] = await Promise.all([
    runWeft(['tap', 'default/web', '--status', '5xx', '--seconds', '5'], cp.url),
    runWeft(['tap', 'web', '--path', '/fast', '--limit', '5', '--seconds', '10', '-o', 'json'], cp.url),
    runWeft(['top', 'default/web', '--seconds', '5'], cp.url),
  ]);

  // Well into the load, a 10 s window lies wholly inside it.
  await new Promise((r) => setTimeout(r, Math.max(0, start + 15_000 - Date.now())));
  const [statRun, edgesRun, routesRun, series] = await Promise.all([
    runWeft(['stat', '-o', 'json', '--window', '10s'], cp.url),
    runWeft(['edges', '-o', 'json', '--window', '10s'], cp.url),
    runWeft(['stat', 'routes', '--window', '10s'], cp.url),
    cp.api('/api/v1/stats/series?service=default/web&window=1m&step=10s').then((r) => r.json() as Promise<{ points: Array<{ t: number; requestsPerSecond: number; successRate: number | null }> }>),
  ]);
  await load;
  const appSaw = app.seen() - seenBefore;

  assert.equal(statRun.code, 0, statRun.stderr);
  const rows = (JSON.parse(statRun.stdout) as { rows: Row[] }).rows;
  const row = rows.find((r) => r.namespace === 'default' && r.service === 'web');
  assert.ok(row !== undefined, statRun.stdout);
  const edges = (JSON.parse(edgesRun.stdout) as { edges: Edge[] }).edges;
  const edge = edges.find((e) => e.source === 'default/client' && e.destination === 'default/web');
  const tap5xxLines = tap5xx.stdout.trim().split('\n').filter((l) => l !== '');
  const fastEvents = tapFast.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { path: string; status: number; direction: string; proxy: string });
  const sentOk = statuses.filter((s) => s === 200).length;
  const sent500 = statuses.filter((s) => s === 500).length;
  console.log(
    `golden signals: sent ${statuses.length} (${sentOk} ok, ${sent500} 500s, app saw ${appSaw}) at ${RATE}/s; ` +
      `weft stat (10s): ${row.requestsPerSecond} rps, success ${row.successRate}, p50 ${row.p50Ms} ms, p95 ${row.p95Ms} ms, p99 ${row.p99Ms} ms, mTLS ${row.mtlsRate}, ${row.requests} requests; ` +
      `edge ${edge?.source} → ${edge?.destination} ${edge?.requestsPerSecond} rps mtls=${edge?.mtls}; tap 5xx: ${tap5xxLines.length} lines; tap /fast: ${fastEvents.length} events`,
  );
  assert.equal(statuses.length, total);
  assert.equal(sentOk + sent500, total, 'every request was answered by the app');
  assert.equal(appSaw, total, 'no retries: the app saw each request once');

  assert.ok(Math.abs(row.requestsPerSecond - RATE) <= RATE * 0.15, `rps ${row.requestsPerSecond} not within 15 % of ${RATE}`);
  assert.ok(row.successRate !== null && Math.abs(row.successRate - 0.9) <= 0.03, `success rate ${row.successRate} not within 3 points of 0.90`);
  assert.ok(row.p50Ms !== null && row.p50Ms > 25 && row.p50Ms <= 50, `p50 ${row.p50Ms} ms is not in the (25, 50] ms bucket of the ${DELAY_MS} ms delay`);
  assert.ok(row.p99Ms !== null && row.p99Ms >= row.p50Ms, 'p99 ≥ p50');
  assert.equal(row.mtlsRate, 1, 'every request over mTLS');

  assert.ok(edge !== undefined, edgesRun.stdout);
  assert.equal(edge.sourceIdentity, 'spiffe://cluster.local/ns/default/sa/client');
  assert.equal(edge.destinationIdentity, 'spiffe://cluster.local/ns/default/sa/web');
  assert.equal(edge.mtls, true);
  assert.ok(Math.abs(edge.requestsPerSecond - RATE) <= RATE * 0.15, `edge rps ${edge.requestsPerSecond}`);

  assert.equal(routesRun.code, 0, routesRun.stderr);
  assert.match(routesRun.stdout, /^NAMESPACE\s+NAME\s+ROUTE\s+SUCCESS\s+RPS/m);
  assert.match(routesRun.stdout, /\n\s*default\s+web\s+\S+\s+\d/);

  // The chart's series: oldest first, a point per 10 s, the recent ones busy.
  assert.equal(series.points.length, 6);
  assert.ok(series.points.every((p, i) => i === 0 || p.t - series.points[i - 1]!.t === 10_000));
  assert.ok(series.points.at(-1)!.requestsPerSecond > RATE * 0.7, JSON.stringify(series.points));

  // tap --status 5xx: only 500s, from both ends of the hop (about 2 a second for 5 s, each seen twice).
  assert.equal(tap5xx.code, 0, tap5xx.stderr);
  assert.ok(tap5xxLines.length >= 8, `tap 5xx printed ${tap5xxLines.length} lines:\n${tap5xx.stdout}`);
  assert.ok(tap5xxLines.every((l) => / status=500 /.test(l)), tap5xx.stdout);
  assert.ok(tap5xxLines.some((l) => / in  /.test(l) && /proxy=default\/web-1/.test(l) && /src_id=spiffe:\/\/cluster\.local\/ns\/default\/sa\/client/.test(l)), tap5xx.stdout);
  assert.ok(tap5xxLines.some((l) => / out /.test(l) && /proxy=default\/client-1/.test(l)), tap5xx.stdout);
  // tap --path /fast --limit 5: exactly five events, all of /fast.
  assert.equal(tapFast.code, 0, tapFast.stderr);
  assert.equal(fastEvents.length, 5, tapFast.stdout);
  assert.ok(fastEvents.every((e) => e.path.startsWith('/fast/') && e.status === 200));

  // top: the paths with their counts (every request has its own path here, so counts of 1).
  assert.equal(top.code, 0, top.stderr);
  assert.match(top.stdout, /^METHOD\s+PATH\s+COUNT\s+BEST\s+WORST\s+LAST\s+SUCCESS/m);
  const topRows = top.stdout.split('\n').filter((l) => /^GET\s+\/(items|fast)\/\d+\s+1\s/.test(l));
  assert.ok(topRows.length >= 50, `top listed ${topRows.length} paths:\n${top.stdout}`);
  console.log(`golden signals: top counted ${topRows.length} paths in 5 s; tap /fast stopped at its limit of ${fastEvents.length}`);
});

test('a bad window is refused, naming the flag; tapping costs nothing once the taps are closed', async () => {
  const r = await runWeft(['stat', '--window', '20m'], cp.url);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--window: "20m" is outside 2s\.\.10m/);
  const api = await cp.api('/api/v1/stats?window=forever');
  assert.equal(api.status, 400);
  assert.match(((await api.json()) as { error: { message: string } }).error.message, /query parameter window/);
  // With every tap closed the proxies were told to stop: no tap events after this.
  const metrics = async (): Promise<string> => (await cp.api('/metrics')).text();
  await eventually(async () => /weft_control_taps_open 0/.test(await metrics()), 5000, 'no taps open');
  const received = (text: string): number => Number(/weft_control_tap_events_total\{result="received"\} (\d+)/.exec(text)?.[1] ?? NaN);
  const before = received(await metrics());
  for (let i = 0; i < 20; i++) assert.equal(await get(client, `/fast/${i * 10 + 1}`), 200);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(received(await metrics()), before, 'proxies sent no tap events with no tap open');
  console.log(`golden signals: ${before} tap events received in all; none after the taps closed`);
});
