/**
 * Circuit breaking per destination (Envoy's thresholds): counters shared by every endpoint of one
 * cluster within one configuration, checked synchronously when a request is dispatched. A request
 * over `maxRequests` is answered `CIRCUIT_OPEN` at once; a retry over `maxRetries` is not sent.
 * `maxConnections` counts the cluster's HTTP/1.1 pool connections and its forwarded TCP connections
 * together. Made at config time; the hot path allocates nothing.
 */
import { MeshError } from '../../core/errors.js';
import { DEFAULT_CIRCUIT_BREAKER } from '../../model/compile.js';
import type { CircuitBreakerLimits } from '../../model/snapshot.js';
import type { ConnectionLimit, UpstreamPool } from './upstream-pool.js';

/** Which limit overflowed: the `limit` label of `weft_circuit_open_total`. */
export type BreakerLimit = 'requests' | 'retries' | 'connections' | 'pending';

/** Counts an overflow: `weft_circuit_open_total{destination_service,limit}`. */
export type BreakerReport = (destination: string, limit: BreakerLimit) => void;

/**
 * The TCP connections a proxy forwards to one cluster, open or opening: counted against the
 * cluster's `maxConnections` from the moment one starts opening until its upstream side closes.
 * Kept per proxy and cluster name (`PoolRegistry.tcpConnections`), not per configuration, so a push
 * never forgets the connections still open, as the pools keep theirs.
 */
export class TcpConnections {
  open = 0;
  /** The breaker of the latest configuration: told when a connection closes (a waiting HTTP/1.1 request may take the slot). */
  breaker: CircuitBreaker | null = null;
  /** Releases one connection's slot; one function for all connections. */
  readonly release = (): void => {
    this.open--;
    this.breaker?.connectionClosed();
  };
}

export class CircuitBreaker implements ConnectionLimit {
  readonly limits: CircuitBreakerLimits;
  /** The cluster, named in the error. */
  private readonly cluster: string;
  /** `service.namespace`, the metric label. */
  private readonly destination: string;
  private readonly report: BreakerReport;
  /** Requests (tries) in flight, from dispatch until the response body settles or the try fails. */
  requests = 0;
  /** Retries in flight, from the decision to retry until that try's response head (or failure). */
  retries = 0;
  /** The pools of the cluster's endpoints, whose connections count against `maxConnections` (set by the cluster). */
  pools: readonly UpstreamPool[] = [];
  /** Releases one request slot; one function for all requests (no per-request closure). */
  readonly releaseRequest = (): void => {
    this.requests--;
  };
  /** The cluster's forwarded TCP connections (outlive this configuration); this breaker becomes the one they tell. */
  readonly tcp: TcpConnections;

  constructor(
    cluster: string,
    destination: string,
    limits: CircuitBreakerLimits = DEFAULT_CIRCUIT_BREAKER,
    report: BreakerReport = () => {},
    tcp: TcpConnections = new TcpConnections(),
  ) {
    this.cluster = cluster;
    this.destination = destination;
    this.limits = limits;
    this.report = report;
    this.tcp = tcp;
    tcp.breaker = this;
  }

  /** Takes a request slot; null when taken, or the CIRCUIT_OPEN error to answer when the breaker is full. */
  admitRequest(): MeshError | null {
    if (this.requests >= this.limits.maxRequests) {
      this.report(this.destination, 'requests');
      return new MeshError('CIRCUIT_OPEN', `circuit breaker of cluster ${this.cluster} is open: ${this.requests} requests in flight, maxRequests is ${this.limits.maxRequests}`);
    }
    this.requests++;
    return null;
  }

  /** Takes a retry slot; false (and counted) when `maxRetries` retries are already in flight. */
  admitRetry(): boolean {
    if (this.retries >= this.limits.maxRetries) {
      this.report(this.destination, 'retries');
      return false;
    }
    this.retries++;
    return true;
  }

  releaseRetry(): void {
    this.retries--;
  }

  get maxConnections(): number {
    return this.limits.maxConnections;
  }

  /**
   * Takes a `maxConnections` slot for a forwarded TCP connection, released by `tcp.release` once its
   * upstream side closes: null, or the CIRCUIT_OPEN error (counted, `limit="connections"`) when all
   * are taken. TCP never waits for a slot (no `maxPendingRequests`), as in Envoy's tcp_proxy.
   */
  admitTcp(): MeshError | null {
    const open = this.connections;
    // An idle HTTP/1.1 connection holds a slot nobody uses: it is closed to make room (its socket at
    // once, its count on its close event, so the count may read one over the limit until then).
    if (open === this.limits.maxConnections && this.closeOneIdle()) {
      this.tcp.open++;
      return null;
    }
    if (open >= this.limits.maxConnections) {
      this.report(this.destination, 'connections');
      return new MeshError('CIRCUIT_OPEN', `circuit breaker of cluster ${this.cluster} is open: ${open} connections open, maxConnections is ${this.limits.maxConnections}`);
    }
    this.tcp.open++;
    return null;
  }

  /** Connections open or opening to the cluster's endpoints: its HTTP/1.1 pool connections and its TCP connections. */
  get connections(): number {
    let n = this.tcp.open;
    for (const p of this.pools) n += p.connections ?? 0;
    return n;
  }

  mayOpen(): boolean {
    return this.connections < this.limits.maxConnections;
  }

  /** Requests waiting for a connection, in all the cluster's pools. */
  get pendingRequests(): number {
    let n = 0;
    for (const p of this.pools) n += p.pendingRequests ?? 0;
    return n;
  }

  admitPending(): MeshError | null {
    const waiting = this.pendingRequests;
    if (waiting < this.limits.maxPendingRequests) return null;
    this.report(this.destination, 'pending');
    return new MeshError(
      'CIRCUIT_OPEN',
      `circuit breaker of cluster ${this.cluster} is open: ${this.limits.maxConnections} connections busy and ${waiting} requests waiting for one, maxPendingRequests is ${this.limits.maxPendingRequests}`,
    );
  }

  /** Closes one idle connection of the cluster's pools: true when there was one. */
  private closeOneIdle(): boolean {
    for (const p of this.pools) if (p.closeOneIdle?.() === true) return true;
    return false;
  }

  reclaimIdle(pool: UpstreamPool): void {
    for (const p of this.pools) if (p !== pool && p.closeOneIdle?.() === true) return;
  }

  waitingElsewhere(pool: UpstreamPool): boolean {
    for (const p of this.pools) if (p !== pool && (p.pendingRequests ?? 0) > 0) return true;
    return false;
  }

  connectionClosed(): void {
    while (this.mayOpen()) {
      let oldest: UpstreamPool | null = null;
      for (const p of this.pools) if ((p.oldestWaiter ?? Infinity) < (oldest?.oldestWaiter ?? Infinity)) oldest = p;
      if (oldest === null) return;
      oldest.wakeOne!();
    }
  }
}
