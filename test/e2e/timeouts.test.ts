// Timeouts end to end, with a `weft proxy --file` in front of real apps on loopback: a route's
// `timeouts.request` against an app that answers after 5 s (while another service on the same proxy
// keeps answering), and a BackendPolicy's `timeouts.streamIdle` and `timeouts.idle` against apps that
// stall mid-body, never answer, trickle, or leave a kept-alive connection unused.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { startProxy, tempFile, type RunningProxy } from './harness.js';

/** An app whose handler may keep responses open; every pending timer and socket is dropped on close. */
async function startApp(handle: (path: string, res: ServerResponse, later: (ms: number, fn: () => void) => void) => void) {
  const timers = new Set<NodeJS.Timeout>();
  const sockets: Array<{ opened: number; closed: number | null }> = [];
  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handle(req.url ?? '/', res, later));
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s: Socket) => {
    const entry = { opened: performance.now(), closed: null as number | null };
    sockets.push(entry);
    s.once('close', () => (entry.closed = performance.now()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const t of timers) clearTimeout(t);
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The response ended whole (false: the connection was cut mid-body). */
  complete: boolean;
  ms: number;
  /** When the first body byte arrived, ms after the request was sent (or -1). */
  firstByteMs: number;
}

function send(port: number, host: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      let firstByteMs = -1;
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (firstByteMs < 0) firstByteMs = performance.now() - t0;
        body += c;
      });
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode!, headers: res.headers, body, complete: res.complete, ms: performance.now() - t0, firstByteMs }));
    });
    req.on('error', reject);
    req.end();
  });
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

function meshFile(ports: { slow: number; fast: number; stall: number; idle: number }): string {
  const svc = (name: string) => `---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: ${name} }
spec: { selector: { app: ${name} }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: ${name}-1, labels: { app: ${name} } }
spec: { address: 127.0.0.1, ports: { http: ${ports[name as keyof typeof ports]} } }`;
  return `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: ${ports.fast} } }
${['slow', 'fast', 'stall', 'idle'].map(svc).join('\n')}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: slow }
spec:
  parentRefs: [{ kind: Service, name: slow, port: 80 }]
  rules:
  - timeouts: { request: 300ms }
    backendRefs: [{ name: slow, port: 80 }]
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: stall }
spec:
  targetRefs: [{ kind: Service, name: stall }]
  timeouts: { streamIdle: 500ms }
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: idle }
spec:
  targetRefs: [{ kind: Service, name: idle }]
  timeouts: { idle: 300ms }
`;
}

