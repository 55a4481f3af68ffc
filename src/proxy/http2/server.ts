/**
 * The downstream side of HTTP/2 (cleartext with prior knowledge, or TLS with ALPN `h2`): each stream
 * of a session is one exchange through the same Handler as HTTP/1.1. Node's HTTP/2 (nghttp2) does the
 * framing, HPACK and flow control; this file converts streams to and from the proxy's messages, with
 * backpressure both ways: a full upstream pauses the stream (its window closes), a slow client
 * pauses the response body.
 *
 * gRPC callers get mesh errors as gRPC status (a trailers-only response, or trailers after a body
 * already started), and their `grpc-timeout` bounds the exchange.
 */
import { newRequestId } from '../telemetry/trace-context.js';
import {
  constants,
  createServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import { MeshError } from '../../core/errors.js';
import { Body, type BodySink } from '../body.js';
import { requestTimeout } from '../filters/request-timeout.js';
import { grpcTimeoutMs, isGrpc } from '../grpc.js';
import { meshErrorGrpcTrailers } from '../local-reply.js';
import { abortContext, getHeader, removeHeader, requestContext, type Handler, type ProxyRequest, type ProxyResponse, type RequestContext } from '../message.js';
import { fromH2Headers, toH2Headers } from './headers.js';
import { badRequest, errorResponse } from './replies.js';

export interface Http2ServerOptions {
  direction: 'inbound' | 'outbound';
  /** A session with no open stream for this long is closed (GOAWAY). */
  idleTimeoutMs: number;
  /** Most header bytes of one request (HPACK-decoded), like HTTP/1.1's head limit. */
  maxHeaderListSize: number;
  /** Called once per finished exchange (metrics, logs); `grpcStatus` is '' for non-gRPC exchanges. */
  onExchange?: (ctx: RequestContext, status: number, errorCode: string, grpcStatus: string) => void;
  /**
   * Takes a `CONNECT` stream (RFC 9113 8.5, a TCP tunnel from another proxy) once its head arrived:
   * the inbound side's tunnels. Without it, CONNECT is answered 501.
   */
  connect?: (tunnel: Http2ConnectTunnel) => void;
}

/** A CONNECT stream handed over by the HTTP/2 server: nothing was answered or read on it yet. */
export interface Http2ConnectTunnel {
  stream: ServerHttp2Stream;
  /** `:authority`, the `host:port` to tunnel to. */
  target: string;
  /** Regular fields of the head, flattened. */
  headers: string[];
  /** The caller's SPIFFE ID from its mTLS certificate; null for plaintext. */
  peerIdentity: string | null;
  /** The session runs over TLS. */
  encrypted: boolean;
}

/** One downstream HTTP/2 session, as the proxy tracks its connections. */
export class Http2ServerConnection {
  readonly session: ServerHttp2Session;
  constructor(session: ServerHttp2Session) {
    this.session = session;
  }

  private draining = false;

  /**
   * Stops taking new streams; streams in flight finish, then the session closes. Gracefully (RFC 9113
   * 6.8): a GOAWAY naming the highest stream id first, so streams the client opens before it sees it
   * are still served (not refused), then the session closes a second later.
   */
  drain(): void {
    const session = this.session;
    if (this.draining || session.closed || session.destroyed) return;
    this.draining = true;
    try {
      session.goaway(constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1);
    } catch {
      // Going away already.
    }
    const timer = setTimeout(() => {
      if (!session.closed && !session.destroyed) session.close();
    }, 1000);
    timer.unref();
  }
}

const CANCEL = constants.NGHTTP2_CANCEL;
const INTERNAL = constants.NGHTTP2_INTERNAL_ERROR;

/**
 * Serves HTTP/2 sessions on sockets handed to it (a `http2` server that never listens). The handler
 * is read per stream, so a configuration swap reaches the next stream.
 */
export class Http2Downstream {
  private readonly server: Http2Server;
  private readonly opts: Http2ServerOptions;
  private readonly peers = new WeakMap<ServerHttp2Session, { identity: string | null; address: string; encrypted: boolean }>();

  constructor(handler: () => Handler, opts: Http2ServerOptions) {
    this.opts = opts;
    this.server = createServer({ maxSessionMemory: 64, settings: { maxHeaderListSize: opts.maxHeaderListSize, enablePush: false } });
    this.server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) => this.onStream(stream, headers, (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0, handler()));
    this.server.on('sessionError', () => {});
  }

  /** Takes over a connection whose first bytes are the HTTP/2 preface (or that negotiated `h2`). */
  accept(socket: Socket, peerIdentity: string | null): Http2ServerConnection {
    let conn: Http2ServerConnection | null = null;
    const address = socket.remoteAddress ?? '';
    const encrypted = 'encrypted' in socket;
    this.server.once('session', (session: ServerHttp2Session) => {
      this.peers.set(session, { identity: peerIdentity, address, encrypted });
      session.setTimeout(this.opts.idleTimeoutMs, () => session.close());
      session.on('error', () => {});
      conn = new Http2ServerConnection(session);
    });
    // Bytes already read to tell the protocol were put back (unshift); the session feeds them to
    // nghttp2 itself on the next tick, so the socket must stay paused until then.
    this.server.emit('connection', socket);
    if (conn === null) throw new Error('http2: no session was made for the connection');
    return conn;
  }

  private onStream(stream: ServerHttp2Stream, h: IncomingHttpHeaders, endStream: boolean, handler: Handler): void {
    const peer = this.peers.get(stream.session as ServerHttp2Session) ?? NO_PEER;
    stream.on('error', ignore);
    const method = h[':method'] ?? '';
    if (method === 'CONNECT' && this.opts.connect !== undefined) {
      // nghttp2 has checked the head: an `:authority`, and no `:scheme` or `:path`.
      this.opts.connect({ stream, target: h[':authority'] ?? '', headers: fromH2Headers(h), peerIdentity: peer.identity, encrypted: peer.encrypted });
      return;
    }
    const path = h[':path'] ?? '';
    const authority = (h[':authority'] ?? h.host ?? '').toLowerCase();
    const headers = fromH2Headers(h);
    // Framing: the body's length travels with the body, and is written again on the next hop.
    const declaredLength = getHeader(headers, 'content-length');
    if (declaredLength !== undefined) removeHeader(headers, 'content-length');
    const grpc = isGrpc(getHeader(headers, 'content-type'));
    let requestId = getHeader(headers, 'x-request-id') ?? '';
    if (requestId === '' || requestId.length > 128) {
      requestId = newRequestId();
      setOne(headers, 'x-request-id', requestId);
    }
    const xff = getHeader(headers, 'x-forwarded-for');
    setOne(headers, 'x-forwarded-for', xff === undefined ? peer.address : `${xff}, ${peer.address}`);
    // An `Expect: 100-continue` gets the upstream's interim answers, as on HTTP/1.1.
    const interim: RequestContext['interim'] = getHeader(headers, 'expect')?.toLowerCase() === '100-continue' ? (status, fields) => sendInterim(stream, status, fields) : null;
    const ctx = requestContext(this.opts.direction, requestId, peer.address, peer.identity, interim, 'HTTP/2');
    const reply = new StreamReply(stream, ctx, grpc, method === 'HEAD', this.opts.onExchange);
    let body: Body | null = null;
    // One 'close' listener per stream: a request body cut short fails, an answer not yet sent in full
    // aborts the exchange (the upstream side lets go), and the exchange is reported.
    stream.once('close', () => {
      if (body !== null && !body.done) body.fail(new MeshError('BAD_REQUEST', 'the client reset the stream before its body ended'));
      if (!reply.complete) abortContext(ctx, new MeshError('CLIENT_CLOSED', `the client reset the stream (code ${stream.rstCode ?? 0})`));
      reply.finish();
    });
    const bad = method === '' || method === 'CONNECT' || authority === '' || !path.startsWith('/') ? badRequest(method, path, authority) : null;
    if (bad !== null) {
      stream.resume(); // whatever body it sent is not wanted
      reply.send(errorResponse(ctx, bad, grpc));
      return;
    }
    if (!endStream) {
      const declared = Number(declaredLength ?? -1);
      body = new Body(Number.isSafeInteger(declared) && declared >= 0 ? declared : -1, {
        pause: () => stream.pause(),
        resume: () => stream.resume(),
        // The upstream does not want the rest: read and drop it, so the stream can still carry the answer.
        abort: () => stream.resume(),
      });
      const b = body;
      let trailers: string[] | null = null;
      stream.on('data', (c: Buffer) => {
        ctx.bytesReceived += c.length;
        b.push(c);
      });
      stream.on('trailers', (t: IncomingHttpHeaders) => (trailers = fromH2Headers(t)));
      stream.on('end', () => b.end(trailers));
    }
    const req: ProxyRequest = { method, path, authority, headers, body };
    // A gRPC caller's deadline bounds the whole exchange, like a route's request timeout.
    const deadline = grpc ? grpcTimeoutMs(getHeader(headers, 'grpc-timeout')) : null;
    const h2 = deadline === null ? handler : requestTimeout(deadline)(handler);
    h2(req, ctx).then(
      (res) => reply.send(res),
      (err) => reply.send(errorResponse(ctx, err, grpc)),
    );
  }

  /** Closes every session at once. */
  close(): void {
    this.server.close();
  }
}


