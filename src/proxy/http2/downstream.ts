/**
 * The downstream side of HTTP/2 on Weft's own engine (connection.ts): the same exchanges as
 * server.ts (node:http2), with streams as plain objects and flat field lists end to end. Each
 * stream is one exchange through the listener's Handler; backpressure both ways (a full upstream
 * pauses the stream's window, a slow client pauses the response body); gRPC callers get mesh errors
 * as gRPC status and their `grpc-timeout` bounds the exchange.
 *
 * Per stream: one `StreamExchange` (the request's Body flow and the response's BodySink both), its
 * context, and the few callbacks the stream calls; no EventEmitter and no Promise but the handler's.
 * CONNECT streams (RFC 9113 8.5, TCP tunnels from peer proxies) go to the `connect` option when
 * given (the inbound listener), else are answered 501.
 */
import { newRequestId } from '../telemetry/trace-context.js';
import type { Socket } from 'node:net';
import { MeshError } from '../../core/errors.js';
import { Body, type BodyFlow, type BodySink } from '../body.js';
import { requestTimeout } from '../filters/request-timeout.js';
import { grpcTimeoutMs, isGrpc } from '../grpc.js';
import { meshErrorGrpcTrailers } from '../local-reply.js';
import { abortContext, getHeader, requestContext, type Handler, type ProxyRequest, type ProxyResponse, type RequestContext } from '../message.js';
import { H2Connection, headerListSize, type H2Stream } from './connection.js';
import { ErrorCode } from './frames.js';
import { CONNECTION_SPECIFIC } from './headers.js';
import { badRequest, errorResponse } from './replies.js';
import type { Http2ServerOptions } from './server.js';

/** What the engine's listeners take: server.ts's options, with `connect` handing over H2Streams. */
export type WeftHttp2Options = Omit<Http2ServerOptions, 'connect'> & {
  /** Takes a CONNECT stream once its head arrived (nothing answered or read yet); without it, 501. */
  connect?: (tunnel: WeftConnectTunnel) => void;
};

/** A CONNECT stream handed over by the engine: its onClose is the connection's (call it on close). */
export interface WeftConnectTunnel {
  stream: H2Stream;
  /** `:authority`, the `host:port` to tunnel to. */
  target: string;
  /** Regular fields of the head, flat. */
  headers: string[];
  /** The head came with END_STREAM: the caller sends nothing. */
  ended: boolean;
  /** The caller's SPIFFE ID from its mTLS certificate; null for plaintext. */
  peerIdentity: string | null;
  /** The connection runs over TLS. */
  encrypted: boolean;
}

/**
 * Streams one client may have open at once. node:http2 announced no limit at all; the engine's 100
 * would make a client that multiplexes every call on one connection (grpc-js) queue its calls, so
 * this is high, while still bounding a connection's memory.
 */
const MAX_CONCURRENT_STREAMS = 1000;
/** How long a draining connection keeps taking the streams a client opened before it saw the GOAWAY. */
const DRAIN_GRACE_MS = 1000;
/** The highest stream id there can be: a first GOAWAY naming it refuses nothing. */
const LAST_STREAM_ID = 2 ** 31 - 1;

/**
 * Serves HTTP/2 sessions on sockets handed to it, with the engine of connection.ts. The handler is
 * read per stream, so a configuration swap reaches the next stream.
 */
export class WeftHttp2Downstream {
  /** @internal */ readonly handler: () => Handler;
  /** @internal */ readonly opts: WeftHttp2Options;
  private readonly conns = new Set<WeftHttp2ServerConnection>();

  constructor(handler: () => Handler, opts: WeftHttp2Options) {
    this.handler = handler;
    this.opts = opts;
  }

  /** Takes over a connection whose first bytes are the HTTP/2 preface (or that negotiated `h2`). */
  accept(socket: Socket, peerIdentity: string | null): WeftHttp2ServerConnection {
    const conn = new WeftHttp2ServerConnection(this, socket, peerIdentity);
    this.conns.add(conn);
    return conn;
  }

  /** @internal The connection closed. */
  forget(conn: WeftHttp2ServerConnection): void {
    this.conns.delete(conn);
  }

  /** Closes every session at once. */
  close(): void {
    for (const c of [...this.conns]) c.destroy();
  }
}

