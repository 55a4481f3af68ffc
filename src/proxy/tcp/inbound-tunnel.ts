/**
 * The workload's side of a TCP tunnel: the inbound listener hands over a connection at its
 * `CONNECT <app address>:<app port>` head (HTTP/1.1), or an HTTP/2 CONNECT stream of a peer proxy's
 * session (`:authority <app address>:<app port>`), and the tunnel is decided there, the same way
 * for both, before any byte reaches the app. Only this workload's own app ports on its own app address are tunnel targets (the proxy
 * is no relay to anywhere else); the mTLS mode was applied when the connection was accepted; the
 * AuthorizationPolicies covering the port decide with the caller's SPIFFE ID, whose proxy's
 * `weft-source-service` names the source of the tunnel's metrics (admin/peer-labels.ts's rule; the
 * head's fields never reach the app). A refused tunnel is
 * answered with a coded error and closed, and the app never sees a connection; an allowed one is
 * answered 200 once the app accepted, then carries bytes both ways.
 */
import { connect, type Socket } from 'node:net';
import type { ServerHttp2Stream } from 'node:http2';
import { MeshError } from '../../core/errors.js';
import type { InboundConfig } from '../../model/snapshot.js';
import type { Authorizer } from '../authz/authorize.js';
import type { ConnectTunnel } from '../http1/server.js';
import type { Http2ConnectTunnel } from '../http2/server.js';
import type { WeftConnectTunnel } from '../http2/downstream.js';
import { ErrorCode } from '../http2/frames.js';
import type { RequestHead } from '../http1/parse.js';
import { meshErrorWire } from '../local-reply.js';
import { getHeader } from '../message.js';
import { tunnelSourceService } from '../admin/peer-labels.js';
import { joinSockets } from './join.js';
import { H2Tunnel } from './h2-tunnel.js';
import { TUNNEL_SERVICE_HEADER, joinStream } from './tunnel-client.js';

/** What a tunnel request is decided on: its target and header fields, and whether it declared content. */
export type TunnelRequest = Pick<RequestHead, 'target' | 'headers' | 'chunked' | 'contentLength'>;

/** How one tunnel request ended at the inbound: the `result` label of `weft_inbound_tcp_connections_total`. */
export type TunnelResult = 'allowed' | 'denied' | 'bad_request' | 'no_route' | 'connect_failure' | 'no_configuration';

/** One tunnel's outcome, for the counter. */
export interface TunnelOutcome {
  security: 'mtls' | 'plaintext';
  /**
   * The caller's service (`name.namespace`) its proxy named in `weft-source-service`, believed only
   * from an mTLS peer and within its SPIFFE ID's namespace (admin/peer-labels.ts); '' otherwise.
   */
  source: string;
  result: TunnelResult;
  /** `namespace/name` of the policy that decided, or '' (no policy covers the port, or none matched). */
  policy: string;
  /** With `allowed`: the connection to the app, whose byte counts are the tunnel's (metrics). */
  app?: Socket;
}

/** A tunnel may go on to this app port, or is refused with this error. */
type Verdict = { port: number; policy: string } | { error: MeshError; result: TunnelResult; policy: string };

// Authority-form (RFC 9112 3.2.3): a host (a name, an IPv4 address or a bracketed IPv6 one) and a port.
const AUTHORITY = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._~!$&'()*+,;=%-]+)):([0-9]{1,5})$/;
const SERVICE_NAME = /^[a-z0-9.-]{1,253}:[0-9]{1,5}$/;
/** Connect timeout towards the local app. */
export const APP_CONNECT_TIMEOUT_MS = 1000;
/** How long a refused caller may take to read the answer before the connection is cut. */
const LINGER_MS = 2000;

/** Where this workload's tunnels may go, and who may open them: built once per configuration. */
export class InboundTunnels {
  readonly appAddress: string;
  private readonly host: string;
  private readonly ports: ReadonlySet<number>;
  private readonly authz: Authorizer;

