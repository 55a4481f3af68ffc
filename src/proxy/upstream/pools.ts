/**
 * Connection pools shared across configuration versions, keyed by `host:port`, so a hot reload
 * keeps warm connections to endpoints that are still there and closes the rest.
 */
import type { SecureContext } from 'node:tls';
import { Http1Pool, type PoolOptions } from '../http1/client.js';

/** Owns every upstream pool of a proxy. */
export class PoolRegistry {
  private pools = new Map<string, Http1Pool>();
  private readonly base: Omit<PoolOptions, 'connectTimeoutMs'>;
  /** This proxy's mTLS client context, or null (no certificate, or mTLS disabled): set by the proxy. */
  clientContext: () => SecureContext | null = () => null;

  constructor(base: Omit<PoolOptions, 'connectTimeoutMs'> = { maxIdle: 128, idleTimeoutMs: 60_000 }) {
    this.base = base;
  }

  /** The pool for an endpoint, made on first use; `peerIdentity` is set for an endpoint behind a proxy (mTLS). */
  get(host: string, port: number, connectTimeoutMs: number, peerIdentity: string | null = null): Http1Pool {
    const key = `${host}|${port}|${connectTimeoutMs}|${peerIdentity ?? ''}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      const tls = peerIdentity === null ? null : { peerIdentity, context: () => this.clientContext() };
      pool = new Http1Pool(host, port, { ...this.base, connectTimeoutMs, tls });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes pools not in `keep` (the pools of the configuration now in force). */
  retainOnly(keep: ReadonlySet<Http1Pool>): void {
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
