/** What the rest of the proxy sees of a pool of connections to one endpoint, whatever its protocol. */
import type { MeshError } from '../../core/errors.js';
import type { ProxyRequest, ProxyResponse, RequestContext } from '../message.js';
import type { Http2Pool } from '../http2/client.js';
import type { WeftHttp2Pool } from '../http2/upstream.js';

/** HTTP/1.1 keep-alive connections, or one multiplexed HTTP/2 session. */
export type UpstreamProtocol = 'http/1.1' | 'h2';

export interface UpstreamPool {
  readonly host: string;
  readonly port: number;
  /** `host:port`, for labels and `/clusters`. */
  readonly key: string;
  /** Exchanges in flight (read by least-request balancing), started, and connect failures. */
  active: number;
  total: number;
  connectFailures: number;
  /** Idle connections (HTTP/1.1), or an open session with no stream (HTTP/2). */
  readonly idleCount: number;
  /**
   * Sends `req` and resolves with the response head; the body streams after. `timeoutMs` bounds the
   * wait for the head; `streamIdleMs` (0 or absent: none) cuts an exchange on which no byte moves
   * either way for that long, with STREAM_IDLE_TIMEOUT.
   */
  request(req: ProxyRequest, ctx: RequestContext, timeoutMs: number, streamIdleMs?: number): Promise<ProxyResponse>;
  close(): void;
  /**
   * The multiplexed HTTP/2 session (mTLS, ALPN `h2`) that carries TCP tunnels to this endpoint as
   * CONNECT streams, or null (or absent) when each tunnel gets a connection of its own: only the
   * pools of proxied endpoints under the `h2` peer transport, while this proxy speaks mTLS.
   */
  tunnelPool?(): Http2Pool | WeftHttp2Pool | null;
  /** Connections open or opening (HTTP/1.1 pools), counted against `maxConnections`. */
  readonly connections?: number;
  /** The cluster's connection limit (circuit breaker), set by the cluster that uses this pool. */
  connectionLimit?: ConnectionLimit | null;
  /** HTTP/1.1 pools: requests waiting for a connection, when the oldest began to wait, waking it, closing an idle connection. */
  readonly pendingRequests?: number;
  readonly oldestWaiter?: number;
  wakeOne?(): void;
  closeOneIdle?(): boolean;
}

/**
 * `maxConnections` and `maxPendingRequests` of a cluster (Envoy's thresholds), shared by the
 * HTTP/1.1 pools of its endpoints: a request that finds no idle connection and may not open one
 * waits in its pool for one, and waits only while fewer than `maxPendingRequests` already do. The
 * waiting requests live in the pools (which outlive configurations), so a configuration push never
 * strands them.
 */
export interface ConnectionLimit {
  readonly maxConnections: number;
  /** Whether one more connection may be opened to the cluster. */
  mayOpen(): boolean;
  /** Admits one more waiting request: null, or the CIRCUIT_OPEN error to answer when the queue is full. */
  admitPending(): MeshError | null;
  /** Closes an idle connection of another pool of the cluster, whose slot a waiting request of `pool` can use. */
  reclaimIdle(pool: UpstreamPool): void;
  /** Whether a request waits for a connection in another pool of the cluster than `pool`. */
  waitingElsewhere(pool: UpstreamPool): boolean;
  /** A connection of the cluster closed: the oldest waiting request (across its pools) may open one. */
  connectionClosed(): void;
}
/** How a proxy talks to other proxies: HTTP/1.1 pooled connections, or one multiplexed HTTP/2 session per endpoint. */
export type PeerTransport = 'http1' | 'h2';

/** `host:port`, with brackets around an IPv6 address: a pool's key, a CONNECT target. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