/** One downstream HTTP/2 connection, as the proxy tracks its connections. */
export class WeftHttp2ServerConnection {
  /** @internal */ readonly h2: H2Connection;
  /** @internal */ readonly downstream: WeftHttp2Downstream;
  /** @internal */ readonly address: string;
  /** @internal */ readonly peerIdentity: string | null;
  private readonly socket: Socket;
  /** Streams open (their exchange not yet closed). */
  private open = 0;
  /** Fires idleTimeoutMs after the last stream closed (or the connection opened); re-armed in place. */
  private readonly idleTimer: NodeJS.Timeout | null;
  private draining = false;

  constructor(downstream: WeftHttp2Downstream, socket: Socket, peerIdentity: string | null) {
    this.downstream = downstream;
    this.socket = socket;
    this.peerIdentity = peerIdentity;
    this.address = socket.remoteAddress ?? '';
    const opts = downstream.opts;
    // Bytes already read to tell the protocol were put back (unshift): the connection's 'data'
    // listener gets them first when it resumes the socket.
    this.h2 = new H2Connection(socket, {
      role: 'server',
      settings: { maxHeaderListSize: opts.maxHeaderListSize, enablePush: false, maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
      onStream: (stream, fields, endStream) => this.onStream(stream, fields, endStream),
      onHeadTooLarge: (stream) => this.onHeadTooLarge(stream),
      onClose: () => this.onClosed(),
    });
    const idle = opts.idleTimeoutMs;
    this.idleTimer = idle > 0 ? setTimeout(() => this.onIdle(), idle).unref() : null;
  }

  /**
   * Stops taking new streams; streams in flight finish, then the connection closes. Gracefully (RFC
   * 9113 6.8): a GOAWAY naming the highest stream id first, so streams the client opens before it
   * sees it are still served (not refused), then the real GOAWAY a second later. An idle connection
   * closes at once.
   */
  drain(): void {
    const h2 = this.h2;
    if (this.draining || h2.closed) return;
    this.draining = true;
    if (this.open === 0) {
      h2.goaway();
      return;
    }
    h2.goaway(ErrorCode.NO_ERROR, LAST_STREAM_ID);
    setTimeout(() => h2.goaway(), DRAIN_GRACE_MS).unref();
  }

  /** @internal At once: every stream is cut, the socket destroyed. */
  destroy(): void {
    this.h2.destroy();
  }

  private onIdle(): void {
    if (this.open === 0 && !this.h2.closed) this.h2.goaway();
  }

  private onClosed(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.downstream.forget(this);
  }

  /** @internal A stream's exchange is over. */
  streamClosed(): void {
    if (--this.open === 0 && this.idleTimer !== null) this.idleTimer.refresh();
  }

  private onStream(stream: H2Stream, fields: string[], endStream: boolean): void {
    this.open++;
    const opts = this.downstream.opts;
    // The head, in one pass: pseudo-fields out, regular ones compacted in place (the engine checked
    // names, values and order per RFC 9113 8.2-8.3), the fields the proxy looks at noted.
    let method = '';
    let path = '';
    let authority: string | null = null;
    let host = '';
    let declaredLength = '';
    let contentType: string | undefined;
    let expect: string | undefined;
    let grpcTimeout: string | undefined;
    let requestIdAt = -1;
    let xffAt = -1;
    let cookieAt = -1;
    let w = 0;
    const n = fields.length;
    for (let r = 0; r < n; r += 2) {
      const name = fields[r]!;
      const value = fields[r + 1]!;
      if (name.charCodeAt(0) === 0x3a) {
        if (name === ':method') method = value;
        else if (name === ':path') path = value;
        else if (name === ':authority') authority = value;
        continue;
      }
      switch (name) {
        case 'host': // `:authority` carries it on the next hop
          if (host === '') host = value;
          continue;
        case 'content-length': // framing: the body's length travels with the body
          declaredLength = value;
          continue;
        case 'cookie':
          // Cookie crumbs are joined again for the next hop (RFC 9113 8.2.3), which may be HTTP/1.1.
          if (cookieAt >= 0) {
            fields[cookieAt + 1] += `; ${value}`;
            continue;
          }
          cookieAt = w;
          break;
        case 'x-request-id':
          if (requestIdAt < 0) requestIdAt = w;
          break;
        case 'x-forwarded-for':
          if (xffAt < 0) xffAt = w;
          break;
        case 'content-type':
          contentType ??= value;
          break;
        case 'expect':
          expect ??= value;
          break;
        case 'grpc-timeout':
          grpcTimeout ??= value;
          break;
      }
      fields[w] = name;
      fields[w + 1] = value;
      w += 2;
    }
    fields.length = w;
    const headers = fields;
    if (method === 'CONNECT' && opts.connect !== undefined) {
      // A TCP tunnel (the engine checked its head: :method and :authority only); it stays open, for
      // the idle timer, until its stream closes. Its content-length is for the tunnel to refuse.
      if (declaredLength !== '') headers.push('content-length', declaredLength);
      stream.onClose = () => this.streamClosed();
      opts.connect({ stream, target: authority ?? '', headers, ended: endStream, peerIdentity: this.peerIdentity, encrypted: 'encrypted' in this.socket });
      return;
    }
    authority = (authority ?? host).toLowerCase();
    const grpc = isGrpc(contentType);
    let requestId = requestIdAt >= 0 ? headers[requestIdAt + 1]! : '';
    if (requestId === '' || requestId.length > 128) {
      requestId = newRequestId();
      if (requestIdAt >= 0) headers[requestIdAt + 1] = requestId;
      else headers.push('x-request-id', requestId);
    }
    const address = this.address;
    if (xffAt >= 0) headers[xffAt + 1] = `${headers[xffAt + 1]!}, ${address}`;
    else headers.push('x-forwarded-for', address);

    // An `Expect: 100-continue` gets the upstream's interim answers, as on HTTP/1.1.
    const ctx = this.newContext(requestId, expect !== undefined && expect.toLowerCase() === '100-continue' ? (status, f) => sendInterim(stream, status, f) : null);
    const ex = new StreamExchange(this, stream, ctx, grpc, method === 'HEAD');
    stream.onClose = (code) => ex.closed(code);
    if (method === 'CONNECT' || authority === '' || path.charCodeAt(0) !== 0x2f) {
      // Whatever body it sends is not wanted: the engine keeps returning its window (never paused).
      ex.send(errorResponse(ctx, badRequest(method, path, authority), grpc));
      return;
    }
    let body: Body | null = null;
    if (!endStream) {
      const declared = declaredLength === '' ? -1 : Number(declaredLength);
      body = ex.reqBody = new Body(Number.isSafeInteger(declared) ? declared : -1, ex);
      stream.onData = (c) => ex.requestData(c);
      stream.onEnd = (t) => ex.requestEnd(t);
    }
    const req: ProxyRequest = { method, path, authority, headers, body };
    // A gRPC caller's deadline bounds the whole exchange, like a route's request timeout.
    const deadline = grpc ? grpcTimeoutMs(grpcTimeout) : null;
    const handler = this.downstream.handler();
    (deadline === null ? handler : requestTimeout(deadline)(handler))(req, ctx).then(
      (res) => ex.send(res),
      (err) => ex.send(errorResponse(ctx, err, grpc)),
    );
  }

  /**
   * A request head over maxHeaderListSize (the engine decoded and dropped it): answered 431
   * HEADERS_TOO_LARGE and reported like every local answer, as the HTTP/1.1 listener does for a
   * head over its limit. Nothing of the head is known, so no request id and no gRPC status.
   */
  private onHeadTooLarge(stream: H2Stream): void {
    this.open++;
    const ctx = this.newContext('', null);
    const ex = new StreamExchange(this, stream, ctx, false, false);
    stream.onClose = (code) => ex.closed(code);
    const limit = this.downstream.opts.maxHeaderListSize;
    ex.send(errorResponse(ctx, new MeshError('HEADERS_TOO_LARGE', `request header list larger than ${limit} bytes (names + values + 32 per field)`), false));
  }

  /** A new exchange's context. */
  private newContext(requestId: string, interim: RequestContext['interim']): RequestContext {
    return requestContext(this.downstream.opts.direction, requestId, this.address, this.peerIdentity, interim, 'HTTP/2');
  }
}

/** An interim (1xx) answer on a stream whose final answer has not gone out yet. */
function sendInterim(stream: H2Stream, status: number, fields: readonly string[]): void {
  if (stream.sentHead || stream.closed) return;
  const head = responseHead(status, fields, true, -1);
  // An interim answer is advisory: one over the client's header list limit is left out.
  if (headerListSize(head) <= stream.conn.peerMaxHeaderListSize) stream.respond(head, false);
}

/**
 * A response head as the engine sends it: `:status`, then the fields without those HTTP/2 forbids
 * (connection-specific ones and Host; `te` only as `trailers`), and the body's length when known.
 * A content-length among the fields is dropped when the body carries its own (`keepLength` false).
 */
function responseHead(status: number, fields: readonly string[], keepLength: boolean, length: number): string[] {
  const out: string[] = [':status', String(status)];
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (CONNECTION_SPECIFIC.has(name) || (name === 'te' && value.toLowerCase() !== 'trailers') || (!keepLength && name === 'content-length')) continue;
    out.push(name, value);
  }
  if (length >= 0) out.push('content-length', String(length));
  return out;
}

