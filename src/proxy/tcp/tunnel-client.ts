/**
 * The caller's side of a TCP tunnel to a workload's proxy: a connection to the endpoint's inbound
 * port (mutual TLS with this proxy's certificate when it has one and mTLS is on), an HTTP/1.1
 * `CONNECT <app address>:<app port>` on it, and, once the inbound answers 200, a plain byte stream
 * to the app. Under the `h2` peer transport (with mTLS) the tunnel is instead an HTTP/2 CONNECT
 * stream (RFC 9113 8.5) on the endpoint's one multiplexed session. Anything but 200 is the
 * inbound's refusal (DENIED, MTLS_REQUIRED, …), read from its `weft-error` header and body so the
 * caller can count and report it.
 */
import { hostPort, type UpstreamPool } from '../upstream/upstream-pool.js';
import { Socket, connect } from 'node:net';
import type { ClientHttp2Stream, Http2Stream, IncomingHttpHeaders } from 'node:http2';
import { connect as tlsConnect, type ConnectionOptions, type SecureContext } from 'node:tls';
import { expectSpiffeId } from '../tls/peer-identity.js';
import { MeshError, meshErrorStatus, type MeshErrorCode } from '../../core/errors.js';
import type { Endpoint } from '../../model/snapshot.js';
import { ParseError, findHeadEnd, parseResponseHead } from '../http1/parse.js';
import type { Http2Pool } from '../http2/client.js';
import { ErrorCode } from '../http2/frames.js';
import { WeftHttp2Pool } from '../http2/upstream.js';
import { getHeader } from '../message.js';
import { SOURCE_SERVICE_HEADER } from '../admin/peer-labels.js';
import { H2Tunnel } from './h2-tunnel.js';
import { joinSockets } from './join.js';

/** Header naming the `<service>.<namespace>:<port>` a tunnel is for. For logs only: the inbound decides by the target's app port. */
export const TUNNEL_SERVICE_HEADER = 'weft-service';

/** How a tunnel reached the inbound: mutual TLS, or plaintext (this proxy has no certificate, or mTLS is off). */
export type TunnelTransport = 'mtls' | 'plaintext';

/**
 * The far end of a tunnel: a connection of its own, or a CONNECT stream of a shared HTTP/2 session
 * (node:http2's, or an H2Tunnel on Weft's engine).
 */
export type TunnelEnd = Socket | ClientHttp2Stream | H2Tunnel;

/** An established tunnel: bytes written to `socket` reach the app; `rest` already came from it. */
export interface OpenTunnel {
  socket: TunnelEnd;
  rest: Buffer | null;
  transport: TunnelTransport;
}

/** Joins a client's socket to the far end of its tunnel (see joinSockets, H2Tunnel.join and joinStream). */
export function joinTunnel(client: Socket, end: TunnelEnd, onClosed: () => void): void {
  if (end instanceof Socket) joinSockets(client, end, onClosed);
  else if (end instanceof H2Tunnel) end.join(client, onClosed);
  else joinStream(client, end, onClosed);
}

/**
 * Joins a TCP socket and an HTTP/2 CONNECT stream into one TCP stream (RFC 9113 8.5): bytes go as
 * DATA frames both ways with backpressure (the socket pauses while the stream's flow-control window
 * is closed, the stream while the socket's buffer is full); a FIN becomes END_STREAM and END_STREAM
 * a FIN (a half-close, so the other direction keeps flowing); an error or reset of the socket resets
 * the stream (RST_STREAM), and a reset stream (RST_STREAM, or its session lost) resets the socket.
 * `onClosed` runs once, when both are closed.
 */
export function joinStream(socket: Socket, stream: Http2Stream, onClosed: () => void): void {
  let closed = 0;
  const closeOne = (): void => {
    if (++closed === 2) onClosed();
  };
  // Set once END_STREAM arrived: a stream that closes without it was reset.
  let streamEnded = false;
  const gone = (): boolean => stream.closed || stream.destroyed;
  socket.on('data', (c: Buffer) => {
    if (!gone() && !stream.write(c)) socket.pause();
  });
  stream.on('drain', () => socket.resume());
  socket.on('end', () => {
    if (!gone()) stream.end();
  });
  // destroy(err) sends RST_STREAM at once (close(code) would send END_STREAM first).
  socket.on('error', (err) => {
    if (!gone()) stream.destroy(err);
  });
  socket.on('close', (hadError) => {
    // Both directions of the socket are over; whatever the stream still sends has nowhere to go.
    if (!gone() && (hadError || !streamEnded)) stream.destroy(new Error('the TCP side closed'));
    closeOne();
  });
  stream.on('data', (c: Buffer) => {
    if (!socket.destroyed && !socket.write(c)) stream.pause();
  });
  socket.on('drain', () => stream.resume());
  stream.on('end', () => {
    streamEnded = true;
    if (!socket.destroyed) socket.end();
  });
  stream.on('error', () => {});
  stream.on('close', () => {
    if (!socket.destroyed) {
      if (!streamEnded || stream.rstCode !== ErrorCode.NO_ERROR) socket.resetAndDestroy();
      else if (!socket.writableEnded) socket.end();
    }
    closeOne();
  });
  socket.resume();
  stream.resume();
}

