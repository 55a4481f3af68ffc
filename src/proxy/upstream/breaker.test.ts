import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MeshError } from '../../core/errors.js';
import type { Cluster } from '../../model/snapshot.js';
import { Body } from '../body.js';
import { newRequestContext, type ProxyRequest, type ProxyResponse, type RequestContext } from '../message.js';
import { retryLayer, type RetryResult } from '../filters/retry.js';
import { TcpConnections, type BreakerLimit } from './breaker.js';
import { ClusterRuntime } from './cluster.js';
import type { PoolRegistry } from './pools.js';
import { RetryBudgetBucket } from './retry-budget.js';
import type { UpstreamPool } from './upstream-pool.js';

function ctx(): RequestContext {
  return newRequestContext({ direction: 'outbound', requestId: 'r', clientAddress: '127.0.0.1', start: 0, route: 'r', destination: 'echo.default' });
}
const req = (): ProxyRequest => ({ method: 'GET', path: '/', authority: 'echo', headers: [], body: null });

/** An in-process endpoint: each request waits until the test answers it (with a status, a streamed body, or an error). */
function fakePool() {
  const waiting: Array<{ resolve: (r: ProxyResponse) => void; reject: (e: unknown) => void }> = [];
  const pool: UpstreamPool = {
    host: '127.0.0.1', port: 1, key: '127.0.0.1:1', active: 0, total: 0, connectFailures: 0, idleCount: 0,
    request: () => new Promise((resolve, reject) => waiting.push({ resolve, reject })),
    close() {},
  };
  return { pool, waiting };
}

function cluster(limits: Partial<Cluster['circuitBreaker']> | undefined) {
  const { pool, waiting } = fakePool();
  const tcp = new TcpConnections();
  const registry = { get: () => pool, tcpConnections: () => tcp } as unknown as PoolRegistry;
  const opened: BreakerLimit[] = [];
  const config: Cluster = {
    name: 'echo.default:80', service: 'echo', namespace: 'default', port: 80, protocol: 'HTTP', loadBalancer: 'RoundRobin', connectTimeoutMs: 1000,
    ...(limits === undefined ? {} : { circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 1024, ...limits } }),
    endpoints: [{ workload: 'default/echo', address: '127.0.0.1', port: 1, appPort: 1, proxied: false, identity: 'spiffe://x', labels: {} }],
  };
  const rt = new ClusterRuntime(config, registry, (dest, limit) => {
    assert.equal(dest, 'echo.default');
    opened.push(limit);
  });
  return { rt, waiting, opened };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('circuit breaker', () => {
  test('defaults to Envoy\'s 1024 when the cluster sets none', () => {
    assert.deepEqual(cluster(undefined).rt.breaker.limits, { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 1024 });
  });

  test('maxRequests: the request over the limit is refused at once with CIRCUIT_OPEN; a finished one frees its slot', async () => {
    const { rt, waiting, opened } = cluster({ maxRequests: 2 });
    const h = rt.handler(0);
    const a = h(req(), ctx());
    const b = h(req(), ctx());
    await assert.rejects(h(req(), ctx()), (e: unknown) => e instanceof MeshError && e.code === 'CIRCUIT_OPEN' && e.status === 503 && /echo\.default:80/.test(e.message) && /maxRequests is 2/.test(e.message));
    assert.deepEqual(opened, ['requests']);
    assert.equal(waiting.length, 2, 'the refused request never reached the pool');
    assert.equal(rt.breaker.requests, 2);

    // A response with no body frees its slot at once.
    waiting[0]!.resolve({ status: 200, headers: [], body: null });
    await a;
    assert.equal(rt.breaker.requests, 1);
    // A streamed body holds the slot until it settles.
    const body = new Body(-1);
    waiting[1]!.resolve({ status: 200, headers: [], body });
    await b;
    assert.equal(rt.breaker.requests, 1);
    const c = h(req(), ctx());
    await assert.rejects(h(req(), ctx()), (e: unknown) => e instanceof MeshError && e.code === 'CIRCUIT_OPEN');
    body.end(null);
    assert.equal(rt.breaker.requests, 1);
    // A failed try frees its slot too.
    waiting[2]!.reject(new MeshError('UPSTREAM_RESET', 'reset'));
    await assert.rejects(c, (e: unknown) => e instanceof MeshError && e.code === 'UPSTREAM_RESET');
    assert.equal(rt.breaker.requests, 0);
    assert.deepEqual(opened, ['requests', 'requests']);
  });

  test('maxRetries: a retry is not sent while the limit of retries is in flight (result="circuit_open")', async () => {
    const { rt, waiting, opened } = cluster({ maxRetries: 1 });
    const results: RetryResult[] = [];
    const h = retryLayer(
      { codes: [503], attempts: 3, backoffMs: 1, onConnectFailure: true, allowNonIdempotent: false },
      new RetryBudgetBucket({ percent: 100, minRetriesPerSecond: 100 }),
      { destination: 'echo.default', report: (_d, r) => results.push(r), breaker: rt.breaker, sleep: () => Promise.resolve() },
    )(rt.handler(0));
    const a = h(req(), ctx());
    const b = h(req(), ctx());
    await flush();
    assert.equal(waiting.length, 2);
    // a fails first: its retry takes the one slot and is in flight.
    waiting[0]!.resolve({ status: 503, headers: [], body: null });
    await flush();
    assert.equal(waiting.length, 3);
    assert.equal(rt.breaker.retries, 1);
    // b fails meanwhile: no retry slot, so its 503 is answered as is.
    waiting[1]!.resolve({ status: 503, headers: [], body: null });
    assert.equal((await b).status, 503);
    assert.deepEqual(results, ['retried', 'circuit_open']);
    assert.deepEqual(opened, ['retries']);
    // a's retry answers: the slot is free again.
    waiting[2]!.resolve({ status: 200, headers: [], body: null });
    assert.equal((await a).status, 200);
    assert.equal(rt.breaker.retries, 0);
    assert.equal(rt.breaker.requests, 0);
  });
});
