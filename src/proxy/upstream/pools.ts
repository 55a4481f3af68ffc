/**
 * Connection pools shared across configuration versions, keyed by `host:port`, so a hot reload
 * keeps warm connections to endpoints that are still there and closes the rest.
 */
import type { SecureContext } from 'node:tls';
import { Http1Pool, type PoolOptions } from '../http1/client.js';
import { Http2Pool } from '../http2/client.js';
import type { UpstreamPool, UpstreamProtocol } from './upstream-pool.js';

/** Owns every upstream pool of a proxy. */
export class PoolRegistry {
  private pools = new Map<string, UpstreamPool>();
  private readonly base: Omit<PoolOptions, 'connectTimeoutMs'>;
  /** This proxy's mTLS client context, or null (no certificate, or mTLS disabled): set by the proxy. */
  clientContext: () => SecureContext | null = () => null;

  constructor(base: Omit<PoolOptions, 'connectTimeoutMs'> = { maxIdle: 128, idleTimeoutMs: 60_000 }) {
    this.base = base;
  }

  /**
   * The pool for an endpoint, made on first use; `peerIdentity` is set for an endpoint behind a proxy
   * (mTLS), `protocol` says whether it speaks HTTP/1.1 or HTTP/2.
   */
  get(host: string, port: number, connectTimeoutMs: number, peerIdentity: string | null = null, protocol: UpstreamProtocol = 'http/1.1'): UpstreamPool {
    const key = `${host}|${port}|${connectTimeoutMs}|${peerIdentity ?? ''}|${protocol}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      const tls = peerIdentity === null ? null : { peerIdentity, context: () => this.clientContext() };
      pool = protocol === 'h2'
        ? new Http2Pool(host, port, { connectTimeoutMs, idleTimeoutMs: this.base.idleTimeoutMs, tls })
        : new Http1Pool(host, port, { ...this.base, connectTimeoutMs, tls });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes pools not in `keep` (the pools of the configuration now in force). */
  retainOnly(keep: ReadonlySet<UpstreamPool>): void {
    for (const [key, pool] of this.pools) {
      if (!keep.has(pool)) {
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
