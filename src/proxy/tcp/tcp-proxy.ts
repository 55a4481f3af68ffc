/**
 * Opaque TCP forwarding, the outbound side: each accepted connection is joined to one endpoint of
 * the service. An endpoint with a proxy in front of it is reached through that proxy — a tunnel
 * (`CONNECT`) to its inbound port, over mutual TLS when this proxy has a certificate and mTLS is on —
 * so the destination authenticates and authorizes the connection before the app sees it. An
 * endpoint without a proxy is dialled directly on its app port.
 */
import { connect, type Socket } from 'node:net';
import { MeshError } from '../../core/errors.js';
import { DEFAULT_TCP_IDLE_TIMEOUT_MS } from '../../model/compile.js';
import type { ClusterRuntime } from '../upstream/cluster.js';
import { refuseTunnel } from './inbound-tunnel.js';
import { joinTunnel, type TunnelDialer, type TunnelEnd } from './tunnel-client.js';

/** How an outbound TCP connection reached its endpoint. */
export type TcpTransport = 'mtls' | 'plaintext' | 'direct';

/** What became of one outbound TCP connection, for metrics and logs. */
export interface TcpOutcome {
  /** `<service>.<namespace>:<port>` */
  service: string;
  /** Through the endpoint's proxy over mTLS or plaintext, or straight to its app port; null when no endpoint was picked. */
  transport: TcpTransport | null;
  /** `address:port` dialled, or ''. */
  endpoint: string;
  /** '' when the connection was joined; otherwise the mesh error code (the inbound's own, for a refused tunnel). */
  errorCode: string;
  message: string;
  /** When joined: the client's connection, whose byte counts are the connection's (metrics). */
  client?: Socket;
}

/** What forwarding needs from its proxy: the tunnel dialer and where outcomes go. */
export interface TcpForwarding {
  dialer: TunnelDialer;
  report: (outcome: TcpOutcome) => void;
  /** A joined connection to `service` (`<service>.<namespace>:<port>`) was closed by its idle timeout. */
  idleClosed?: (service: string) => void;
}

/**
 * A client that asked with `CONNECT` (the outbound listener): it is answered `200` only once the
 * endpoint accepted (its proxy, after authorization), and a refusal is an HTTP answer with the
 * coded error. `rest` holds the bytes it sent behind its CONNECT head, the tunnel's first.
 */
export interface ConnectClient {
  rest: Buffer | null;
}

/**
 * Joins `client` to an endpoint of the cluster `pick` returns. The connection takes one of the
 * cluster's `maxConnections` (circuit breaker) from before it is dialled until its upstream side
 * closes; over the limit nothing is dialled (CIRCUIT_OPEN). When there is no endpoint, or the breaker
 * is full, or the endpoint cannot be reached, or its proxy refuses the tunnel, the client's
 * connection is reset: TCP has no way to carry a reason, and a reset is not mistaken for a clean,
 * empty answer. A `viaConnect` client speaks HTTP until joined, so it gets the coded error as an
 * answer instead.
 */
