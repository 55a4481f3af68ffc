import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MeshError } from '../../core/errors.js';
import type { RetryPolicy } from '../../model/snapshot.js';
import { Body } from '../body.js';
import { getHeader, type Handler, type ProxyRequest, type ProxyResponse, type RequestContext } from '../message.js';
import { RetryBudgetBucket } from '../upstream/retry-budget.js';
import { MAX_REPLAY_BYTES, retryLayer, type RetryResult } from './retry.js';

const policy = (p: Partial<RetryPolicy> = {}): RetryPolicy => ({ codes: [503], attempts: 3, backoffMs: 10, onConnectFailure: true, allowNonIdempotent: false, ...p });

function ctx(): RequestContext {
  return {
    direction: 'outbound',
    requestId: 'r',
    clientAddress: '127.0.0.1',
    peerIdentity: null,
    start: 0,
    route: 'r',
    destination: 'echo.default',
    upstreamHost: '',
    abortHandlers: [],
    interim: null,
    errorCode: '',
    aborted: null,
    sourceService: '',
    destinationIdentity: '',
    bytesReceived: 0,
    bytesSent: 0,
  };
}

const req = (method = 'GET', body: Body | null = null): ProxyRequest => ({ method, path: '/', authority: 'echo', headers: ['x-a', '1'], body });

/** Reads a body to the end. */
function read(body: Body | null): Promise<string> {
  if (body === null) return Promise.resolve('');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    body.pipe({ data: (c) => (chunks.push(c), true), end: () => resolve(Buffer.concat(chunks).toString()), error: reject });
  });
}

/** An upstream answering the statuses in turn (an Error is thrown), recording each try's body. */
function upstream(outcomes: Array<number | Error>) {
  const seen: Array<{ body: string; headers: string[] }> = [];
  const discarded: string[] = [];
  const handler: Handler = async (r) => {
    const body = await read(r.body);
    seen.push({ body, headers: r.headers.slice() });
    r.headers.push('weft-app-port', '8080'); // as the cluster handler does
    const o = outcomes[Math.min(seen.length - 1, outcomes.length - 1)]!;
    if (o instanceof Error) throw o;
    const res = new Body(-1, { pause() {}, resume() {}, abort: (e) => discarded.push(e.message) });
    res.push(Buffer.from(`status ${o}`));
    return { status: o, headers: [], body: res };
  };
  return { handler, seen, discarded };
}

function layer(p: RetryPolicy, budget = new RetryBudgetBucket({ percent: 20, minRetriesPerSecond: 10 })) {
  const results: RetryResult[] = [];
  const sleeps: number[] = [];
  const wrap = retryLayer(p, budget, {
    destination: 'echo.default',
    report: (_d, r) => results.push(r),
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
  });
  return { wrap, results, sleeps };
}