/** Largest response head to a CONNECT, and largest refusal body read (for its message). */
const MAX_HEAD = 16 * 1024;
const MAX_REFUSAL_BODY = 4096;
/** TLS sessions kept for resumption; a proxy dials few distinct endpoints, so this is a bound, not a cache policy. */
const MAX_SESSIONS = 1024;

/** The `host:port` a CONNECT names, with brackets around an IPv6 address. */
export function tunnelTarget(address: string, port: number): string {
  return hostPort(address, port);
}

/**
 * Opens tunnels to proxied endpoints; owns the TLS sessions kept per endpoint, across configurations.
 * Every CONNECT names this proxy's own service in `weft-source-service`, as HTTP requests do, for
 * the destination's metrics (admin/peer-labels.ts: it believes it only over mTLS).
 */
export class TunnelDialer {
  private readonly sessions = new Map<string, Buffer>();
  /** The client context the kept sessions were made under: a session resumed under an older certificate would present its identity. */
  private sessionsContext: SecureContext | null = null;
  private readonly clientContext: () => SecureContext | null;
  private readonly source: () => string;

  /**
   * `clientContext` is read at each dial, so a renewed certificate is used from then on; `source`
   * too (this proxy's service, `name.namespace`, '' to send none), so it follows the configuration.
   */
  constructor(clientContext: () => SecureContext | null, source: () => string = () => '') {
    this.clientContext = clientContext;
    this.source = source;
  }

  /**
   * Dials `ep`'s inbound port and asks for a tunnel to its app port. `done` is called once, with the
   * open tunnel or the reason there is none. Returns the socket being dialled (the caller gives up by
   * destroying it, when its own client leaves first) and how it goes.
   */
  open(ep: Endpoint, service: string, timeoutMs: number, done: (err: MeshError | null, tunnel: OpenTunnel | null) => void, via?: UpstreamPool): { socket: { destroy(): void }; transport: TunnelTransport } {
    const where = tunnelTarget(ep.address, ep.port);
    const target = tunnelTarget(ep.address, ep.appPort);
    const shared = via?.tunnelPool?.() ?? null;
    if (shared instanceof WeftHttp2Pool) return this.openEngineStream(shared, ep, service, timeoutMs, done);
    if (shared !== null) return this.openStream(shared, ep, service, timeoutMs, done);
    const context = this.clientContext();
    const transport: TunnelTransport = context === null ? 'plaintext' : 'mtls';
    const sessionKey = `${ep.address}|${ep.port}|${ep.identity}`;
    let wrongPeer: string | null = null;
    let socket: Socket;
    if (context === null) {
      socket = connect({ host: ep.address, port: ep.port, noDelay: true, allowHalfOpen: true });
    } else {
      if (this.sessionsContext !== context) {
        this.sessions.clear();
        this.sessionsContext = context;
      }
      const expected = ep.identity;
      const options: ConnectionOptions & { allowHalfOpen: boolean } = {
        host: ep.address,
        port: ep.port,
        secureContext: context,
        session: this.sessions.get(sessionKey),
        allowHalfOpen: true,
        // The peer is named by its SPIFFE ID, not by a host name: exactly the endpoint's identity.
        checkServerIdentity: expectSpiffeId(expected, (presented) => (wrongPeer = presented)),
      };
      // allowHalfOpen is honoured by tls.connect (a half-close travels as close_notify), though not in its typings.
      socket = tlsConnect(options);
      socket.setNoDelay(true);
      socket.on('session', (s: Buffer) => {
        if (this.sessions.size >= MAX_SESSIONS) this.sessions.clear();
        this.sessions.set(sessionKey, s);
      });
    }

    let settled = false;
    let asked = false;
    let buf: Buffer | null = null;
    let refusal: { status: number; code: string; length: number; bodyAt: number } | null = null;
    const finish = (err: MeshError | null, rest: Buffer | null = null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err !== null) {
        // Keep an error listener: a late reset of a socket being torn down must not crash the proxy.
        socket.on('error', () => {});
        socket.destroy();
        done(err, null);
        return;
      }
      socket.pause();
      done(null, { socket, rest, transport });
    };
    const timer = setTimeout(() => finish(new MeshError('UPSTREAM_CONNECT_FAILURE', `tunnel to ${where} not established within ${timeoutMs} ms`)), timeoutMs);

