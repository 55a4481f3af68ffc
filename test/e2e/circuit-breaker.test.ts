// Circuit breaking end to end: a `weft proxy --file` in front of a slow upstream, with a
// BackendPolicy allowing 5 requests in flight to it. Twenty concurrent requests: five reach the
// upstream and get its 200; the fifteen over the limit are answered 503 CIRCUIT_OPEN at once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { meshYaml, proxyMetrics, startProxy, tempFile, type RunningProxy } from './harness.js';

/** How long the upstream takes to answer. */
const SLOW_MS = 1500;

async function startSlow(delayMs = SLOW_MS): Promise<{ port: number; hits: () => number; mostConnections: () => number; close(): Promise<void> }> {
  let hits = 0;
  let open = 0;
  let most = 0;
  const server: Server = createServer((req, res) => {
    hits++;
    req.resume();
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('slow ok');
    }, delayMs);
  });
  server.on('connection', (socket) => {
    most = Math.max(most, ++open);
    socket.once('close', () => open--);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    mostConnections: () => most,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

interface Answer {
  status: number;
  error: string | undefined;
  body: string;
  ms: number;
}

function send(port: number, path = '/', host = 'echo'): Promise<Answer> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { host } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, error: res.headers['weft-error'] as string | undefined, body: text, ms: performance.now() - start }));
    });
    req.on('error', reject);
    req.end();
  });
}

const rules = `  - backendRefs: [{ name: echo-v1, port: 80 }]`;

const breaker = `---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: small-breaker }
spec:
  targetRefs: [{ kind: Service, name: echo-v1 }]
  circuitBreaker: { maxRequests: 5 }
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: few-connections }
spec:
  targetRefs: [{ kind: Service, name: echo-v2 }]
  circuitBreaker: { maxConnections: 2, maxPendingRequests: 3 }`;

/** How long echo-v2's upstream takes to answer. */
const V2_MS = 400;

describe('circuit breaker', () => {
  let slow: Awaited<ReturnType<typeof startSlow>>;
  let slowV2: Awaited<ReturnType<typeof startSlow>>;
  let proxy: RunningProxy;

  before(async () => {
    slow = await startSlow();
    slowV2 = await startSlow(V2_MS);
    const file = tempFile('mesh.yaml', meshYaml({ v1: slow.port, v2: slowV2.port, tcp: 1 }, rules, breaker));
    proxy = await startProxy(file, 'client-1');
  });

  after(async () => {
    await proxy?.stop();
    await slow?.close();
    await slowV2?.close();
  });

  test('maxConnections 2, maxPendingRequests 3: of 10 concurrent requests 2 go at once, 3 wait for those connections, 5 overflow with CIRCUIT_OPEN', async () => {
    const answers = await Promise.all(Array.from({ length: 10 }, () => send(proxy.outbound, '/', 'echo-v2')));
    const ok = answers.filter((a) => a.status === 200).sort((a, b) => a.ms - b.ms);
    const open = answers.filter((a) => a.status === 503);
    console.log(`# maxConnections 2 / maxPending 3: ${ok.length} ok in ${ok.map((a) => Math.round(a.ms)).join(',')} ms; ${open.length} CIRCUIT_OPEN; upstream saw at most ${slowV2.mostConnections()} connections`);
    assert.equal(ok.length, 5, JSON.stringify(answers));
    assert.equal(open.length, 5, JSON.stringify(answers));
    for (const a of open) {
      assert.equal(a.error, 'CIRCUIT_OPEN');
      assert.match(JSON.parse(a.body).message as string, /maxPendingRequests is 3/);
      assert.ok(a.ms < V2_MS / 2, `an overflow is answered at once (${a.ms} ms)`);
    }
    assert.equal(slowV2.mostConnections(), 2, 'never more than maxConnections connections to the cluster');
    // Two rounds went at once; the three that waited needed two more rounds on the same two connections.
    assert.ok(ok[1]!.ms < 2 * V2_MS, `the first two did not wait (${ok[1]!.ms} ms)`);
    assert.ok(ok[2]!.ms >= 2 * V2_MS - 50, `the third waited for a connection (${ok[2]!.ms} ms)`);
    assert.ok(ok[4]!.ms >= 3 * V2_MS - 50, `the fifth waited two rounds (${ok[4]!.ms} ms)`);
    assert.equal(slowV2.hits(), 5);
    const metrics = await proxyMetrics(proxy);
    assert.match(metrics, /weft_circuit_open_total\{destination_service="echo-v2.default",limit="pending"\} 5\n/);
  });

  test('20 concurrent requests, maxRequests 5: 15 overflow at once with 503 CIRCUIT_OPEN, 5 get the 200; then requests pass again', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, () => send(proxy.outbound)));
    const ok = answers.filter((a) => a.status === 200);
    const open = answers.filter((a) => a.status === 503);
    assert.equal(ok.length, 5, JSON.stringify(answers));
    assert.equal(open.length, 15, JSON.stringify(answers));
    for (const a of ok) {
      assert.equal(a.body, 'slow ok');
      assert.ok(a.ms >= SLOW_MS - 100, `a 200 came after the upstream answered (${a.ms} ms)`);
    }
    for (const a of open) {
      assert.equal(a.error, 'CIRCUIT_OPEN');
      const body = JSON.parse(a.body) as { code: string; message: string };
      assert.equal(body.code, 'CIRCUIT_OPEN');
      assert.match(body.message, /echo-v1\.default:80/);
      assert.match(body.message, /maxRequests is 5/);
      assert.ok(a.ms < SLOW_MS / 2, `an overflow is answered at once, not after the upstream (${a.ms} ms)`);
    }
    assert.equal(slow.hits(), 5, 'only the admitted requests reached the upstream');

    // The slots are free again once the responses are done.
    const again = await Promise.all(Array.from({ length: 5 }, () => send(proxy.outbound)));
    assert.deepEqual(again.map((a) => a.status), [200, 200, 200, 200, 200]);
    assert.equal(slow.hits(), 10);

    const metrics = await proxyMetrics(proxy);
    assert.match(metrics, /weft_circuit_open_total\{destination_service="echo-v1.default",limit="requests"\} 15\n/);
    assert.match(metrics, /weft_requests_total\{[^}]*response_code="503",grpc_status="",error_code="CIRCUIT_OPEN",mtls="(true|false)"\} 15\n/);
    assert.match(metrics, /weft_cluster_requests_active\{cluster="echo-v1.default:80"\} 0\n/);
  });
});
