/**
 * The inbound rate limiter of one configuration: for each app port, the RateLimitPolicies covering
 * it, each with its key, its local token buckets and its global counter. A request takes a token
 * from every local bucket first (no I/O), then is counted in every global window (one Redis round
 * trip each, in parallel, bounded by the Mesh's `rateLimiting.redis.timeout`). The first policy that
 * refuses answers 429 RATE_LIMITED with `retry-after`.
 *
 * What must outlive a configuration push — the Redis connection and the buckets' state — lives in
 * the proxy's RateLimitRegistry; a policy whose limits did not change keeps its buckets.
 */
import { MeshError } from '../../core/errors.js';
import type { InboundRateLimits, RateLimitPolicyConfig } from '../../model/snapshot.js';
import { getHeader, type ProxyRequest, type RequestContext } from '../message.js';
import { countInWindow, prepare, redisKey } from './global-counter.js';
import { RedisClient, RedisCommandError, type RedisFailure } from './redis-client.js';
import { TokenBuckets } from './token-bucket.js';

export type RateLimitScope = 'local' | 'global';

/** Counters the proxy keeps: `weft_rate_limited_total` and `weft_rate_limit_redis_errors_total`. */
export interface RateLimitReports {
  limited(destination: string, policy: string, scope: RateLimitScope): void;
  redisError(reason: RedisFailure | 'error'): void;
}

/** The bucket of a caller without an identity, when the key is `SourceIdentity`. */
export const UNAUTHENTICATED = 'unauthenticated';

/** Redis connections by address and token buckets by policy, kept across configuration pushes. */
export class RateLimitRegistry {
  private readonly clients = new Map<string, RedisClient>();
  private readonly buckets = new Map<string, TokenBuckets>();

  constructor(readonly reports: RateLimitReports) {}

  /** The connection to `address` (`host:port`), made on first use. */
  redis(address: string): RedisClient {
    let c = this.clients.get(address);
    if (c === undefined) {
      const i = address.lastIndexOf(':');
      const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
      c = new RedisClient({ host, port: Number(address.slice(i + 1)) });
      this.clients.set(address, c);
    }
    return c;
  }

  /** The buckets of a policy's `local` limit: the same object while the policy's name, key and limit stay. */
  local(p: RateLimitPolicyConfig & { local: NonNullable<RateLimitPolicyConfig['local']> }): { id: string; buckets: TokenBuckets } {
    const id = JSON.stringify([p.name, p.key, p.local]);
    let b = this.buckets.get(id);
    if (b === undefined) {
      b = new TokenBuckets(p.local.requests, p.local.perMs, p.local.burst);
      this.buckets.set(id, b);
    }
    return { id, buckets: b };
  }

  /** Drops what the configuration now in force no longer uses (closing unused Redis connections). */
  retainOnly(limiter: InboundRateLimiter | null): void {
    for (const [address, c] of this.clients) {
      if (limiter?.redisAddress === address) continue;
      c.close();
      this.clients.delete(address);
    }
    for (const id of this.buckets.keys()) if (limiter === null || !limiter.bucketIds.has(id)) this.buckets.delete(id);
  }

  /** `weft_rate_limit_redis_connected{address}`: 1 while the connection to Redis is up. */
  gauges(): string[] {
    if (this.clients.size === 0) return [];
    const out = ['# HELP weft_rate_limit_redis_connected 1 while the connection to the Redis of global rate limits is up.', '# TYPE weft_rate_limit_redis_connected gauge'];
    for (const [address, c] of this.clients) out.push(`weft_rate_limit_redis_connected{address="${address}"} ${c.connected ? 1 : 0}`);
    return out;
  }

  /** Closes every connection. */
  close(): void {
    this.retainOnly(null);
  }
}

/** One policy, ready for requests. */
interface ActivePolicy {
  config: RateLimitPolicyConfig;
  key: (req: ProxyRequest, ctx: RequestContext) => string;
  local: TokenBuckets | null;
}

/** What the limiter says of a request: null (go on), a refusal, or — when Redis is asked — a promise of either. */
export type RateLimitVerdict = MeshError | null | Promise<MeshError | null>;

/** The rate limits of one configuration's inbound side. */
export class InboundRateLimiter {
  /** The Redis address in use, if any. */
  readonly redisAddress: string | null;
  /** The registry's bucket ids in use. */
  readonly bucketIds = new Set<string>();
  private readonly byPort = new Map<number, ActivePolicy[]>();
  private readonly client: RedisClient | null;
  private readonly timeoutMs: number;
  private readonly reports: RateLimitReports;

