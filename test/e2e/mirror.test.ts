// Request mirroring end to end: a `weft proxy --file` whose HTTPRoute rules mirror 50 % of requests
// to a shadow Service, or every request to a Service that hangs or is down; the callers' answers and
// latency must not change, and the shadow must see its share with the `-shadow` host.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { eventually, freePort, proxyMetrics, startProxy, tempFile, type RunningProxy } from './harness.js';

interface Seen {
  method: string;
  url: string;
  host: string;
  body: string;
}

/** An app that records every request and answers `name` (or, with `hang`, never answers). */
async function startApp(name: string, hang = false): Promise<{ port: number; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, host: req.headers.host ?? '', body });
      if (!hang) res.writeHead(200, { 'x-upstream': name }).end(`${name} ${body}`);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function send(port: number, path: string, body?: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ host: '127.0.0.1', port, path, method: body === undefined ? 'GET' : 'POST', headers: { host: 'echo' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text, ms: performance.now() - t0 }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

/** The value of one metric line, 0 when absent. */
const metric = (text: string, route: string, result: string): number => {
  const m = new RegExp(`^weft_mirrored_requests_total\\{route="${route.replace(/\//g, '\\/')}",result="${result}"\\} (\\d+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
};

const mirror = (service: string, extra = '') => `[{ type: RequestMirror, requestMirror: { backendRef: { name: ${service}, port: 80 }${extra} } }]`;

function meshFile(ports: Record<'echo' | 'shadow' | 'hang' | 'down', number>): string {
  const svc = (name: keyof typeof ports) => `---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: ${name} }
spec: { selector: { app: ${name} }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: ${name}-1, labels: { app: ${name} } }
spec: { address: 127.0.0.1, ports: { http: ${ports[name]} } }`;
  return `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: ${ports.echo} }, calls: [echo] }
${(['echo', 'shadow', 'hang', 'down'] as const).map(svc).join('\n')}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo }
spec:
  parentRefs: [{ kind: Service, name: echo, port: 80 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /half } }]
    filters: ${mirror('shadow', ', percent: 50')}
    backendRefs: [{ name: echo, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /hang } }]
    filters: ${mirror('hang')}
    timeouts: { request: 2s }
    backendRefs: [{ name: echo, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /down } }]
    filters: ${mirror('down')}
    backendRefs: [{ name: echo, port: 80 }]
  - backendRefs: [{ name: echo, port: 80 }]
