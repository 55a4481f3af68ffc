/**
 * Connection pools shared across configuration versions, keyed by `host:port`, so a hot reload
 * keeps warm connections to endpoints that are still there and closes the rest.
 */
import type { SecureContext } from 'node:tls';
import { MeshError } from '../../core/errors.js';
import { Http1Pool, type PoolOptions } from '../http1/client.js';
import type { Http2Pool } from '../http2/client.js';
import { HTTP2_ENGINE, WeftHttp2Pool } from '../http2/upstream.js';
import type { ProxyRequest, ProxyResponse, RequestContext } from '../message.js';
import type { PeerTransport, UpstreamPool, UpstreamProtocol } from './upstream-pool.js';
import { TcpConnections } from './breaker.js';

/** node:http2's pool, loaded only under WEFT_HTTP2_ENGINE=node: a proxy on Weft's engine never loads node:http2. */
const NodeHttp2Pool = HTTP2_ENGINE === 'node' ? (await import('../http2/client.js')).Http2Pool : null;

/** An HTTP/2 pool of either engine. */
type H2Pool = Http2Pool | WeftHttp2Pool;

/** Owns every upstream pool of a proxy. */
export class PoolRegistry {
  private pools = new Map<string, UpstreamPool>();
  private readonly base: Omit<PoolOptions, 'connectTimeoutMs'>;
  /** This proxy's mTLS client context, or null (no certificate, or mTLS disabled): set by the proxy. */
  clientContext: () => SecureContext | null = () => null;
  /**
   * How HTTP/1.1 requests and TCP tunnels reach a proxied endpoint: `http1` (pooled HTTP/1.1
   * connections, one exchange or tunnel each) or `h2` (the endpoint's one HTTP/2 session). Set by
   * the proxy before the first configuration.
   */
  peerTransport: PeerTransport = 'http1';
  /** Forwarded TCP connections by cluster name: counted against `maxConnections` across pushes. */
  private readonly tcp = new Map<string, TcpConnections>();

  constructor(base: Omit<PoolOptions, 'connectTimeoutMs'> = { maxIdle: 128, idleTimeoutMs: 60_000 }) {
    this.base = base;
  }

  /** The count of TCP connections forwarded to cluster `name`, made on first use. */
  tcpConnections(name: string): TcpConnections {
    let c = this.tcp.get(name);
    if (c === undefined) this.tcp.set(name, (c = new TcpConnections()));
    return c;
  }

  /**
   * The pool for an endpoint, made on first use; `peerIdentity` is set for an endpoint behind a proxy
   * (mTLS), `protocol` says whether it speaks HTTP/1.1 or HTTP/2; `idleTimeoutMs` closes its unused
   * connections (the registry's default when absent; 0: never).
   */
  get(host: string, port: number, connectTimeoutMs: number, peerIdentity: string | null = null, protocol: UpstreamProtocol = 'http/1.1', idleTimeoutMs = this.base.idleTimeoutMs): UpstreamPool {
    if (peerIdentity !== null && protocol === 'http/1.1' && this.peerTransport === 'h2') {
      const key = `${host}|${port}|${connectTimeoutMs}|${idleTimeoutMs}|${peerIdentity}|peer`;
      let pool = this.pools.get(key);
      if (pool === undefined) {
        const h2 = this.raw(host, port, connectTimeoutMs, peerIdentity, 'h2', idleTimeoutMs) as H2Pool;
        const h1 = this.raw(host, port, connectTimeoutMs, peerIdentity, 'http/1.1', idleTimeoutMs) as Http1Pool;
        pool = new PeerPool(h2, h1, () => this.clientContext() !== null);
        this.pools.set(key, pool);
      }
      return pool;
    }
    // Under the h2 peer transport an HTTP/2 cluster's proxied endpoint shares the PeerPool's session (same key).
    return this.raw(host, port, connectTimeoutMs, peerIdentity, protocol, idleTimeoutMs);
  }