describe('retry layer', () => {
  test('503 twice then 200: the caller sees 200, discarded responses are aborted, headers are fresh per try', async () => {
    const u = upstream([503, 503, 200]);
    const { wrap, results, sleeps } = layer(policy());
    const res: ProxyResponse = await wrap(u.handler)(req(), ctx());
    assert.equal(res.status, 200);
    assert.equal(u.seen.length, 3);
    assert.deepEqual(u.seen.map((s) => s.headers), [['x-a', '1'], ['x-a', '1'], ['x-a', '1']]);
    assert.deepEqual(results, ['retried', 'retried']);
    assert.equal(u.discarded.length, 2);
    assert.deepEqual(sleeps, [15, 20], 'backoff plus jitter over a window doubling per retry');
  });

  test('attempts exhausted: the last retriable response is returned as is', async () => {
    const u = upstream([503]);
    const { wrap, results } = layer(policy({ attempts: 2 }));
    const res = await wrap(u.handler)(req(), ctx());
    assert.equal(res.status, 503);
    assert.equal(res.body!.done, false, 'returned with its body, not aborted');
    assert.equal(u.discarded.length, 2);
    assert.equal(u.seen.length, 3);
    assert.deepEqual(results, ['retried', 'retried', 'attempts_exhausted']);
  });

  test('gRPC: a trailers-only answer whose grpc-status is in grpcCodes is retried (a POST too); one with messages before it, or another code, is not', async () => {
    // Each answer: HTTP 200, and grpc-status in the head (trailers-only) or only after a message.
    const answers = [
      { headers: ['content-type', 'application/grpc', 'grpc-status', '14', 'grpc-message', 'down'], trailersOnly: true },
      { headers: ['content-type', 'application/grpc', 'grpc-status', '8'], trailersOnly: true },
      { headers: ['content-type', 'application/grpc'], trailersOnly: false },
    ];
    const run = async (order: number[], grpcCodes: number[]) => {
      let n = 0;
      const handler: Handler = async (r) => {
        await read(r.body);
        const a = answers[order[Math.min(n++, order.length - 1)]!]!;
        const body = new Body(-1);
        if (a.trailersOnly) body.end(null);
        else {
          body.push(Buffer.from([0, 0, 0, 0, 1, 7]));
          body.end(['grpc-status', '14']);
        }
        return { status: 200, headers: a.headers.slice(), body };
      };
      const { wrap, results } = layer(policy({ codes: [], grpcCodes, allowNonIdempotent: true }));
      const res = await wrap(handler)(req('POST', Body.of(Buffer.from([0, 0, 0, 0, 0]))), ctx());
      return { tries: n, status: getHeader(res.headers, 'grpc-status') ?? 'in trailers', results };
    };
    // UNAVAILABLE twice then a message: retried twice, the third answer goes back.
    assert.deepEqual(await run([0, 0, 2], [14]), { tries: 3, status: 'in trailers', results: ['retried', 'retried'] });
    // RESOURCE_EXHAUSTED is not among the codes: no retry.
    assert.deepEqual(await run([1, 2], [14]), { tries: 1, status: '8', results: [] });
    // A status after a message is never retried, whatever the codes.
    assert.deepEqual(await run([2, 0], [14]), { tries: 1, status: 'in trailers', results: [] });
    // Without grpcCodes (an HTTPRoute's policy) a gRPC failure is an ordinary 200.
    assert.deepEqual(await run([0, 2], []), { tries: 1, status: '14', results: [] });
  });

  test('a status not in codes is not retried', async () => {
    const u = upstream([500, 200]);
    const { wrap, results } = layer(policy());
    assert.equal((await wrap(u.handler)(req(), ctx())).status, 500);
    assert.deepEqual(results, []);
  });

  test('connect failure and reset are retried unless onConnectFailure is false; other mesh errors are not', async () => {
    const u = upstream([new MeshError('UPSTREAM_CONNECT_FAILURE', 'refused'), new MeshError('UPSTREAM_RESET', 'reset'), 200]);
    assert.equal((await layer(policy()).wrap(u.handler)(req(), ctx())).status, 200);
    const off = upstream([new MeshError('UPSTREAM_CONNECT_FAILURE', 'refused'), 200]);
    await assert.rejects(layer(policy({ onConnectFailure: false })).wrap(off.handler)(req(), ctx()), { code: 'UPSTREAM_CONNECT_FAILURE' });
    const timeout = upstream([new MeshError('UPSTREAM_TIMEOUT', 'slow'), 200]);
    await assert.rejects(layer(policy()).wrap(timeout.handler)(req(), ctx()), { code: 'UPSTREAM_TIMEOUT' });
    assert.equal(timeout.seen.length, 1);
  });

  test('a POST is not retried unless the route allows non-idempotent methods', async () => {
    const u = upstream([503, 200]);
    assert.equal((await layer(policy()).wrap(u.handler)(req('POST', Body.of(Buffer.from('x'))), ctx())).status, 503);
    assert.equal(u.seen.length, 1);
    const allowed = upstream([503, 200]);
    assert.equal((await layer(policy({ allowNonIdempotent: true })).wrap(allowed.handler)(req('POST', Body.of(Buffer.from('x'))), ctx())).status, 200);
    assert.deepEqual(allowed.seen.map((s) => s.body), ['x', 'x']);
  });

  test('a body within the replay buffer is sent again, streamed chunk by chunk', async () => {
    const u = upstream([503, 200]);
    const body = new Body(-1);
    const p = layer(policy()).wrap(u.handler)(req('PUT', body), ctx());
    body.push(Buffer.from('hello '));
    body.push(Buffer.from('world'));
    body.end(null);
    assert.equal((await p).status, 200);
    assert.deepEqual(u.seen.map((s) => s.body), ['hello world', 'hello world']);
  });

  test('a body beyond the replay buffer is not retried (known length or streamed)', async () => {
    const big = Buffer.alloc(MAX_REPLAY_BYTES + 1, 97);
    const known = upstream([503, 200]);
    const a = layer(policy());
    assert.equal((await a.wrap(known.handler)(req('PUT', Body.of(big)), ctx())).status, 503);
    assert.equal(known.seen[0]!.body.length, big.length);
    const streamed = upstream([503, 200]);
    const body = new Body(-1);
    const p = layer(policy()).wrap(streamed.handler)(req('PUT', body), ctx());
    body.push(big.subarray(0, 1000));
    body.push(big.subarray(1000));
    body.end(null);
    assert.equal((await p).status, 503);
    assert.equal(streamed.seen.length, 1);
  });

  test('a body not complete when the answer comes is not retried', async () => {
    const body = new Body(-1);
    const handler: Handler = async () => ({ status: 503, headers: [], body: null });
    const { wrap, results } = layer(policy());
    body.push(Buffer.from('partial'));
    assert.equal((await wrap(handler)(req('PUT', body), ctx())).status, 503);
    assert.deepEqual(results, []);
  });

  test('budget exhausted: the 503 goes through and is counted', async () => {
    let now = 0;
    const budget = new RetryBudgetBucket({ percent: 0, minRetriesPerSecond: 1 }, () => now);
    const { wrap, results } = layer(policy(), budget);
    const u = upstream([503]);
    const res = await wrap(u.handler)(req(), ctx());
    assert.equal(res.status, 503);
    assert.equal(u.seen.length, 2, 'one retry from the per-second minimum');
    assert.deepEqual(results, ['retried', 'budget_exhausted']);
    now += 1000;
    const again = upstream([503, 200]);
    assert.equal((await wrap(again.handler)(req(), ctx())).status, 200, 'the minimum refills');
  });

  test('an aborted exchange is not retried', async () => {
    const c = ctx();
    const handler: Handler = async () => {
      c.aborted = new MeshError('UPSTREAM_TIMEOUT', 'late');
      return { status: 503, headers: [], body: null };
    };
    assert.equal((await layer(policy()).wrap(handler)(req(), c)).status, 503);
  });
});

describe('retry budget', () => {
  test('each request deposits percent/100 of a retry; deposits fade over ~10 s', () => {
    let now = 0;
    const b = new RetryBudgetBucket({ percent: 20, minRetriesPerSecond: 0 }, () => now);
    assert.equal(b.withdraw(), false);
    for (let i = 0; i < 10; i++) b.deposit();
    assert.equal(b.withdraw(), true);
    assert.equal(b.withdraw(), true);
    assert.equal(b.withdraw(), false);
    for (let i = 0; i < 10; i++) b.deposit();
    now += 60_000;
    assert.equal(b.withdraw(), false, 'old deposits expired');
  });

  test('minRetriesPerSecond allows that many a second, not more, without traffic', () => {
    let now = 0;
    const b = new RetryBudgetBucket({ percent: 0, minRetriesPerSecond: 2 }, () => now);
    assert.deepEqual([b.withdraw(), b.withdraw(), b.withdraw()], [true, true, false]);
    now += 500;
    assert.deepEqual([b.withdraw(), b.withdraw()], [true, false]);
    now += 60_000;
    assert.deepEqual([b.withdraw(), b.withdraw(), b.withdraw()], [true, true, false], 'capped at one second\'s worth');
  });
});