    const refused = (): void => {
      const r = refusal!;
      const body = buf === null ? '' : buf.toString('utf8', r.bodyAt, Math.min(buf.length, r.bodyAt + r.length));
      finish(refusalError(ep, where, target, r.status, r.code, body));
    };
    const onData = (chunk: Buffer): void => {
      buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
      if (refusal !== null) {
        if (buf.length - refusal.bodyAt >= refusal.length) refused();
        return;
      }
      const end = findHeadEnd(buf, 0);
      if (end === -1) {
        if (buf.length > MAX_HEAD) finish(new MeshError('UPSTREAM_PROTOCOL_ERROR', `the answer of ${where} to CONNECT has a head over ${MAX_HEAD} bytes`));
        return;
      }
      let head;
      try {
        head = parseResponseHead(buf.toString('latin1', 0, end - 4));
      } catch (err) {
        finish(err instanceof ParseError ? err : new MeshError('UPSTREAM_PROTOCOL_ERROR', String(err)));
        return;
      }
      if (head.status === 200) {
        // What follows the head is already the app's bytes (RFC 9110 9.3.6: a 2xx to CONNECT has no content).
        finish(null, end === buf.length ? null : buf.subarray(end));
        return;
      }
      let code = '';
      for (let i = 0; i < head.headers.length; i += 2) if (head.headers[i] === 'weft-error') code = head.headers[i + 1]!;
      const length = head.contentLength > 0 ? Math.min(head.contentLength, MAX_REFUSAL_BODY) : 0;
      refusal = { status: head.status, code, length, bodyAt: end };
      if (buf.length - end >= length) refused();
    };
    const onEnd = (): void => {
      if (refusal !== null) refused();
      else finish(new MeshError('UPSTREAM_RESET', `${where} closed the connection before answering the CONNECT`));
    };
    const onError = (err: NodeJS.ErrnoException): void => {
      if (asked) {
        if (refusal !== null) refused();
        else finish(new MeshError('UPSTREAM_RESET', `${where} reset the connection before answering the CONNECT: ${err.code ?? err.message}`));
      } else if (context === null || err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') {
        finish(new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${where} failed: ${err.code ?? err.message}`));
      } else {
        this.sessions.delete(sessionKey);
        const why = wrongPeer !== null ? `the peer's certificate is for ${wrongPeer}, not ${ep.identity}` : (err.code ?? err.message);
        finish(new MeshError('UPSTREAM_TLS_FAILURE', `mTLS to ${where} failed: ${why}`));
      }
    };
    // Closed by the caller giving up, or without an error or end we saw.
    const onClose = (): void => finish(new MeshError('UPSTREAM_RESET', `the connection to ${where} closed before the tunnel was established`));
    socket.once(context === null ? 'connect' : 'secureConnect', () => {
      asked = true;
      const source = this.source();
      const from = source === '' ? '' : `${SOURCE_SERVICE_HEADER}: ${source}\r\n`;
      socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n${TUNNEL_SERVICE_HEADER}: ${service}\r\n${from}\r\n`, 'latin1');
    });
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    return { socket, transport };
  }

  /**
   * A tunnel as a CONNECT stream on the endpoint's shared HTTP/2 session (mTLS, the session's
   * identity check and resumption): `:authority` is the app's `host:port`, `weft-service` and
   * `weft-source-service` as over HTTP/1.1; `:status 200` opens it, anything else is the inbound's
   * refusal, read as over HTTP/1.1.
   */
  private openStream(pool: Http2Pool, ep: Endpoint, service: string, timeoutMs: number, done: (err: MeshError | null, tunnel: OpenTunnel | null) => void): { socket: { destroy(): void }; transport: TunnelTransport } {
    const where = tunnelTarget(ep.address, ep.port);
    const target = tunnelTarget(ep.address, ep.appPort);
    let stream: ClientHttp2Stream | null = null;
    let settled = false;
    const finish = (err: MeshError | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== null) {
        if (stream !== null && !stream.destroyed) stream.close(ErrorCode.CANCEL);
        done(err, null);
        return;
      }
      stream!.off('close', onClose);
      done(null, { socket: stream!, rest: null, transport: 'mtls' });
    };
    const timer = setTimeout(() => finish(new MeshError('UPSTREAM_CONNECT_FAILURE', `tunnel to ${where} not established within ${timeoutMs} ms`)), timeoutMs);
    const onClose = (): void => finish(new MeshError('UPSTREAM_RESET', `${where} reset the CONNECT stream before answering (code ${stream?.rstCode ?? 0})`));
    const source = this.source();
    pool.connect(target, source === '' ? { [TUNNEL_SERVICE_HEADER]: service } : { [TUNNEL_SERVICE_HEADER]: service, [SOURCE_SERVICE_HEADER]: source }).then(
      (s) => {
        stream = s;
        s.on('error', () => {});
        if (settled) {
          // Given up (timeout, or the client left) while the session was being opened.
          s.close(ErrorCode.CANCEL);
          return;
        }
        s.once('close', onClose);
        s.once('response', (h: IncomingHttpHeaders) => {
          const status = Number(h[':status']);
          if (status === 200) return finish(null);
          const code = typeof h['weft-error'] === 'string' ? h['weft-error'] : '';
          const parts: Buffer[] = [];
          let size = 0;
          s.on('data', (c: Buffer) => {
            if (size < MAX_REFUSAL_BODY) parts.push(c);
            size += c.length;
          });
          s.once('end', () => finish(refusalError(ep, where, target, status, code, Buffer.concat(parts).toString('utf8', 0, Math.min(size, MAX_REFUSAL_BODY)))));
        });
      },
      (err: unknown) => finish(err instanceof MeshError ? err : new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${where} failed: ${String(err)}`)),
    );
    return {
      socket: {
        destroy: () => {
          if (stream !== null && !stream.destroyed) stream.close(ErrorCode.CANCEL);
          finish(new MeshError('CLIENT_CLOSED', 'the client left before the tunnel was established'));
        },
      },
      transport: 'mtls',
    };
  }

  /** openStream on Weft's engine: the CONNECT stream is held by an H2Tunnel, which becomes the tunnel's far end. */
  private openEngineStream(pool: WeftHttp2Pool, ep: Endpoint, service: string, timeoutMs: number, done: (err: MeshError | null, tunnel: OpenTunnel | null) => void): { socket: { destroy(): void }; transport: TunnelTransport } {
    const where = tunnelTarget(ep.address, ep.port);
    const target = tunnelTarget(ep.address, ep.appPort);
    let tunnel: H2Tunnel | null = null;
    let settled = false;
    const finish = (err: MeshError | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== null) {
        tunnel?.destroy();
        done(err, null);
        return;
      }
      const t = tunnel!;
      t.onHead = t.onEarlyEnd = t.onEarlyClose = null;
      done(null, { socket: t, rest: null, transport: 'mtls' });
    };
    const timer = setTimeout(() => finish(new MeshError('UPSTREAM_CONNECT_FAILURE', `tunnel to ${where} not established within ${timeoutMs} ms`)), timeoutMs);
    const source = this.source();
    pool.connect(target, source === '' ? [TUNNEL_SERVICE_HEADER, service] : [TUNNEL_SERVICE_HEADER, service, SOURCE_SERVICE_HEADER, source]).then(
      (stream) => {
        const t = (tunnel = new H2Tunnel(stream));
        // Given up (timeout, or the client left) while the session was being opened.
        if (settled) return t.destroy();
        t.onEarlyClose = (code) => finish(new MeshError('UPSTREAM_RESET', `${where} reset the CONNECT stream before answering (code ${code})`));
        t.onHead = (fields, endStream) => {
          const status = Number(fields[1]); // the engine checked: `:status` comes first
          if (status < 200) return;
          if (status === 200) return finish(null);
          const code = getHeader(fields, 'weft-error') ?? '';
          t.maxHeld = MAX_REFUSAL_BODY;
          const refused = (): void => {
            const body = Buffer.concat(t.held ?? []);
            finish(refusalError(ep, where, target, status, code, body.toString('utf8', 0, Math.min(body.length, MAX_REFUSAL_BODY))));
          };
          if (endStream) refused();
          else t.onEarlyEnd = refused;
        };
      },
      (err: unknown) => finish(err instanceof MeshError ? err : new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${where} failed: ${String(err)}`)),
    );
    return {
      socket: {
        destroy: () => finish(new MeshError('CLIENT_CLOSED', 'the client left before the tunnel was established')),
      },
      transport: 'mtls',
    };
  }
}

/** The mesh error of a refused tunnel: the inbound's own code and words (DENIED, MTLS_REQUIRED, …), so the caller's count and log say why. */
function refusalError(ep: Endpoint, where: string, target: string, status: number, code: string, body: string): MeshError {
  let message = '';
  try {
    message = String((JSON.parse(body) as { message?: unknown }).message ?? '');
  } catch {
    message = body.slice(0, 200);
  }
  const known = Object.hasOwn(meshErrorStatus, code) ? (code as MeshErrorCode) : null;
  return known !== null
    ? new MeshError(known, `the proxy of ${ep.workload} (${where}) refused the tunnel to ${target}: ${status} ${message}`)
    : new MeshError('UPSTREAM_PROTOCOL_ERROR', `the proxy of ${ep.workload} (${where}) answered the CONNECT with ${status}${code === '' ? '' : ` ${code}`}`);
}