  constructor(inbound: InboundConfig, authz: Authorizer) {
    this.appAddress = inbound.appAddress;
    this.host = inbound.appAddress.toLowerCase();
    this.ports = new Set(Object.values(inbound.ports));
    this.authz = authz;
  }

  /** Decides a CONNECT from the caller `identity` (null: plaintext). */
  decide(head: TunnelRequest, identity: string | null): Verdict {
    const target = connectTarget(head);
    if (target instanceof MeshError) return { error: target, result: 'bad_request', policy: '' };
    const { host, port } = target;
    if (host !== this.host || !this.ports.has(port)) {
      return { error: new MeshError('NO_ROUTE', `CONNECT ${head.target}: this proxy opens tunnels only to its own workload's app ports`), result: 'no_route', policy: '' };
    }
    if (this.authz.allowsAll) return { port, policy: '' };
    const d = this.authz.tcp({ appPort: port, identity });
    if (d.allowed) return { port, policy: d.policy ?? '' };
    let service = '';
    for (let i = 0; i < head.headers.length; i += 2) if (head.headers[i] === TUNNEL_SERVICE_HEADER) service = head.headers[i + 1]!;
    const to = SERVICE_NAME.test(service) ? `${service} (app port ${port})` : `app port ${port}`;
    const by = d.policy === null ? d.reason : `by AuthorizationPolicy ${d.policy}`;
    return { error: new MeshError('DENIED', `${identity ?? 'a caller without identity'} may not connect to ${to} here: denied ${by}`), result: 'denied', policy: d.policy ?? '' };
  }
}

/**
 * The `host` (lowercase, IPv6 without brackets) and `port` of a well-formed CONNECT, or the
 * BAD_REQUEST it gets: a target that is not authority-form, a port out of range, or content.
 */
export function connectTarget(head: TunnelRequest): { host: string; port: number } | MeshError {
  const m = AUTHORITY.exec(head.target);
  const port = m === null ? 0 : Number(m[3]);
  if (m === null || port < 1 || port > 65535) return new MeshError('BAD_REQUEST', `CONNECT target ${JSON.stringify(head.target.slice(0, 60))} is not host:port`);
  // RFC 9110 9.3.6: a CONNECT request has no content; bytes after its head are the tunnel's.
  if (head.chunked || head.contentLength > 0) return new MeshError('BAD_REQUEST', 'a CONNECT request carries no content');
  return { host: (m[1] ?? m[2]!).toLowerCase(), port };
}

/**
 * Serves one handed-over CONNECT: refuses it, or joins it to the app. `tunnels` is null before the
 * first configuration. `onEnd` runs once, when the connection is gone.
 */
export function acceptTunnel(t: ConnectTunnel, tunnels: InboundTunnels | null, report: (o: TunnelOutcome) => void, onEnd: () => void): void {
  const socket = t.socket;
  const security = 'encrypted' in socket ? 'mtls' : 'plaintext';
  // The head stays here: the app gets only the bytes after it (`rest`).
  const source = tunnelSourceService(t.head.headers, t.peerIdentity);
  socket.on('error', () => {});
  socket.once('close', onEnd);
  const verdict: Verdict = tunnels === null
    ? { error: new MeshError('NO_CONFIGURATION', 'this proxy has not received its configuration yet'), result: 'no_configuration', policy: '' }
    : tunnels.decide(t.head, t.peerIdentity);
  if ('error' in verdict) {
    report({ security, source, result: verdict.result, policy: verdict.policy });
    refuseTunnel(socket, verdict.error);
    return;
  }
  const app = dialApp(tunnels!.appAddress, verdict.port, (err) => {
    socket.off('close', callerLeft);
    if (socket.destroyed) {
      app.destroy();
      return;
    }
    if (err !== null) {
      report({ security, source, result: 'connect_failure', policy: verdict.policy });
      refuseTunnel(socket, err);
      return;
    }
    report({ security, source, result: 'allowed', policy: verdict.policy, app });
    // RFC 9110 9.3.6: no Content-Length or Transfer-Encoding in a 2xx to CONNECT.
    socket.write('HTTP/1.1 200 OK\r\n\r\n', 'latin1');
    if (t.rest !== null) app.write(t.rest);
    joinSockets(socket, app, () => {});
  });
  const callerLeft = (): void => {
    app.destroy();
  };
  socket.once('close', callerLeft);
}

