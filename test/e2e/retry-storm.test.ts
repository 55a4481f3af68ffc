// A retry storm, end to end: every endpoint answers 503, the route retries 503 up to 3 times, and
// the destination's BackendPolicy sets a retry budget of 20 % + N/s. A paced burst of requests goes
// through a `weft proxy --file`; the tries the app saw show whether the budget held the storm.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { proxyMetrics, startProxy, tempFile, type RunningProxy } from './harness.js';

const REQUESTS = 500;
/** Requests sent together every TICK_MS: 500 over about 5 s. */
const PER_TICK = 10;
const TICK_MS = 100;
const PERCENT = 20;
const MIN_PER_SECOND = 5;

/** An app that answers every request 503 and counts them. */
async function startUnavailable(): Promise<{ port: number; tries: () => number; close(): Promise<void> }> {
  let tries = 0;
  const server: Server = createServer((req, res) => {
    tries++;
    req.resume();
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('unavailable');
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    tries: () => tries,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function send(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: 'storm' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

const mesh = (port: number) => `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: storm }
spec: { selector: { app: storm }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: storm-1, labels: { app: storm } }
spec: { address: 127.0.0.1, ports: { http: ${port} } }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: ${port} } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: storm }
spec:
  parentRefs: [{ kind: Service, name: storm, port: 80 }]
  rules:
  - retry: { codes: [503], attempts: 3, backoff: 5ms }
    backendRefs: [{ name: storm, port: 80 }]
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: storm }
spec:
  targetRefs: [{ kind: Service, name: storm }]
  retryBudget: { percent: ${PERCENT}, minRetriesPerSecond: ${MIN_PER_SECOND} }
`;

/** The value of one metric line, 0 when absent. */
const metric = (text: string, line: string): number => {
  const m = new RegExp(`^${line.replace(/[{}.]/g, (c) => `\\${c}`)} (\\d+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
};

describe('retry storm', () => {
  let app: Awaited<ReturnType<typeof startUnavailable>>;
  let proxy: RunningProxy;

  before(async () => {
    app = await startUnavailable();
    proxy = await startProxy(tempFile('mesh.yaml', mesh(app.port)), 'client-1');
  });

  after(async () => {
    await proxy?.stop();
    await app?.close();
  });

  test(`every endpoint 503, 3 retries each, budget ${PERCENT} % + ${MIN_PER_SECOND}/s: retries stay within the budget`, async () => {
    const t0 = performance.now();
    const pending: Array<Promise<number>> = [];
    for (let tick = 0; tick < REQUESTS / PER_TICK; tick++) {
      for (let i = 0; i < PER_TICK; i++) pending.push(send(proxy.outbound));
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
    const statuses = await Promise.all(pending);
    const seconds = (performance.now() - t0) / 1000;
    const tries = app.tries();
    const retries = tries - REQUESTS;
    // Deposits (PERCENT % of each request) only fade; the per-second reserve starts full (one second's
    // worth) and refills at MIN_PER_SECOND a second: at most PERCENT % of the requests plus
    // MIN_PER_SECOND × (seconds + 1). Tolerance: 2 retries, for floating-point rounding of the deposits.
    const bound = (PERCENT / 100) * REQUESTS + MIN_PER_SECOND * (seconds + 1) + 2;
    const text = await proxyMetrics(proxy);
    const label = (result: string) => `weft_retries_total{destination_service="storm.default",result="${result}"}`;
    const [retried, exhausted, attemptsExhausted] = ['retried', 'budget_exhausted', 'attempts_exhausted'].map((r) => metric(text, label(r)));
    console.log(
      `# ${REQUESTS} requests in ${seconds.toFixed(1)} s; the app saw ${tries} tries: ${retries} retries = ${((100 * retries) / REQUESTS).toFixed(1)} % of requests ` +
        `(bound ${bound.toFixed(0)}; without a budget ${3 * REQUESTS}); retried ${retried}, budget_exhausted ${exhausted}, attempts_exhausted ${attemptsExhausted}`,
    );
    assert.equal(statuses.length, REQUESTS);
    assert.ok(statuses.every((s) => s === 503), 'every caller got the app\'s own 503');
    assert.ok(retries <= bound, `${retries} retries > bound ${bound}`);
    assert.ok(retries >= 0.5 * (PERCENT / 100) * REQUESTS, `the budget allowed retries (${retries})`);
    assert.equal(retried, retries, 'every retry the proxy counted reached the app');
    // Each request ends once: refused by the budget, or out of attempts.
    assert.equal(exhausted + attemptsExhausted, REQUESTS);
    assert.ok(exhausted >= REQUESTS - retries, `budget_exhausted ${exhausted}`);
  });
});