/** An interim (1xx) answer on a stream whose final answer has not gone out yet. */
function sendInterim(stream: ServerHttp2Stream, status: number, fields: string[]): void {
  if (stream.headersSent || stream.closed || stream.destroyed) return;
  try {
    stream.additionalHeaders({ ...toH2Headers(fields), ':status': status });
  } catch {
    // The stream went away meanwhile: the final answer (or its absence) says the rest.
  }
}

const ignore = (): void => {};
const NO_PEER = { identity: null, address: '', encrypted: false };
// `stream.respond` options, all of one shape.
const END_STREAM = { endStream: true, waitForTrailers: false };
const NO_TRAILERS = { endStream: false, waitForTrailers: false };
const WAIT_FOR_TRAILERS = { endStream: false, waitForTrailers: true };

function setOne(headers: string[], name: string, value: string): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === name) {
      headers[i + 1] = value;
      return;
    }
  }
  headers.push(name, value);
}

/** Writes one response on a stream, body and trailers with backpressure, and reports the exchange once. */
class StreamReply implements BodySink {
  finished = false;
  /** The whole answer was handed to the stream (its end, or its trailers, are on the way): a reset now aborts nothing. */
  complete = false;
  private status = 0;
  private grpcStatus = '';
  private body: Body | null = null;
  private trailers: string[] | null = null;
  /** Set while the response head is not sent yet: what the body delivered meanwhile. */
  private early: { chunks: Buffer[]; ended: boolean; err: Error | null } | null = null;
  private drainHooked = false;
  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly ctx: RequestContext,
    private readonly grpc: boolean,
    private readonly isHead: boolean,
    private readonly onExchange: Http2ServerOptions['onExchange'],
  ) {}

  send(res: ProxyResponse): void {
    const stream = this.stream;
    if (stream.closed || stream.destroyed) {
      res.body?.abort(new Error('client reset the stream'));
      this.status = res.status;
      this.finish();
      return;
    }
    this.status = res.status;
    const bodyless = this.isHead || res.status === 204 || res.status === 304;
    const body = bodyless ? null : res.body;
    if (bodyless && res.body !== null) res.body.abort(new Error('no body for this response'));
    const head: OutgoingHttpHeaders = toH2Headers(res.headers);
    head[':status'] = res.status;
    if (body !== null && body.length >= 0) head['content-length'] = body.length;
    this.noteGrpc(res.headers);
    if (body === null) {
      this.complete = true;
      stream.respond(head, END_STREAM);
      return;
    }
    this.body = body;
    // What the body holds already is taken before the head goes out: a response complete by now
    // (a small answer read with its head) is sent as HEADERS + DATA with END_STREAM, with no wait
    // for trailers (a 'wantTrailers' event and an empty frame) it does not have.
    const early = (this.early = { chunks: [] as Buffer[], ended: false, err: null as Error | null });
    body.pipe(this);
    this.early = null;
    if (early.err === null && early.ended && this.trailers === null) {
      this.complete = true;
      stream.respond(head, NO_TRAILERS);
      const chunks = early.chunks;
      const last = chunks.length - 1;
      for (let i = 0; i < last; i++) stream.write(chunks[i]);
      if (last >= 0) stream.end(chunks[last]);
      else stream.end();
      return;
    }
    stream.respond(head, WAIT_FOR_TRAILERS);
    stream.on('wantTrailers', () => {
      const t = this.trailers;
      if (t !== null) this.noteGrpc(t);
      stream.sendTrailers(t === null ? {} : toH2Headers(t));
    });
    for (const c of early.chunks) this.write(c);
    if (early.err !== null) this.error(early.err);
    else if (early.ended) this.end(this.trailers);
  }

  /** BodySink: a chunk of the response body. */
  data(c: Buffer): boolean {
    this.ctx.bytesSent += c.length;
    const early = this.early;
    if (early !== null) {
      early.chunks.push(c);
      return true;
    }
    return this.write(c);
  }

  /** BodySink: the response body ended, with trailers or none. */
  end(t: string[] | null): void {
    this.trailers = t;
    if (this.early !== null) {
      this.early.ended = true;
      return;
    }
    this.complete = true;
    this.stream.end();
  }

  /** BodySink: the response body was cut. */
  error(err: Error): void {
    const early = this.early;
    if (early !== null) {
      early.err = err;
      return;
    }
    const stream = this.stream;
    const e = err instanceof MeshError ? err : null;
    if (this.grpc && e !== null && !stream.closed) {
      // A gRPC call cut by the mesh (its deadline, say) still ends with a status the caller can read.
      this.ctx.errorCode = e.code;
      this.trailers = meshErrorGrpcTrailers(e);
      this.complete = true;
      stream.end();
      return;
    }
    // The response was cut: reset the stream so the client can tell it from a complete one.
    if (!stream.closed) stream.close(e?.code === 'UPSTREAM_TIMEOUT' || e?.code === 'STREAM_IDLE_TIMEOUT' ? CANCEL : INTERNAL);
  }

  private write(c: Buffer): boolean {
    const stream = this.stream;
    if (stream.write(c)) return true;
    // The client's window or the session's buffer is full: deliver again once it drains.
    if (!this.drainHooked) {
      this.drainHooked = true;
      stream.on('drain', () => this.body?.resume());
    }
    return false;
  }

  private noteGrpc(fields: readonly string[]): void {
    const s = getHeader(fields, 'grpc-status');
    if (s !== undefined) this.grpcStatus = s;
  }

  /** Reports the exchange, once (the stream closed, or there was no stream left to answer on). */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.onExchange?.(this.ctx, this.status, this.ctx.errorCode, this.grpc ? this.grpcStatus || 'none' : '');
  }
}