`;
}

describe('request mirroring', () => {
  let echo: Awaited<ReturnType<typeof startApp>>;
  let shadow: Awaited<ReturnType<typeof startApp>>;
  let hang: Awaited<ReturnType<typeof startApp>>;
  let proxy: RunningProxy;

  before(async () => {
    echo = await startApp('echo');
    shadow = await startApp('shadow');
    hang = await startApp('hang', true);
    // The client calls only `echo`: the mirror Services' clusters come with its routes.
    const file = tempFile('mesh.yaml', meshFile({ echo: echo.port, shadow: shadow.port, hang: hang.port, down: await freePort() }));
    proxy = await startProxy(file, 'client-1');
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([echo?.close(), shadow?.close(), hang?.close()]);
  });

  test('50 % of 400 requests are mirrored with the -shadow host; every caller gets the primary\'s answer', async () => {
    const N = 400;
    for (let batch = 0; batch < N; batch += 20) {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const n = batch + i;
          // Every fourth request carries a body, which the mirror must get too.
          return n % 4 === 0 ? send(proxy.outbound, `/half/${n}`, `payload-${n}`) : send(proxy.outbound, `/half/${n}`);
        }),
      );
      for (const a of answers) {
        assert.equal(a.status, 200);
        assert.equal(a.headers['x-upstream'], 'echo');
        assert.match(a.body, /^echo /);
      }
    }
    const route = 'default/echo/rule/0/match/0';
    // Fire and forget: the last mirrors may still be on their way.
    await eventually(async () => metric(await proxyMetrics(proxy), route, 'sent') === shadow.seen.length && shadow.seen.length > 0, 5000, 'mirrors settled');
    const mirrored = shadow.seen.length;
    const share = mirrored / N;
    const posts = shadow.seen.filter((s) => s.method === 'POST');
    console.log(`# mirrored ${mirrored}/${N} = ${(share * 100).toFixed(1)} % (expected 50 ± 7); ${posts.length} with bodies; primary saw ${echo.seen.length}`);
    assert.equal(echo.seen.length, N, 'the primary saw every request');
    // Binomial: sd = sqrt(400 × 0.5 × 0.5) = 10 requests = 2.5 points; ±7 points is 2.8 sd.
    assert.ok(Math.abs(share - 0.5) <= 0.07, `mirrored share ${share}`);
    assert.ok(shadow.seen.every((s) => s.host === 'echo-shadow'), `hosts: ${[...new Set(shadow.seen.map((s) => s.host))].join(', ')}`);
    for (const s of posts) assert.equal(s.body, `payload-${s.url.split('/')[2]}`);
    assert.ok(posts.length > 0);
    const text = await proxyMetrics(proxy);
    assert.equal(metric(text, route, 'failed') + metric(text, route, 'overflow') + metric(text, route, 'too_large'), 0);
  });

  test('a mirror that hangs or is down adds no latency; the hung ones are bounded and time out', async () => {
    const run = async (path: string, n: number): Promise<number[]> => {
      const ms: number[] = [];
      for (let batch = 0; batch < n; batch += 10) {
        const answers = await Promise.all(Array.from({ length: 10 }, () => send(proxy.outbound, path)));
        for (const a of answers) {
          assert.equal(a.status, 200);
          assert.equal(a.headers['x-upstream'], 'echo');
          ms.push(a.ms);
        }
      }
      return ms;
    };
    await run('/plain', 20); // warm up
    const plain = await run('/plain', 150);
    const hung = await run('/hang', 150);
    const down = await run('/down', 150);
    const p50 = (xs: number[]) => quantile(xs, 0.5).toFixed(1);
    console.log(`# p50 / max ms: no mirror ${p50(plain)} / ${Math.max(...plain).toFixed(0)}, hanging mirror ${p50(hung)} / ${Math.max(...hung).toFixed(0)}, mirror down ${p50(down)} / ${Math.max(...down).toFixed(0)}`);
    // The hang lasts until the route's 2 s timeout: no request may come near it (1.5 s leaves room
    // for a loaded machine's scheduling; the p50 check below is the tight one).
    assert.ok(Math.max(...hung) < 1500, `slowest with a hanging mirror: ${Math.max(...hung)} ms`);
    assert.ok(Math.max(...down) < 1500, `slowest with a mirror down: ${Math.max(...down)} ms`);
    // Each mirror costs the proxy some work (a connection, a timer), never the caller a wait: p50 stays near no mirror's.
    const near = (xs: number[]) => quantile(xs, 0.5) < 2 * quantile(plain, 0.5) + 20;
    assert.ok(near(hung) && near(down), 'p50 within 2× + 20 ms of no mirror');

    const hangRoute = 'default/echo/rule/1/match/0';
    const downRoute = 'default/echo/rule/2/match/0';
    let text = await proxyMetrics(proxy);
    // At most 100 mirrors of one filter in flight: the rest of the 150 were not sent.
    assert.equal(metric(text, hangRoute, 'overflow'), 50);
    await eventually(() => hang.seen.length === 100, 5000, 'the 100 mirrors in flight reached the hanging Service');
    await eventually(async () => metric(await proxyMetrics(proxy), downRoute, 'failed') === 150, 5000, 'failed mirrors to the down Service counted');
    await eventually(async () => metric((text = await proxyMetrics(proxy)), hangRoute, 'failed') === 100, 5000, 'hung mirrors timed out after 2 s');
    console.log(`# hanging mirror: sent ${metric(text, hangRoute, 'sent')}, failed (timed out) ${metric(text, hangRoute, 'failed')}, overflow ${metric(text, hangRoute, 'overflow')}; mirror down: failed ${metric(text, downRoute, 'failed')}`);
  });
});