  constructor(
    config: InboundRateLimits,
    registry: RateLimitRegistry,
    private readonly destination: string,
  ) {
    this.reports = registry.reports;
    const usesGlobal = config.policies.some((p) => p.global !== null);
    this.redisAddress = usesGlobal && config.redis !== null ? config.redis.address : null;
    this.client = this.redisAddress === null ? null : registry.redis(this.redisAddress);
    if (this.client !== null) prepare(this.client);
    this.timeoutMs = config.redis?.timeoutMs ?? 0;
    for (const p of config.policies) {
      let local: TokenBuckets | null = null;
      if (p.local !== null) {
        const { id, buckets } = registry.local({ ...p, local: p.local });
        this.bucketIds.add(id);
        local = buckets;
      }
      const active: ActivePolicy = { config: p, key: keyOf(p.key), local };
      for (const port of p.appPorts) {
        const list = this.byPort.get(port);
        if (list === undefined) this.byPort.set(port, [active]);
        else list.push(active);
      }
    }
  }

  /** The verdict on one request to `appPort`. Sets `ctx.route` to `inbound:rate-limited:<policy>` on a refusal. */
  check(req: ProxyRequest, ctx: RequestContext, appPort: number): RateLimitVerdict {
    const list = this.byPort.get(appPort);
    if (list === undefined) return null;
    const now = performance.now();
    let globals: Array<Promise<MeshError | null>> | null = null;
    let globalPolicies: RateLimitPolicyConfig[] | null = null;
    for (const p of list) {
      const key = p.key(req, ctx);
      if (p.local !== null) {
        const wait = p.local.take(key, now);
        if (wait > 0) return this.refuse(ctx, p.config, 'local', overLimit(p.config, 'local', wait));
      }
      if (p.config.global !== null) {
        (globals ??= []).push(this.checkGlobal(p.config, key));
        (globalPolicies ??= []).push(p.config);
      }
    }
    if (globals === null) return null;
    // The first policy in order that refuses answers, and only it is counted.
    const policies = globalPolicies;
    return (globals.length === 1 ? globals[0]!.then((v) => [v]) : Promise.all(globals)).then((verdicts) => {
      const i = verdicts.findIndex((v) => v !== null);
      return i === -1 ? null : this.refuse(ctx, policies![i]!, 'global', verdicts[i]!);
    });
  }

  /** The refusal a global limit gives (not yet counted), or null. */
  private async checkGlobal(p: RateLimitPolicyConfig, key: string): Promise<MeshError | null> {
    const limit = p.global!;
    let why: string;
    if (this.client === null) {
      why = 'no Redis is configured (Mesh spec.rateLimiting.redis)';
    } else {
      try {
        const w = await countInWindow(this.client, redisKey(p.name, key), limit.perMs, performance.now() + this.timeoutMs);
        return w.count <= limit.requests ? null : overLimit(p, 'global', w.ttlMs);
      } catch (e) {
        this.reports.redisError(e instanceof RedisCommandError ? e.reason : 'error');
        why = (e as Error).message;
      }
    }
    if (p.failureMode === 'FailOpen') return null;
    return new MeshError('RATE_LIMITED', `RateLimitPolicy ${p.name} fails closed and its global limit cannot be checked: ${why}`, { retryAfter: 1 });
  }

  private refuse(ctx: RequestContext, p: RateLimitPolicyConfig, scope: RateLimitScope, err: MeshError): MeshError {
    ctx.route = `inbound:rate-limited:${p.name}`;
    this.reports.limited(this.destination, p.name, scope);
    return err;
  }
}

function overLimit(p: RateLimitPolicyConfig, scope: RateLimitScope, waitMs: number): MeshError {
  const limit = scope === 'local' ? p.local! : p.global!;
  const per = limit.perMs % 1000 === 0 ? `${limit.perMs / 1000}s` : `${limit.perMs}ms`;
  const by = p.key.type === 'None' ? '' : ` per ${p.key.type === 'Header' ? `header ${p.key.header}` : p.key.type === 'SourceIdentity' ? 'caller identity' : 'client address'}`;
  return new MeshError('RATE_LIMITED', `over the ${scope} limit of RateLimitPolicy ${p.name}: ${limit.requests} requests per ${per}${by}`, {
    retryAfter: Math.max(1, Math.ceil(waitMs / 1000)),
  });
}

/** The bucket key of a request, as the policy's `key` says. */
function keyOf(k: RateLimitPolicyConfig['key']): ActivePolicy['key'] {
  switch (k.type) {
    case 'None':
      return () => '';
    case 'SourceIdentity':
      return (_req, ctx) => ctx.peerIdentity ?? UNAUTHENTICATED;
    case 'ClientAddress':
      return (_req, ctx) => ctx.clientAddress;
    case 'Header': {
      // Requests without the header share one bucket: leaving it out is no way around the limit.
      const name = k.header;
      return (req) => getHeader(req.headers, name) ?? '';
    }
  }
}
