import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isMeshError, MeshError } from '../../core/errors.js';
import type { FaultConfig } from '../../model/snapshot.js';
import { meshErrorResponse } from '../local-reply.js';
import { newRequestContext, abortContext, type Handler, type ProxyRequest, type RequestContext } from '../message.js';
import { faultLayer, unresolvedFault, type FaultKind } from './fault.js';

function ctx(): RequestContext {
  return newRequestContext({ direction: 'outbound', requestId: 'r', clientAddress: '127.0.0.1', start: 0, route: 'r', destination: 'echo.default' });
}
const req = (): ProxyRequest => ({ method: 'GET', path: '/', authority: 'echo', headers: [], body: null });
const ok: Handler = async () => ({ status: 200, headers: [], body: null });

/** A seeded generator (mulberry32), so the shares below are the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function build(fault: FaultConfig, random = seeded(42)) {
  const counts: Record<FaultKind, number> = { delay: 0, abort: 0 };
  const handler = faultLayer(fault, { route: 'default/r/rule/0/match/0', report: (_r, k) => void counts[k]++, random })(ok);
  return { handler, counts };
}

describe('fault layer', () => {
  test('aborts the configured share of requests with the configured status and FAULT_INJECTED', async () => {
    const { handler, counts } = build({ delay: null, abort: { status: 418, percentage: 30 } });
    let aborted = 0;
    for (let i = 0; i < 10_000; i++) {
      try {
        await handler(req(), ctx());
      } catch (e) {
        assert.ok(isMeshError(e));
        assert.equal(e.code, 'FAULT_INJECTED');
        assert.equal(e.status, 418);
        aborted++;
      }
    }
    assert.ok(Math.abs(aborted / 10_000 - 0.3) < 0.02, `aborted ${aborted} of 10000`);
    assert.equal(counts.abort, aborted);
    const res = meshErrorResponse(new MeshError('FAULT_INJECTED', 'x', { status: 418 }), null);
    assert.equal(res.status, 418);
    assert.deepEqual(res.headers.slice(2, 4), ['weft-error', 'FAULT_INJECTED']);
  });

  test('0 % never and 100 % always, without drawing', async () => {
    const never = () => assert.fail('no draw expected');
    await build({ delay: null, abort: { status: 503, percentage: 0 } }, never).handler(req(), ctx());
    await assert.rejects(build({ delay: null, abort: { status: 503, percentage: 100 } }, never).handler(req(), ctx()), /fault injected/);
  });

  test('delays the configured share by the fixed delay, then forwards', async () => {
    const { handler, counts } = build({ delay: { ms: 40, percentage: 100 }, abort: null });
    const t0 = performance.now();
    const res = await handler(req(), ctx());
    assert.equal(res.status, 200);
    assert.ok(performance.now() - t0 >= 38);
    assert.equal(counts.delay, 1);
    const half = build({ delay: { ms: 1, percentage: 50 }, abort: null });
    for (let i = 0; i < 2000; i++) await half.handler(req(), ctx());
    assert.ok(Math.abs(half.counts.delay / 2000 - 0.5) < 0.04, `delayed ${half.counts.delay} of 2000`);
  });

  test('a delay ends early when the exchange is given up, and nothing is forwarded', async () => {
    let forwarded = false;
    const layer = faultLayer({ delay: { ms: 10_000, percentage: 100 }, abort: null }, { route: 'r', report: () => {} });
    const handler = layer(async () => ((forwarded = true), { status: 200, headers: [], body: null }));
    const c = ctx();
    const t0 = performance.now();
    const p = handler(req(), c);
    setTimeout(() => abortContext(c, new MeshError('UPSTREAM_TIMEOUT', 'gone')), 20);
    await assert.rejects(p, /gone/);
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(forwarded, false);
  });

  test('delay and abort together: delayed, then aborted', async () => {
    const { handler, counts } = build({ delay: { ms: 5, percentage: 100 }, abort: { status: 500, percentage: 100 } });
    await assert.rejects(handler(req(), ctx()), (e: unknown) => isMeshError(e) && e.status === 500);
    assert.deepEqual(counts, { delay: 1, abort: 1 });
  });

  test('an unresolved HTTPFault answers 500 INVALID_BACKEND', async () => {
    await assert.rejects(unresolvedFault('default/gone', 'default/r/rule/0/match/0')(ok)(req(), ctx()), (e: unknown) => isMeshError(e) && e.code === 'INVALID_BACKEND' && e.status === 500);
  });
});
