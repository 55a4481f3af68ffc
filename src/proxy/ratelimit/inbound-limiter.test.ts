import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MeshError } from '../../core/errors.js';
import type { InboundRateLimits, RateLimitPolicyConfig } from '../../model/snapshot.js';
import { GRPC_STATUS, meshErrorResponse } from '../local-reply.js';
import { newRequestContext, type ProxyRequest, type RequestContext } from '../message.js';
import { InboundRateLimiter, RateLimitRegistry } from './inbound-limiter.js';

const ctx = (peerIdentity: string | null = null): RequestContext => newRequestContext({ direction: 'inbound', requestId: 'r', clientAddress: '127.0.0.1', peerIdentity, start: 0, route: 'inbound', destination: 'api-1.default' });
const req = (headers: string[] = []): ProxyRequest => ({ method: 'GET', path: '/', authority: 'api', headers, body: null });
const policy = (p: Partial<RateLimitPolicyConfig>): RateLimitPolicyConfig => ({ name: 'default/p', appPorts: [8080], key: { type: 'None' }, local: null, global: null, failureMode: 'FailOpen', ...p });

function limiter(limits: InboundRateLimits) {
  const counted: string[] = [];
  const registry = new RateLimitRegistry({ limited: (d, p, s) => counted.push(`${d} ${p} ${s}`), redisError: (r) => counted.push(`redis ${r}`) });
  return { limiter: new InboundRateLimiter(limits, registry, 'api-1.default'), registry, counted };
}

describe('inbound rate limiter', () => {
  test('SourceIdentity: a bucket per caller, one shared by callers without identity; other ports are not covered', () => {
    const { limiter: l, counted } = limiter({ redis: null, policies: [policy({ key: { type: 'SourceIdentity' }, local: { requests: 1, perMs: 60_000, burst: 1 } })] });
    const a = 'spiffe://cluster.local/ns/default/sa/a';
    assert.equal(l.check(req(), ctx(a), 8080), null);
    const refused = l.check(req(), ctx(a), 8080);
    assert.ok(refused instanceof MeshError);
    assert.equal(refused.code, 'RATE_LIMITED');
    assert.equal(refused.status, 429);
    assert.equal(refused.retryAfter, 60);
    assert.equal(l.check(req(), ctx('spiffe://cluster.local/ns/default/sa/b'), 8080), null);
    assert.equal(l.check(req(), ctx(null), 8080), null);
    assert.ok(l.check(req(), ctx(null), 8080) instanceof MeshError, 'plaintext callers share the unauthenticated bucket');
    assert.equal(l.check(req(), ctx(a), 9090), null, 'port 9090 is not covered');
    assert.deepEqual(counted, ['api-1.default default/p local', 'api-1.default default/p local']);
  });

  test('buckets survive a configuration push while the policy is unchanged, and are dropped when it changes', () => {
    const limits: InboundRateLimits = { redis: null, policies: [policy({ local: { requests: 1, perMs: 60_000, burst: 1 } })] };
    const { limiter: first, registry } = limiter(limits);
    assert.equal(first.check(req(), ctx(), 8080), null);
    const second = new InboundRateLimiter(structuredClone(limits), registry, 'api-1.default');
    registry.retainOnly(second);
    assert.ok(second.check(req(), ctx(), 8080) instanceof MeshError, 'the same bucket, still empty');
    const changed = new InboundRateLimiter({ redis: null, policies: [policy({ local: { requests: 2, perMs: 60_000, burst: 2 } })] }, registry, 'api-1.default');
    registry.retainOnly(changed);
    assert.equal(changed.check(req(), ctx(), 8080), null, 'a new limit starts a full bucket');
  });

  test('a global limit without Redis acts as its failure mode', async () => {
    const { limiter: open } = limiter({ redis: null, policies: [policy({ global: { requests: 1, perMs: 1000 } })] });
    assert.equal(await open.check(req(), ctx(), 8080), null);
    const { limiter: closed, counted } = limiter({ redis: null, policies: [policy({ global: { requests: 1, perMs: 1000 }, failureMode: 'FailClosed' })] });
    const c = ctx();
    const err = await closed.check(req(), c, 8080);
    assert.ok(err instanceof MeshError);
    assert.match(err.message, /fails closed .* no Redis is configured/);
    assert.equal(c.route, 'inbound:rate-limited:default/p');
    assert.deepEqual(counted, ['api-1.default default/p global']);
  });

  test('the answer: 429 with weft-error and retry-after; gRPC callers get RESOURCE_EXHAUSTED', () => {
    const r = meshErrorResponse(new MeshError('RATE_LIMITED', 'over', { retryAfter: 3 }), null);
    assert.equal(r.status, 429);
    assert.deepEqual(r.headers, ['content-type', 'application/json', 'weft-error', 'RATE_LIMITED', 'retry-after', '3']);
    assert.equal(GRPC_STATUS.RATE_LIMITED, 8);
  });
});
