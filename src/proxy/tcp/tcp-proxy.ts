/**
 * Opaque TCP forwarding: each accepted connection is joined to one connection to an endpoint of
 * the service, bytes copied both ways with backpressure, half-closes passed on. TCP goes straight to
 * the endpoint's app port: the inbound hop for TCP arrives with the multiplexed transport.
 */
import { connect, type Socket } from 'node:net';
import type { ClusterRuntime } from '../upstream/cluster.js';

/** Joins `client` to an endpoint of the cluster `pick` returns; closes it when there is none. */
export function forwardTcp(client: Socket, pick: () => ClusterRuntime | null, onEnd?: () => void): void {
  const cluster = pick();
  const ep = cluster?.pick() ?? null;
  if (cluster === null || ep === null) {
    client.destroy();
    onEnd?.();
    return;
  }
  client.pause();
  const pool = ep.pool;
  pool.active++;
  pool.total++;
  const upstream = connect({ host: ep.endpoint.address, port: ep.endpoint.appPort, noDelay: true, allowHalfOpen: true });
  const timer = setTimeout(() => upstream.destroy(new Error('connect timeout')), cluster.config.connectTimeoutMs);
  let closed = 0;
  const closeOne = (): void => {
    if (++closed === 2) {
      pool.active--;
      onEnd?.();
    }
  };
  upstream.once('connect', () => {
    clearTimeout(timer);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
  upstream.on('error', () => {
    clearTimeout(timer);
    if (upstream.connecting) pool.connectFailures++;
    client.destroy();
  });
  client.on('error', () => upstream.destroy());
  upstream.on('close', (hadError) => {
    // A clean close was already passed on by pipe() as a half-close; only errors cut the client.
    if (hadError) client.destroy();
    else client.end();
    closeOne();
  });
  client.on('close', () => {
    upstream.destroy();
    closeOne();
  });
}