/**
 * One stream's exchange: the request body's flow (BodyFlow: pause/resume/abort act on the stream's
 * window) and the response's writer (BodySink: body and trailers with backpressure), reported once.
 */
class StreamExchange implements BodyFlow, BodySink {
  reqBody: Body | null = null;
  private resBody: Body | null = null;
  private finished = false;
  /** The whole answer was handed to the stream (its end or trailers are on the way): a reset now aborts nothing. */
  private complete = false;
  private status = 0;
  private grpcStatus = '';
  /** While the response body is piped before its head goes out: what it delivered meanwhile. */
  private holding = false;
  private held: Buffer[] | null = null;
  private heldEnd = false;
  private heldTrailers: string[] | null = null;
  private heldError: Error | null = null;
  private drainHooked = false;
  /** The answer was replaced by a local one (its head did not fit the client's limit). */
  private replaced = false;

  constructor(
    private readonly conn: WeftHttp2ServerConnection,
    private readonly stream: H2Stream,
    private readonly ctx: RequestContext,
    private readonly grpc: boolean,
    private readonly isHead: boolean,
  ) {}

  // ---- The request body ----------------------------------------------------------------------

  requestData(c: Buffer): void {
    this.ctx.bytesReceived += c.length;
    this.reqBody!.push(c);
  }