/**
 * Dials this workload's app for an allowed tunnel (within APP_CONNECT_TIMEOUT_MS). `done` is called
 * once: with null when it accepted, or with the UPSTREAM_CONNECT_FAILURE the caller is answered.
 */
function dialApp(address: string, port: number, done: (err: MeshError | null) => void): Socket {
  const app = connect({ host: address, port, noDelay: true, allowHalfOpen: true });
  const timer = setTimeout(() => app.destroy(new Error(`timed out after ${APP_CONNECT_TIMEOUT_MS} ms`)), APP_CONNECT_TIMEOUT_MS);
  app.once('error', (err: NodeJS.ErrnoException) => {
    clearTimeout(timer);
    done(new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to the app on port ${port} failed: ${err.code ?? err.message}`));
  });
  app.once('connect', () => {
    clearTimeout(timer);
    app.removeAllListeners('error');
    done(null);
  });
  return app;
}

/** The verdict on a CONNECT stream's head (either HTTP/2 engine). */
function streamVerdict(t: { target: string; headers: string[]; peerIdentity: string | null }, tunnels: InboundTunnels | null): Verdict {
  const cl = Number(getHeader(t.headers, 'content-length') ?? -1);
  const request: TunnelRequest = { target: t.target, headers: t.headers, chunked: false, contentLength: Number.isSafeInteger(cl) ? cl : 1 };
  return tunnels === null
    ? { error: new MeshError('NO_CONFIGURATION', 'this proxy has not received its configuration yet'), result: 'no_configuration', policy: '' }
    : tunnels.decide(request, t.peerIdentity);
}

/**
 * Serves one HTTP/2 CONNECT stream from a peer proxy's session (the `h2` peer transport), on either
 * HTTP/2 engine, exactly as `acceptTunnel` serves an HTTP/1.1 CONNECT: the same decision (own app
 * ports only, the mTLS mode applied at accept, AuthorizationPolicy by identity and port), the app
 * dialled only when allowed. A refusal is a `:status` 400/403/404/503 with `weft-error` and the JSON
 * body, then END_STREAM; an allowed tunnel gets `:status 200` once the app accepted, then DATA
 * frames carry the bytes (END_STREAM is a half-close, RST_STREAM a reset). `onApp` gets the app's
 * socket (counted while open).
 */
export function acceptH2Tunnel(t: Http2ConnectTunnel | WeftConnectTunnel, tunnels: InboundTunnels | null, report: (o: TunnelOutcome) => void, onApp: (app: Socket) => void): void {
  if ('ended' in t) return acceptEngineTunnel(t, tunnels, report, onApp);
  const stream = t.stream;
  const security = t.encrypted ? 'mtls' : 'plaintext';
  // The head stays here: the app gets only the stream's DATA.
  const source = tunnelSourceService(t.headers, t.peerIdentity);
  stream.on('error', () => {});
  const verdict = streamVerdict(t, tunnels);
  if ('error' in verdict) {
    report({ security, source, result: verdict.result, policy: verdict.policy });
    refuseStream(stream, verdict.error);
    return;
  }
  // Nothing is read from the caller until the app accepted: its bytes wait in the stream's window.
  stream.pause();
  const app = dialApp(tunnels!.appAddress, verdict.port, (err) => {
    stream.off('close', callerLeft);
    if (stream.closed || stream.destroyed) {
      app.destroy();
      return;
    }
    if (err !== null) {
      report({ security, source, result: 'connect_failure', policy: verdict.policy });
      refuseStream(stream, err);
      return;
    }
    report({ security, source, result: 'allowed', policy: verdict.policy, app });
    onApp(app);
    stream.respond({ ':status': 200 });
    joinStream(app, stream, () => {});
  });
  const callerLeft = (): void => {
    app.destroy();
  };
  stream.once('close', callerLeft);
}

/** acceptH2Tunnel on Weft's engine: the stream is held by an H2Tunnel until the app accepted. */
function acceptEngineTunnel(t: WeftConnectTunnel, tunnels: InboundTunnels | null, report: (o: TunnelOutcome) => void, onApp: (app: Socket) => void): void {
  const security = t.encrypted ? 'mtls' : 'plaintext';
  const source = tunnelSourceService(t.headers, t.peerIdentity);
  const tunnel = new H2Tunnel(t.stream, t.ended);
  const verdict = streamVerdict(t, tunnels);
  if ('error' in verdict) {
    report({ security, source, result: verdict.result, policy: verdict.policy });
    refuseH2Tunnel(tunnel, verdict.error);
    return;
  }
  // Nothing is passed on until the app accepted: the caller's bytes are held, within the stream's window.
  t.stream.pause();
  const app = dialApp(tunnels!.appAddress, verdict.port, (err) => {
    tunnel.onEarlyClose = null;
    if (tunnel.closed) {
      app.destroy();
      return;
    }
    if (err !== null) {
      report({ security, source, result: 'connect_failure', policy: verdict.policy });
      refuseH2Tunnel(tunnel, err);
      return;
    }
    report({ security, source, result: 'allowed', policy: verdict.policy, app });
    onApp(app);
    t.stream.respond(OK_HEAD, false);
    tunnel.join(app, () => {});
  });
  // The caller left (or its session was lost) while the app was dialled.
  tunnel.onEarlyClose = () => app.destroy();
}

const OK_HEAD: readonly string[] = [':status', '200'];

/** refuseStream for Weft's engine: the coded answer, the caller's bytes dropped, cut after LINGER_MS. */
function refuseH2Tunnel(tunnel: H2Tunnel, e: MeshError): void {
  tunnel.discard();
  const stream = tunnel.stream;
  if (stream.closed) return;
  const json = Buffer.from(JSON.stringify({ code: e.code, message: e.message }));
  stream.respond([':status', String(e.status), 'content-type', 'application/json', 'weft-error', e.code, 'content-length', String(json.length)], false);
  stream.end(json);
  if (stream.closed) return;
  // The caller ends its side on reading the answer; one that does not is cut after a while.
  const timer = setTimeout(() => tunnel.destroy(), LINGER_MS);
  timer.unref();
  tunnel.onEarlyClose = () => clearTimeout(timer);
}

/** Answers a CONNECT stream with the coded error, dropping whatever the caller still sends, and ends it. */
function refuseStream(stream: ServerHttp2Stream, e: MeshError): void {
  stream.on('data', () => {});
  stream.resume();
  if (stream.closed || stream.destroyed) return;
  const json = JSON.stringify({ code: e.code, message: e.message });
  stream.respond({ ':status': e.status, 'content-type': 'application/json', 'weft-error': e.code, 'content-length': Buffer.byteLength(json) });
  stream.end(json);
  // The caller ends its side on reading the answer; one that does not is cut after a while.
  const timer = setTimeout(() => {
    if (!stream.closed) stream.close(ErrorCode.CANCEL);
  }, LINGER_MS);
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}

/** Answers with the coded error and closes, reading (and dropping) whatever the caller still sends meanwhile. */
export function refuseTunnel(socket: Socket, e: MeshError): void {
  socket.on('data', () => {});
  socket.resume();
  socket.end(meshErrorWire(e));
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