describe('timeouts', () => {
  let slow: Awaited<ReturnType<typeof startApp>>;
  let fast: Awaited<ReturnType<typeof startApp>>;
  let stall: Awaited<ReturnType<typeof startApp>>;
  let idle: Awaited<ReturnType<typeof startApp>>;
  let proxy: RunningProxy;

  before(async () => {
    slow = await startApp((_path, res, later) => later(5000, () => res.end('finally')));
    fast = await startApp((_path, res) => res.end('fast'));
    stall = await startApp((path, res, later) => {
      if (path === '/silent') return; // never answers
      if (path === '/trickle') {
        // A chunk every 200 ms for 1.6 s: slow, but never idle for 500 ms.
        res.writeHead(200, { 'content-type': 'text/plain' });
        for (let i = 0; i < 8; i++) later(200 * (i + 1), () => (i === 7 ? res.end(`${i}`) : res.write(`${i},`)));
        return;
      }
      // `/stall`: the head and part of the body, then nothing.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part-1,');
    });
    idle = await startApp((_path, res) => res.end('idle'));
    const file = tempFile('mesh.yaml', meshFile({ slow: slow.port, fast: fast.port, stall: stall.port, idle: idle.port }));
    proxy = await startProxy(file, 'client-1');
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([slow?.close(), fast?.close(), stall?.close(), idle?.close()]);
  });

  test('timeouts.request 300ms against a 5 s app: 504 UPSTREAM_TIMEOUT within the bound, while another service stays fast', async () => {
    // Another service on the same proxy, called by 4 callers in a loop for as long as the slow calls last.
    let stop = false;
    const fastMs: number[] = [];
    let fastErrors = 0;
    const caller = async (): Promise<void> => {
      for (let i = 0; i < 2000 && !stop; i++) {
        const r = await send(proxy.outbound, 'fast', '/').catch(() => null);
        if (r === null || r.status !== 200 || r.body !== 'fast') fastErrors++;
        else fastMs.push(r.ms);
      }
    };
    const callers = Array.from({ length: 4 }, caller);
    const slowMs: number[] = [];
    // Five waves of 20 concurrent calls to the slow service.
    for (let wave = 0; wave < 5; wave++) {
      const answers = await Promise.all(Array.from({ length: 20 }, () => send(proxy.outbound, 'slow', '/')));
      for (const a of answers) {
        assert.equal(a.status, 504);
        assert.equal(a.headers['weft-error'], 'UPSTREAM_TIMEOUT');
        slowMs.push(a.ms);
      }
    }
    stop = true;
    await Promise.all(callers);
    const p50 = quantile(slowMs, 0.5);
    const max = Math.max(...slowMs);
    console.log(
      `# slow: ${slowMs.length} calls, all 504 UPSTREAM_TIMEOUT, p50 ${p50.toFixed(0)} ms, max ${max.toFixed(0)} ms; ` +
        `fast meanwhile: ${fastMs.length} calls, ${fastErrors} errors, p50 ${quantile(fastMs, 0.5).toFixed(1)} ms, p99 ${quantile(fastMs, 0.99).toFixed(1)} ms`,
    );
    assert.ok(Math.min(...slowMs) >= 295, `no call may end before the timeout: ${Math.min(...slowMs)} ms`);
    assert.ok(max < 300 + 400, `every call answered within 300 ms + 400 ms: max ${max} ms`);
    assert.equal(fastErrors, 0);
    assert.ok(fastMs.length >= 50, `the fast service kept answering (${fastMs.length} calls)`);
    assert.ok(quantile(fastMs, 0.99) < 250, `fast p99 ${quantile(fastMs, 0.99)} ms`);
  });

  test('streamIdle 500ms: a response that stalls mid-body is cut (the client sees it incomplete)', async () => {
    const a = await send(proxy.outbound, 'stall', '/stall');
    const cutAfter = a.ms - a.firstByteMs;
    console.log(`# stalled body: ${JSON.stringify(a.body)} then cut ${cutAfter.toFixed(0)} ms after the first byte`);
    assert.equal(a.status, 200);
    assert.equal(a.body, 'part-1,');
    assert.equal(a.complete, false);
    assert.ok(cutAfter >= 450 && cutAfter < 1500, `cut ${cutAfter} ms after the last byte`);
  });

  test('streamIdle 500ms: an app that never answers gets 504 STREAM_IDLE_TIMEOUT', async () => {
    const a = await send(proxy.outbound, 'stall', '/silent');
    console.log(`# silent app: ${a.status} ${String(a.headers['weft-error'])} after ${a.ms.toFixed(0)} ms`);
    assert.equal(a.status, 504);
    assert.equal(a.headers['weft-error'], 'STREAM_IDLE_TIMEOUT');
    assert.equal(JSON.parse(a.body).code, 'STREAM_IDLE_TIMEOUT');
    assert.ok(a.ms >= 450 && a.ms < 1500, `after ${a.ms} ms`);
  });

  test('streamIdle 500ms: a slow response that keeps moving (1.6 s in 200 ms steps) completes', async () => {
    const a = await send(proxy.outbound, 'stall', '/trickle');
    assert.equal(a.status, 200);
    assert.equal(a.complete, true);
    assert.equal(a.body, '0,1,2,3,4,5,6,7');
    assert.ok(a.ms >= 1500, `took ${a.ms} ms`);
  });

  test('idle 300ms: the proxy closes its unused connection to that service, and keeps the others (60 s default)', async () => {
    const before = { idle: idle.sockets.length, fast: fast.sockets.length };
    assert.equal((await send(proxy.outbound, 'idle', '/')).body, 'idle');
    const done = performance.now();
    assert.equal((await send(proxy.outbound, 'fast', '/')).body, 'fast');
    const conn = idle.sockets[before.idle]!;
    const kept = fast.sockets[fast.sockets.length - 1]!;
    for (let i = 0; i < 60 && conn.closed === null; i++) await new Promise((r) => setTimeout(r, 25));
    assert.notEqual(conn.closed, null, 'the idle connection was closed');
    const closedAfter = conn.closed! - done;
    await new Promise((r) => setTimeout(r, 300));
    console.log(`# idle 300ms: upstream connection closed ${closedAfter.toFixed(0)} ms after the exchange; the fast service's is ${kept.closed === null ? 'still open' : 'closed'}`);
    assert.equal(idle.sockets.length - before.idle, 1);
    assert.ok(closedAfter >= 250 && closedAfter < 1000, `closed ${closedAfter} ms after`);
    assert.equal(kept.closed, null);
  });
});
