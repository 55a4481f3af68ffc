/**
 * A cluster at run time: its endpoints with their pools, and the picker its balancer published.
 * The upstream call is the terminal handler of every forwarding route.
 */
import { isMeshError, MeshError } from '../../core/errors.js';
import type { Cluster, Endpoint } from '../../model/snapshot.js';
import type { UpstreamPool } from './upstream-pool.js';
import type { Handler, ProxyRequest, ProxyResponse } from '../message.js';
import type { Picker } from './balancer.js';
import { buildPicker } from './endpoint-set.js';
import type { PoolRegistry } from './pools.js';
import { RetryBudgetBucket } from './retry-budget.js';
import { CircuitBreaker, type BreakerReport } from './breaker.js';
import { DEFAULT_STREAM_IDLE_TIMEOUT_MS, DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS } from '../../model/compile.js';
import type { OutcomeTracker } from './outlier.js';
import { FAILURE_PENALTY_MS, latencyOf, type PeakEwma } from './ewma.js';
import { DESTINATION_SERVICE_HEADER, SOURCE_SERVICE_HEADER } from '../admin/peer-labels.js';

/** Header that tells a workload's inbound proxy which app port a request is for. */
export const APP_PORT_HEADER = 'weft-app-port';

/** One endpoint of a cluster, with the pool that reaches it. */
export class ClusterEndpoint {
  readonly endpoint: Endpoint;
  readonly pool: UpstreamPool;
  /** The `weft-app-port` value for a proxied endpoint, made once; null when not proxied. */
  readonly appPortHeader: string | null;
  /** Relative share of traffic (Workload `spec.weight`). */
  readonly weight: number;
  /** Where hashing balancers place this endpoint. */
  readonly hashKey: string;
  /** PeakEWMA's latency estimate; kept with the pool, so it survives configuration pushes. */
  readonly latency: PeakEwma;

  constructor(endpoint: Endpoint, pool: UpstreamPool) {
    this.endpoint = endpoint;
    this.pool = pool;
    this.appPortHeader = endpoint.proxied ? String(endpoint.appPort) : null;
    this.weight = endpoint.weight ?? 1;
    this.hashKey = `${endpoint.address}:${endpoint.port}`;
    this.latency = latencyOf(pool);
  }

  /** PeakEWMA: records a try from dispatch (`since`, performance.now()) to response headers; a failure counts as at least FAILURE_PENALTY_MS. */
  observe(since: number, failed: boolean, decayMs: number): void {
    const now = performance.now();
    this.latency.observe(failed ? Math.max(now - since, FAILURE_PENALTY_MS) : now - since, now, decayMs);
  }

  /**
   * False while outlier detection has ejected this endpoint or active health checks fail it. Whoever
   * changes it calls the cluster's `refresh()`.
   */
  healthy = true;

  /** Told how each try to this endpoint ends, when its cluster has outlier detection (set by the HealthRegistry); else null. */
  tracker: OutcomeTracker | null = null;
  /** The cluster's settle and fail for a try to this endpoint, telling `tracker` first (prebuilt by the cluster). */
  settle: (res: ProxyResponse) => ProxyResponse = (res) => res;
  fail: (err: unknown) => never = (err) => {
    throw err;
  };

  get active(): number {
    return this.pool.active;
  }
}

/** A cluster built from its snapshot entry. */
export class ClusterRuntime {
  readonly config: Cluster;
  readonly endpoints: readonly ClusterEndpoint[];
  /** Rebuilt by `refresh()` when an endpoint's health changes; never mutated. */
  private picker: Picker<ClusterEndpoint>;
  private budget: RetryBudgetBucket | null = null;
  /** The circuit breaker of this destination, shared by all its endpoints' pools (per configuration). */
  readonly breaker: CircuitBreaker;
  /** Releases the request slot when a try's response is done (prebuilt: nothing allocated per request). */
  private readonly settle: (res: ProxyResponse) => ProxyResponse;
  private readonly fail: (err: unknown) => never;

  /** The labels of the proxy's own workload: its zone and region for locality-aware picking. */
  private readonly local: Readonly<Record<string, string>>;

  /** This proxy's own service (`name.namespace`), told to proxied endpoints for their metrics; set by the Runtime. */
  sourceService = '';