  requestEnd(trailers: string[] | null): void {
    this.reqBody!.end(trailers);
  }

  /** BodyFlow: the upstream is full; the stream's window stays closed until it resumes. */
  pause(): void {
    this.stream.pause();
  }

  /** BodyFlow: the upstream takes more. */
  resume(): void {
    this.stream.resume();
  }

  /** BodyFlow: the upstream does not want the rest: read and drop it, so the stream can still carry the answer. */
  abort(): void {
    this.stream.resume();
  }

  // ---- The response --------------------------------------------------------------------------

  /** Writes the handler's answer (or a mesh error's). */
  send(res: ProxyResponse): void {
    const stream = this.stream;
    if (stream.closed) {
      res.body?.abort(new Error('client reset the stream'));
      this.status = res.status;
      this.finish();
      return;
    }
    if (res.status < 200 || res.upgraded !== undefined) {
      // No protocol switch on HTTP/2 (RFC 9113 8.6), and a final answer is 2xx-5xx.
      res.upgraded?.socket.destroy();
      res.body?.abort(new Error('switching protocols refused'));
      res = errorResponse(this.ctx, new MeshError('UPSTREAM_PROTOCOL_ERROR', `the upstream answered ${res.status} to an HTTP/2 request`), this.grpc);
    }
    const status = (this.status = res.status);
    const bodyless = this.isHead || status === 204 || status === 304;
    const body = bodyless ? null : res.body;
    if (bodyless && res.body !== null) res.body.abort(new Error('no body for this response'));
    const head = body === null ? responseHead(status, res.headers, true, -1) : responseHead(status, res.headers, false, body.length);
    const limit = this.conn.h2.peerMaxHeaderListSize;
    if (limit !== Infinity) {
      const size = headerListSize(head);
      if (size > limit) return this.headTooLarge(body, status, size, limit);
    }
    this.noteGrpc(res.headers);
    if (body === null) {
      this.complete = true;
      stream.respond(head, true);
      return;
    }
    this.resBody = body;
    // What the body holds already is taken before the head goes out: an answer complete by now (a
    // small one read with its head) goes out as HEADERS + DATA with END_STREAM on the last frame.
    this.holding = true;
    body.pipe(this);
    this.holding = false;
    const held = this.held;
    this.held = null;
    if (this.heldError === null && this.heldEnd) {
      this.complete = true;
      const trailers = this.heldTrailers;
      if (held === null && trailers === null) {
        stream.respond(head, true);
        return;
      }
      stream.respond(head, false);
      if (trailers !== null) this.noteGrpc(trailers);
      if (held === null) {
        stream.end(null, trailers);
        return;
      }
      const last = held.length - 1;
      for (let i = 0; i < last; i++) stream.write(held[i]!);
      stream.end(held[last], trailers);
      return;
    }
    stream.respond(head, false);
    if (held !== null) for (let i = 0; i < held.length; i++) this.write(held[i]!);
    if (this.heldError !== null) this.error(this.heldError);
  }