export function forwardTcp(
  client: Socket,
  service: string,
  pick: () => ClusterRuntime | null,
  fwd: TcpForwarding,
  onEnd?: () => void,
  viaConnect?: ConnectClient,
  /** Bytes the client already sent that are no longer in its socket (protocol detection saw its end): sent first. */
  first?: Buffer | null,
): void {
  client.on('error', () => {});
  /** Refuses the client: a reset, or the coded answer to a CONNECT (done with once it closes). */
  const refuse = (e: MeshError): void => {
    if (viaConnect === undefined) {
      client.resetAndDestroy();
      onEnd?.();
      return;
    }
    if (onEnd !== undefined) client.once('close', onEnd);
    refuseTunnel(client, e);
  };
  const cluster = pick();
  const ep = cluster?.pick(null, client.remoteAddress ?? '') ?? null;
  if (cluster === null || ep === null) {
    const message = `no healthy endpoint for ${service}`;
    fwd.report({ service, transport: null, endpoint: '', errorCode: 'NO_HEALTHY_UPSTREAM', message });
    refuse(new MeshError('NO_HEALTHY_UPSTREAM', message));
    return;
  }
  const open = cluster.breaker.admitTcp();
  if (open !== null) {
    fwd.report({ service, transport: null, endpoint: '', errorCode: open.code, message: open.message });
    refuse(open);
    return;
  }
  client.pause();
  const pool = ep.pool;
  pool.active++;
  pool.total++;
  // The slot is the count's, not this configuration's breaker's: released the same after a push.
  const slots = cluster.breaker.tcp;
  const e = ep.endpoint;
  const proxied = e.proxied;
  const endpoint = `${e.address}:${proxied ? e.port : e.appPort}`;
  let upstream: { destroy(): void };
  let transport: TcpTransport;
  let settled = false;
  let clientGone = false;
  const onClientClose = (): void => {
    clientGone = true;
    upstream.destroy();
  };

  /** Called once: the endpoint is joined, or will not be. */
  const settle = (err: MeshError | null, socket: TunnelEnd | null, rest: Buffer | null): void => {
    if (settled) return;
    settled = true;
    client.off('close', onClientClose);
    if (err === null && clientGone) err = new MeshError('CLIENT_CLOSED', 'the client left before the connection was made');
    if (err !== null) {
      if (err.code === 'UPSTREAM_CONNECT_FAILURE' || err.code === 'UPSTREAM_TLS_FAILURE') pool.connectFailures++;
      pool.active--;
      socket?.destroy();
      slots.release();
      // A client that left first is no failure of the endpoint's: nothing to report.
      if (clientGone) {
        onEnd?.();
        return;
      }
      ep.tracker?.failure(err);
      fwd.report({ service, transport, endpoint, errorCode: err.code, message: err.message });
      refuse(err);
      return;
    }
    fwd.report({ service, transport, endpoint, errorCode: '', message: '', client });
    ep.tracker?.connected();
    if (viaConnect !== undefined) {
      // RFC 9110 9.3.6: no Content-Length or Transfer-Encoding in a 2xx to CONNECT.
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');
      if (viaConnect.rest !== null) socket!.write(viaConnect.rest);
    }
    if (rest !== null) client.write(rest);
    if (first != null) socket!.write(first);
    joinTunnel(client, socket!, () => {
      pool.active--;
      slots.release();
      onEnd?.();
    });
    // Every byte either way passes through the client's socket, whose timer each read and write
    // re-arms: silence both ways for the idle timeout closes both ends (Envoy's tcp_proxy idle_timeout).
    const idleMs = cluster.config.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
    if (idleMs > 0) {
      client.setTimeout(idleMs, () => {
        fwd.idleClosed?.(service);
        client.destroy();
      });
    }
  };

  if (proxied) {
    // Under the `h2` peer transport the pool hands the tunnel to the endpoint's shared HTTP/2 session.
    const dial = fwd.dialer.open(e, service, cluster.config.connectTimeoutMs, (err, tunnel) => settle(err, tunnel?.socket ?? null, tunnel?.rest ?? null), pool);
    upstream = dial.socket;
    transport = dial.transport;
  } else {
    const direct = connect({ host: e.address, port: e.appPort, noDelay: true, allowHalfOpen: true });
    upstream = direct;
    transport = 'direct';
    const timeoutMs = cluster.config.connectTimeoutMs;
    const timer = setTimeout(() => direct.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    const failed = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      settle(new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${endpoint} failed: ${err.code ?? err.message}`), direct, null);
    };
    direct.once('error', failed);
    // Destroyed while connecting, when the client left: settle reports nothing then.
    direct.once('close', () => failed(new Error('closed before connecting')));
    direct.once('connect', () => {
      clearTimeout(timer);
      direct.off('error', failed);
      direct.removeAllListeners('close');
      settle(null, direct, null);
    });
  }
  client.once('close', onClientClose);
}