  constructor(config: Cluster, pools: PoolRegistry, onBreakerOpen?: BreakerReport, local: Readonly<Record<string, string>> = {}) {
    this.config = config;
    this.local = local;
    // Forwarded TCP connections are counted per cluster name with the proxy's pools, so the count outlives this configuration.
    const breaker = (this.breaker = new CircuitBreaker(config.name, `${config.service}.${config.namespace}`, config.circuitBreaker, onBreakerOpen, pools.tcpConnections(config.name)));
    const release = breaker.releaseRequest;
    this.settle = (res) => {
      if (res.upgraded !== undefined) res.upgraded.socket.once('close', release);
      else if (res.body === null) release();
      else res.body.onSettled(release);
      return res;
    };
    this.fail = (err) => {
      release();
      throw err;
    };
    // HTTP/2 and gRPC services are reached over HTTP/2 (to their proxies, or to the apps themselves).
    const protocol = config.protocol === 'HTTP2' || config.protocol === 'GRPC' ? 'h2' : 'http/1.1';
    const idleMs = config.idleTimeoutMs ?? DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS;
    this.endpoints = config.endpoints.map((e) => new ClusterEndpoint(e, pools.get(e.address, e.port, config.connectTimeoutMs, e.proxied ? e.identity : null, protocol, idleMs)));
    const { settle, fail } = this;
    for (const ep of this.endpoints) {
      ep.settle = (res) => {
        ep.tracker?.response(res.status);
        return settle(res);
      };
      ep.fail = (err) => {
        ep.tracker?.failure(err);
        return fail(err);
      };
    }
    this.picker = buildPicker(config, this.endpoints, local);
    // maxConnections and maxPendingRequests: the HTTP/1.1 pools of this cluster's endpoints consult the breaker.
    breaker.pools = this.endpoints.map((e) => e.pool);
    for (const p of breaker.pools) if ('connectionLimit' in p) p.connectionLimit = breaker;
  }

  /** Picks an endpoint for a request (`req` null for a TCP connection), or null when there is none. */
  pick(req: ProxyRequest | null, clientAddress: string): ClusterEndpoint | null {
    return this.picker(req, clientAddress);
  }

  /** Builds the picker again from the endpoints' current health. */
  refresh(): void {
    this.picker = buildPicker(this.config, this.endpoints, this.local);
  }

  /** The retry budget of this destination, made when a route first retries to it. */
  get retryBudget(): RetryBudgetBucket {
    return (this.budget ??= new RetryBudgetBucket(this.config.retryBudget));
  }

  /** The terminal handler that sends a request to one of this cluster's endpoints. */
  handler(backendTimeoutMs: number): Handler {
    const name = this.config.name;
    const breaker = this.breaker;
    const streamIdleMs = this.config.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS;
    const ewmaDecayMs = this.config.loadBalancer === 'PeakEWMA' ? (this.config.ewmaDecayMs ?? 10_000) : 0;
    return (req, ctx) => {
      const ep = this.picker(req, ctx.clientAddress);
      if (ep === null) return Promise.reject(new MeshError('NO_HEALTHY_UPSTREAM', `no healthy endpoint in cluster ${name}`));
      const open = breaker.admitRequest();
      if (open !== null) return Promise.reject(open);
      if (ep.appPortHeader !== null) {
        // The metrics labels the destination's proxy takes over mTLS (admin/peer-labels.ts).
        req.headers.push(APP_PORT_HEADER, ep.appPortHeader, SOURCE_SERVICE_HEADER, this.sourceService, DESTINATION_SERVICE_HEADER, ctx.destination);
        ctx.destinationIdentity = ep.endpoint.identity;
      }
      let sent: Promise<ProxyResponse>;
      const since = ewmaDecayMs === 0 ? 0 : performance.now();
      try {
        sent = ep.pool.request(req, ctx, backendTimeoutMs, streamIdleMs);
      } catch (err) {
        breaker.releaseRequest();
        throw err;
      }
      if (ewmaDecayMs === 0) return sent.then(ep.settle, ep.fail);
      // PeakEWMA observes each try's latency: two closures per request, only with this balancer.
      return sent.then(
        (res) => (ep.observe(since, false, ewmaDecayMs), ep.settle(res)),
        (err) => (isMeshError(err) && err.code === 'CLIENT_CLOSED' ? undefined : ep.observe(since, true, ewmaDecayMs), ep.fail(err)),
      );
    };
  }
}