  /** HTTP/2 pools run on Weft's own engine, node:http2's under WEFT_HTTP2_ENGINE=node (tunnels included). */
  private raw(host: string, port: number, connectTimeoutMs: number, peerIdentity: string | null, protocol: UpstreamProtocol, idleTimeoutMs: number): UpstreamPool {
    const key = `${host}|${port}|${connectTimeoutMs}|${idleTimeoutMs}|${peerIdentity ?? ''}|${protocol}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      const tls = peerIdentity === null ? null : { peerIdentity, context: () => this.clientContext() };
      pool = protocol === 'http/1.1'
        ? new Http1Pool(host, port, { ...this.base, connectTimeoutMs, idleTimeoutMs, tls })
        : NodeHttp2Pool !== null
          ? new NodeHttp2Pool(host, port, { connectTimeoutMs, idleTimeoutMs, tls })
          : new WeftHttp2Pool(host, port, { connectTimeoutMs, idleTimeoutMs, tls });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes pools not in `keep` (the pools of the configuration now in force, and the parts of those). */
  retainOnly(keep: ReadonlySet<UpstreamPool>): void {
    const all = new Set(keep);
    for (const p of keep) if (p instanceof PeerPool) all.add(p.h2).add(p.h1);
    for (const [key, pool] of this.pools) {
      if (!all.has(pool)) {
        pool.close();
        this.pools.delete(key);
      }
    }
  }

  closeAll(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
  }
}

/**
 * A proxied endpoint of an HTTP/1.1 (or TCP) cluster under the `h2` peer transport. Requests ride
 * the endpoint's one HTTP/2 session (the same one HTTP/2 and gRPC clusters use, and TCP tunnels as
 * CONNECT streams), except:
 * - a protocol upgrade (WebSocket…): an HTTP/2 stream cannot carry one without RFC 8441, so it takes
 *   an HTTP/1.1 connection that becomes the upgraded stream;
 * - while this proxy has no certificate or mTLS is off: plaintext HTTP/1.1, so a STRICT destination
 *   can still answer a readable `403 MTLS_REQUIRED`.
 * Its counters are its own (the session may be shared with other clusters); the parts belong to the registry.
 */
export class PeerPool implements UpstreamPool {
  readonly host: string;
  readonly port: number;
  readonly key: string;
  readonly h2: H2Pool;
  readonly h1: Http1Pool;
  private readonly secure: () => boolean;
  active = 0;
  total = 0;
  connectFailures = 0;

  constructor(h2: H2Pool, h1: Http1Pool, secure: () => boolean) {
    this.h2 = h2;
    this.h1 = h1;
    this.secure = secure;
    this.host = h2.host;
    this.port = h2.port;
    this.key = h2.key;
  }

  get idleCount(): number {
    return this.h1.idleCount + this.h2.idleCount;
  }

  async request(req: ProxyRequest, ctx: RequestContext, timeoutMs: number, streamIdleMs = 0): Promise<ProxyResponse> {
    const pool: UpstreamPool = req.upgrade === undefined && this.secure() ? this.h2 : this.h1;
    this.active++;
    this.total++;
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        this.active--;
      }
    };
    let res: ProxyResponse;
    try {
      res = await pool.request(req, ctx, timeoutMs, streamIdleMs);
    } catch (err) {
      release();
      if (err instanceof MeshError && (err.code === 'UPSTREAM_CONNECT_FAILURE' || err.code === 'UPSTREAM_TLS_FAILURE')) this.connectFailures++;
      throw err;
    }
    if (res.upgraded !== undefined) res.upgraded.socket.once('close', release);
    else if (res.body === null) release();
    else res.body.onSettled(release);
    return res;
  }

  tunnelPool(): H2Pool | null {
    return this.secure() ? this.h2 : null;
  }

  /** Nothing of its own to close: the registry closes the parts no configuration uses. */
  close(): void {}
}