  /**
   * The answer's head is over the client's SETTINGS_MAX_HEADER_LIST_SIZE, so it cannot be sent:
   * a 502 HEADERS_OVER_PEER_LIMIT goes instead (the caller learns why, and it is counted), or, when
   * even that does not fit, a reset.
   */
  private headTooLarge(body: Body | null, status: number, size: number, limit: number): void {
    const err = new MeshError('HEADERS_OVER_PEER_LIMIT', `the ${status} response head is ${size} bytes (names + values + 32 per field), over the client's SETTINGS_MAX_HEADER_LIST_SIZE of ${limit}`);
    body?.abort(err);
    if (this.replaced) {
      this.stream.reset(ErrorCode.INTERNAL_ERROR);
      return;
    }
    this.replaced = true;
    this.send(errorResponse(this.ctx, err, this.grpc));
  }

  /** BodySink: a chunk of the response body. */
  data(c: Buffer): boolean {
    this.ctx.bytesSent += c.length;
    if (this.holding) {
      if (this.held === null) this.held = [c];
      else this.held.push(c);
      return true;
    }
    return this.write(c);
  }

  /** BodySink: the response body ended, with trailers or none. */
  end(trailers: string[] | null): void {
    if (this.holding) {
      this.heldEnd = true;
      this.heldTrailers = trailers;
      return;
    }
    this.complete = true;
    if (trailers !== null) this.noteGrpc(trailers);
    this.stream.end(null, trailers);
  }

  /** BodySink: the response body was cut. */
  error(err: Error): void {
    if (this.holding) {
      this.heldError = err;
      return;
    }
    const stream = this.stream;
    if (stream.closed) return;
    const e = err instanceof MeshError ? err : null;
    if (this.grpc && e !== null) {
      // A gRPC call cut by the mesh (its deadline, say) still ends with a status the caller can read.
      this.ctx.errorCode = e.code;
      const trailers = meshErrorGrpcTrailers(e);
      this.noteGrpc(trailers);
      this.complete = true;
      stream.end(null, trailers);
      return;
    }
    // The response was cut: reset the stream so the client can tell it from a complete one.
    stream.reset(e?.code === 'UPSTREAM_TIMEOUT' || e?.code === 'STREAM_IDLE_TIMEOUT' ? ErrorCode.CANCEL : ErrorCode.INTERNAL_ERROR);
  }

  private write(c: Buffer): boolean {
    const stream = this.stream;
    if (stream.write(c)) return true;
    // The client's window or the socket is full: deliver again once it drains.
    if (!this.drainHooked) {
      this.drainHooked = true;
      stream.onDrain = () => this.resBody?.resume();
    }
    return false;
  }

  private noteGrpc(fields: readonly string[]): void {
    const s = getHeader(fields, 'grpc-status');
    if (s !== undefined) this.grpcStatus = s;
  }

  // ---- The end -------------------------------------------------------------------------------

  /**
   * The stream is gone (both sides ended, or a reset either way): a request body cut short fails,
   * an answer not yet handed over in full aborts the exchange (the upstream side lets go), and the
   * exchange is reported.
   */
  closed(code: number): void {
    const body = this.reqBody;
    if (body !== null && !body.done) body.fail(new MeshError('BAD_REQUEST', 'the client reset the stream before its body ended'));
    if (!this.complete) abortContext(this.ctx, new MeshError('CLIENT_CLOSED', `the client reset the stream (code ${code})`));
    this.finish();
    this.conn.streamClosed();
  }

  /** Reports the exchange, once. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.conn.downstream.opts.onExchange?.(this.ctx, this.status, this.ctx.errorCode, this.grpc ? this.grpcStatus || 'none' : '');
  }
}
