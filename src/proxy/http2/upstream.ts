/**
 * The upstream side of HTTP/2 on Weft's own engine (connection.ts on a raw socket): the exchanges of
 * HTTP/2 and gRPC clusters, cleartext with prior knowledge to an app or mutual TLS with ALPN `h2` to
 * another proxy (under the `h2` peer transport also HTTP/1.1 requests as streams and TCP tunnels as
 * CONNECT streams). Same behaviour as Http2Pool (client.ts, node:http2, under WEFT_HTTP2_ENGINE=node):
 * one session per endpoint shared by every exchange, another when the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS is reached; a session that fails, closes or is told to go away is
 * replaced on the next request, and a stream it never processed is sent again once.
 *
 * One Exchange object per request holds its state: it is the request body's sink, the response
 * body's flow, and the target of its stream's callbacks; timers only when configured.
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';
import { MeshError } from '../../core/errors.js';
import { Body, type BodyFlow, type BodySink } from '../body.js';
import type { ProxyRequest, ProxyResponse, RequestContext } from '../message.js';
import { expectSpiffeId } from '../tls/peer-identity.js';
import { hostPort, type UpstreamPool } from '../upstream/upstream-pool.js';
import type { Http2PoolOptions } from './client.js';
import { H2Connection, H2HeadTooLarge, type H2Stream } from './connection.js';
import { ErrorCode } from './frames.js';

/**
 * Which HTTP/2 engine the proxy uses, read once: `WEFT_HTTP2_ENGINE=node` keeps node:http2 (for
 * before/after benchmarks from one build); anything else, Weft's own.
 */
export const HTTP2_ENGINE: 'weft' | 'node' = process.env.WEFT_HTTP2_ENGINE === 'node' ? 'node' : 'weft';

/** Request bodies up to this size are kept until the answer begins, to send again if the stream is refused. */
const REPLAY_MAX_BYTES = 64 * 1024;
/** Sessions per endpoint at most; past that, exchanges wait for a stream to end. */
const MAX_SESSIONS = 8;
/** Methods safe to send again when the session died before the server could have answered. */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Request fields HTTP/2 forbids (RFC 9113 8.2.2), and Host (`:authority` carries it). */
const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

/** A copy of a request body kept to send it again. */
interface Replay {
  chunks: Buffer[];
  bytes: number;
  ended: boolean;
  trailers: string[] | null;
}
/** A request with no body can always be sent again. */
const NO_BODY_REPLAY: Replay = { chunks: [], bytes: 0, ended: true, trailers: null };

/** What waits for a session with room: an exchange, or a CONNECT stream to open. */
interface Waiter {
  /** Opens its stream on `s`. */
  start(s: Session): void;
  /** No session came: fails with `err`. */
  finish(err: Error): void;
  /** Queued; `behindStreams`: behind the streams of a full session, not a connect. */
  queued(behindStreams: boolean): void;
}

/** One HTTP/2 connection of a pool, from connect to close. */
class Session {
  readonly pool: WeftHttp2Pool;
  readonly socket: Socket | TLSSocket;
  readonly secure: boolean;
  /** The client context of its mutual TLS (null: plaintext). */
  readonly context: SecureContext | null;
  /** Set once the socket is connected (and TLS agreed to `h2`). */
  conn: H2Connection | null = null;
  /** The peer's SETTINGS arrived: streams may open (within its MAX_CONCURRENT_STREAMS). */
  ready = false;
  /** Out of the pool: no new streams; it goes away once its streams end. */
  retired = false;
  private connectTimer: NodeJS.Timeout | null;
  private idleTimer: NodeJS.Timeout | null = null;
  private wrongPeer: string | null = null;

  constructor(pool: WeftHttp2Pool, socket: Socket | TLSSocket, context: SecureContext | null, connectTimeoutMs: number) {
    this.pool = pool;
    this.socket = socket;
    const secure = context !== null;
    this.secure = secure;
    this.context = context;
    this.connectTimer = setTimeout(onConnectTimeout, connectTimeoutMs, this);
    socket.once(secure ? 'secureConnect' : 'connect', () => this.connected());
    socket.once('error', (err: NodeJS.ErrnoException) => this.connectError(err));
  }

  /** For the TLS handshake's checkServerIdentity: what the peer presented instead of the expected ID. */
  noteWrongPeer(presented: string): void {
    this.wrongPeer = presented;
  }

  private connected(): void {
    const socket = this.socket;
    socket.removeAllListeners('error');
    if (this.secure && (socket as TLSSocket).alpnProtocol !== 'h2') {
      this.clearConnectTimer();
      socket.destroy();
      const err = new MeshError('UPSTREAM_PROTOCOL_ERROR', `${this.pool.key} did not agree to HTTP/2 (ALPN ${String((socket as TLSSocket).alpnProtocol)})`);
      return this.pool.sessionFailed(this, err, true);
    }
    socket.unref();
    this.conn = new H2Connection(socket, {
      role: 'client',
      onSettings: () => this.settings(),
      onGoaway: () => this.pool.retire(this),
      onClose: (err) => this.closed(err),
    });
  }

  private connectError(err: NodeJS.ErrnoException): void {
    this.clearConnectTimer();
    this.socket.destroy();
    const pool = this.pool;
    const key = pool.key;
    if (!this.secure || err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') {
      return pool.sessionFailed(this, new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${key} failed: ${err.code ?? err.message}`), true);
    }
    pool.tlsSession = undefined;
    const why = this.wrongPeer !== null ? `the peer's certificate is for ${this.wrongPeer}, not ${pool.expectedPeer}` : (err.code ?? err.message);
    pool.sessionFailed(this, new MeshError('UPSTREAM_TLS_FAILURE', `mTLS to ${key} failed: ${why}`), true);
  }

  /** Connect timeout: no connection, or no SETTINGS from the peer, in time. */
  connectTimeout(): void {
    this.connectTimer = null;
    if (this.ready) return;
    this.pool.sessionFailed(this, new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${this.pool.key} timed out after ${this.pool.connectTimeoutMs} ms`), true);
    if (this.conn !== null) this.conn.destroy();
    else this.socket.destroy();
  }

  private settings(): void {
    if (this.ready) return;
    this.ready = true;
    this.clearConnectTimer();
    this.pool.sessionReady(this);
  }

  private closed(err: Error | null): void {
    this.clearConnectTimer();
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    if (!this.ready) {
      // Connected, then closed before its SETTINGS: whoever waited for it hears of it as a reset.
      const why = err === null ? 'closed the connection' : err.message;
      return this.pool.sessionFailed(this, new MeshError('UPSTREAM_RESET', `${this.pool.key} ended the HTTP/2 connection before its SETTINGS: ${why}`), false);
    }
    this.pool.retire(this);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  /** Whether a stream may open here now. */
  hasRoom(): boolean {
    const conn = this.conn!;
    return !conn.closed && conn.activeStreams < conn.peerMaxConcurrentStreams;
  }

  /** No stream left: a retired session goes away, another starts its idle countdown. */
  idle(idleTimeoutMs: number): void {
    if (this.retired) {
      this.conn!.goaway();
      return;
    }
    if (idleTimeoutMs <= 0) return;
    if (this.idleTimer === null) this.idleTimer = setTimeout(onSessionIdle, idleTimeoutMs, this).unref();
    else this.idleTimer.refresh();
  }

  idleTimeout(): void {
    const conn = this.conn!;
    if (conn.activeStreams === 0 && !conn.closed) this.pool.retire(this);
  }
}

const isReady = (s: Session): boolean => s.ready;

function onConnectTimeout(s: Session): void {
  s.connectTimeout();
}
function onSessionIdle(s: Session): void {
  s.idleTimeout();
}
function onHeadTimeout(x: Exchange): void {
  x.headTimeout();
}
function onStreamIdle(x: Exchange): void {
  x.streamIdle();
}

/** HTTP/2 sessions to `host:port` on Weft's engine, shared by every exchange. */
export class WeftHttp2Pool implements UpstreamPool {
  readonly host: string;
  readonly port: number;
  readonly key: string;
  private readonly opts: Http2PoolOptions;
  /** Usable or connecting sessions, oldest first (exchanges fill the first with room). */
  private sessions: Session[] = [];
  /** Exchanges (and CONNECT streams) waiting for a session with room, oldest first. */
  private readonly waiting: Waiter[] = [];
  private connecting = 0;
  private closed = false;
  /** @internal The last TLS session with this endpoint, for resumption. */
  tlsSession: Buffer | undefined;
  private tlsSessionContext: SecureContext | null = null;
  active = 0;
  total = 0;
  connectFailures = 0;

  constructor(host: string, port: number, opts: Http2PoolOptions) {
    this.host = host;
    this.port = port;
    this.key = hostPort(host, port);
    this.opts = opts;
  }

  /** @internal */
  get connectTimeoutMs(): number {
    return this.opts.connectTimeoutMs;
  }

  /** @internal */
  get expectedPeer(): string {
    return this.opts.tls?.peerIdentity ?? '';
  }

  /** Open sessions with no stream, for `/clusters`. */
  get idleCount(): number {
    let n = 0;
    for (const s of this.sessions) if (s.ready && s.conn!.activeStreams === 0 && !s.conn!.closed) n++;
    return n;
  }

  /** As Http1Pool.request: `streamIdleMs` (0: none) cuts a stream on which nothing moves for that long. */
  request(req: ProxyRequest, ctx: RequestContext, timeoutMs: number, streamIdleMs = 0): Promise<ProxyResponse> {
    this.active++;
    this.total++;
    const x = new Exchange(this, req, ctx, timeoutMs, streamIdleMs);
    return new Promise<ProxyResponse>((resolve, reject) => {
      x.resolve = resolve;
      x.reject = reject;
      this.dispatch(x);
    });
  }

  /**
   * Opens a CONNECT stream (RFC 9113 8.5: `:method CONNECT`, `:authority host:port`, no `:scheme` or
   * `:path`) with the regular `fields`, for a TCP tunnel; the caller reads the answer (its
   * onHeaders). Its session stays open while it is: the pool's onClose of the stream counts it, so
   * whoever takes the stream over keeps calling the onClose it found. Rejects with the mesh error of
   * a session that cannot be opened (connect, mTLS), or UPSTREAM_RESET.
   */
  connect(authority: string, fields: readonly string[]): Promise<H2Stream> {
    return new Promise<H2Stream>((resolve, reject) => this.dispatch(new TunnelOpen(this, [':method', 'CONNECT', ':authority', authority, ...fields], resolve, reject)));
  }

  /** @internal Starts `x` on a session with room, or queues it until one has room (opening one if allowed). */
  dispatch(x: Waiter): void {
    const s = this.sessionWithRoom();
    if (s !== null) return x.start(s);
    this.waiting.push(x);
    // Behind streams of a full session (not a connect), the wait counts against the head timeout.
    x.queued(this.sessions.some(isReady));
    this.maybeOpen();
  }

  /** @internal A queued exchange gave up. */
  unqueue(x: Waiter): void {
    const i = this.waiting.indexOf(x);
    if (i !== -1) this.waiting.splice(i, 1);
  }

  private sessionWithRoom(): Session | null {
    const sessions = this.sessions;
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i]!;
      if (!s.ready) continue;
      // Opened before this proxy's certificate (or its roots) changed, or in plaintext before it had
      // one: it drains, and a new session presents the current certificate.
      if (this.opts.tls != null && s.context !== this.opts.tls.context()) {
        this.retire(s);
        i--;
        continue;
      }
      if (s.hasRoom()) return s;
    }
    return null;
  }

  private maybeOpen(): void {
    if (this.waiting.length === 0 || this.connecting > 0 || this.sessions.length >= MAX_SESSIONS) return;
    this.connecting++;
    const context = this.opts.tls?.context() ?? null;
    if (context === null) {
      this.sessions.push(new Session(this, tcpConnect({ host: this.host, port: this.port, noDelay: true }), null, this.opts.connectTimeoutMs));
      return;
    }
    // A session resumed under an older certificate would present that certificate's identity.
    if (this.tlsSessionContext !== context) this.tlsSession = undefined;
    let session: Session | null = null;
    const socket = tlsConnect({
      host: this.host,
      port: this.port,
      secureContext: context,
      session: this.tlsSession,
      ALPNProtocols: ['h2'],
      checkServerIdentity: expectSpiffeId(this.opts.tls!.peerIdentity, (presented) => session?.noteWrongPeer(presented)),
    });
    socket.setNoDelay(true);
    socket.on('session', (t: Buffer) => {
      this.tlsSession = t;
      this.tlsSessionContext = context;
    });
    session = new Session(this, socket, context, this.opts.connectTimeoutMs);
    this.sessions.push(session);
  }

  /** @internal `s` got the peer's SETTINGS: waiting exchanges start on it. */
  sessionReady(s: Session): void {
    this.connecting--;
    this.drain();
    if (this.closed) this.retire(s);
    else if (s.conn!.activeStreams === 0) s.idle(this.opts.idleTimeoutMs);
  }

  /** @internal `s` never became usable: exchanges waiting for a session fail with `err`, unless another can take them. */
  sessionFailed(s: Session, err: MeshError, countFailure: boolean): void {
    const i = this.sessions.indexOf(s);
    if (i === -1) return;
    this.sessions.splice(i, 1);
    this.connecting--;
    if (countFailure) this.connectFailures++;
    for (const other of this.sessions) if (other.ready && !other.conn!.closed) return; // they wait for its streams
    for (const x of this.waiting.splice(0)) x.finish(err);
  }

  /** @internal Takes `s` out of the pool: no new streams; it goes away once its streams end. */
  retire(s: Session): void {
    const i = this.sessions.indexOf(s);
    if (i !== -1) {
      this.sessions.splice(i, 1);
      if (!s.ready) this.connecting--;
    }
    if (s.retired) return;
    s.retired = true;
    const conn = s.conn;
    if (conn !== null && conn.activeStreams === 0) conn.goaway();
    // A session going away may leave waiting exchanges with nowhere to go.
    this.maybeOpen();
  }

  /** @internal A stream of `s` closed: a waiting exchange may take its place. */
  streamClosed(s: Session): void {
    if (this.waiting.length > 0) this.drain();
    if (s.conn!.activeStreams === 0) s.idle(this.opts.idleTimeoutMs);
  }

  /** Starts waiting exchanges while sessions have room; opens another session for the rest. */
  private drain(): void {
    const waiting = this.waiting;
    while (waiting.length > 0) {
      const s = this.sessionWithRoom();
      if (s === null) break;
      waiting.shift()!.start(s);
    }
    this.maybeOpen();
  }

  /** Closes the sessions once their streams end. */
  close(): void {
    this.closed = true;
    for (const s of [...this.sessions]) if (s.ready) this.retire(s);
  }
}

/** Why request() threw: a head over the upstream's header list limit (not sent; the caller's
 *  request, not the endpoint, is at fault), else the session failing under it. */
function requestFailed(key: string, err: unknown): MeshError {
  if (err instanceof H2HeadTooLarge) return new MeshError('HEADERS_OVER_PEER_LIMIT', `HTTP/2 to ${key}: ${err.message}`);
  return new MeshError('UPSTREAM_RESET', `HTTP/2 to ${key}: ${(err as Error).message}`);
}

/** A CONNECT stream to open on the first session with room (no timer: the tunnel's dial has its own). */
class TunnelOpen implements Waiter {
  constructor(
    private readonly pool: WeftHttp2Pool,
    private readonly fields: readonly string[],
    private readonly resolve: (stream: H2Stream) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  queued(): void {}

  start(s: Session): void {
    let stream: H2Stream;
    try {
      stream = s.conn!.request(this.fields, false);
    } catch (err) {
      return this.finish(requestFailed(this.pool.key, err));
    }
    const pool = this.pool;
    stream.onClose = () => pool.streamClosed(s);
    this.resolve(stream);
  }

  finish(err: Error): void {
    this.reject(err);
  }
}

/**
 * One exchange: the request as HEADERS (+ DATA), the response head and body, timers, the retry of a
 * stream the server never processed. It is the request body's sink (data/end/error) and the
 * response body's flow (pause/resume/abort).
 */
class Exchange implements BodySink, BodyFlow, Waiter {
  resolve!: (res: ProxyResponse) => void;
  reject!: (err: Error) => void;
  private readonly pool: WeftHttp2Pool;
  private readonly req: ProxyRequest;
  private readonly ctx: RequestContext;
  private readonly timeoutMs: number;
  private readonly streamIdleMs: number;
  /** The request body being sent: the request's, or after a retry the copy sent again. */
  private body: Body | null;
  private retried = false;
  private session: Session | null = null;
  private stream: H2Stream | null = null;
  /** The response head was handed over or the exchange failed: `resolve`/`reject` are spent. */
  private answered = false;
  /** No longer counted in the pool's `active`. */
  private released = false;
  private response: Body | null = null;
  private timer: NodeJS.Timeout | null = null;
  private idle: NodeJS.Timeout | null = null;
  /** The copy kept for a replay; null once the answer began or the body outgrew REPLAY_MAX_BYTES. */
  private replay: Replay | null = null;
  /** While the stream is not open yet: what the body delivered (null: deliver to the stream). */
  private early: Buffer[] | null = null;
  private earlyEnded = false;
  private earlyFailed = false;
  private earlyTrailers: string[] | null = null;
  /** The socket's bytesRead when the stream opened: whether the peer sent anything since. */
  private readMark = 0;
  private abortHooked = false;

  constructor(pool: WeftHttp2Pool, req: ProxyRequest, ctx: RequestContext, timeoutMs: number, streamIdleMs: number) {
    this.pool = pool;
    this.req = req;
    this.ctx = ctx;
    this.timeoutMs = timeoutMs;
    this.streamIdleMs = streamIdleMs;
    this.body = req.body;
  }

  /** Waiting for a session with room: the client may leave; `behindStreams`: the head timeout runs. */
  queued(behindStreams: boolean): void {
    this.hookAbort();
    if (behindStreams && this.timeoutMs > 0 && this.timer === null) this.timer = setTimeout(onHeadTimeout, this.timeoutMs, this);
  }

  private hookAbort(): void {
    if (this.abortHooked) return;
    this.abortHooked = true;
    this.ctx.abortHandlers.push((err) => this.cancel(err instanceof MeshError ? err : new MeshError('UPSTREAM_RESET', err.message)));
  }

  /** Opens the stream on `s` and sends the request head, and whatever of the body is in already. */
  start(s: Session): void {
    const ctx = this.ctx;
    if (ctx.aborted !== null) return this.finish(ctx.aborted);
    const req = this.req;
    const body = this.body;
    const fields: string[] = [':method', req.method, ':scheme', 'http', ':authority', req.authority, ':path', req.path];
    const headers = req.headers;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (CONNECTION_SPECIFIC.has(name) || (name === 'te' && value.toLowerCase() !== 'trailers') || (name === 'content-length' && body !== null)) continue;
      fields.push(name, value);
    }
    if (body !== null && body.length >= 0) fields.push('content-length', String(body.length));
    // What the body holds already is taken before the stream opens: a body complete by now (from an
    // HTTP/1.1 client, a small body read with its head) goes as HEADERS + DATA with END_STREAM.
    let whole = false;
    if (body !== null) {
      this.early = [];
      body.pipe(this);
      whole = this.earlyEnded && !this.earlyFailed && this.earlyTrailers === null;
    }
    const endStream = body === null || (whole && this.early!.length === 0);
    let stream: H2Stream;
    try {
      stream = s.conn!.request(fields, endStream);
    } catch (err) {
      this.early = null;
      return this.finish(requestFailed(this.pool.key, err));
    }
    this.session = s;
    this.stream = stream;
    this.readMark = s.socket.bytesRead;
    ctx.upstreamHost = this.pool.key;
    stream.onHeaders = (fields, endStream) => this.onHead(fields, endStream);
    stream.onEnd = (trailers) => this.response?.end(trailers);
    stream.onClose = (code) => this.onClose(code);
    if (this.timeoutMs > 0 && this.timer === null) this.timer = setTimeout(onHeadTimeout, this.timeoutMs, this);
    // Stream idle: refreshed whenever a byte moves either way; a response held up by a slow client does not count.
    if (this.streamIdleMs > 0) this.idle = setTimeout(onStreamIdle, this.streamIdleMs, this);
    this.hookAbort();
    if (body === null) return;
    // A copy of a small request body, kept until the answer begins: a stream the server never
    // processed (REFUSED_STREAM, e.g. it was going away) is sent again on a new session.
    this.replay = this.retried ? null : { chunks: [], bytes: 0, ended: false, trailers: null };
    const chunks = this.early!;
    this.early = null;
    if (whole) {
      const last = chunks.length - 1;
      for (let i = 0; i < last; i++) this.data(chunks[i]!);
      if (last >= 0) this.note(chunks[last]!);
      this.noteEnd(null);
      if (!endStream) stream.end(chunks[last]);
      return;
    }
    for (let i = 0; i < chunks.length; i++) this.data(chunks[i]!);
    if (this.earlyFailed) this.error();
    else if (this.earlyEnded) this.end(this.earlyTrailers);
  }

  // ---- The request body's sink ----------------------------------------------------------------

  data(c: Buffer): boolean {
    const early = this.early;
    if (early !== null) {
      early.push(c);
      return true;
    }
    this.note(c);
    const stream = this.stream!;
    if (stream.write(c)) return true;
    stream.onDrain ??= () => this.body?.resume();
    return false;
  }

  end(trailers: string[] | null): void {
    if (this.early !== null) {
      this.earlyEnded = true;
      this.earlyTrailers = trailers;
      return;
    }
    this.noteEnd(trailers);
    this.stream!.end(null, trailers);
  }

  error(): void {
    if (this.early !== null) {
      this.earlyFailed = true;
      return;
    }
    const stream = this.stream!;
    if (!stream.closed) stream.reset(ErrorCode.CANCEL);
  }

  /** Keeps `c` for a replay and marks the stream active. */
  private note(c: Buffer): void {
    const replay = this.replay;
    if (replay !== null) {
      replay.bytes += c.length;
      if (replay.bytes > REPLAY_MAX_BYTES) this.replay = null;
      else replay.chunks.push(c);
    }
    if (this.idle !== null) this.idle.refresh();
  }

  private noteEnd(trailers: string[] | null): void {
    const replay = this.replay;
    if (replay !== null) {
      replay.ended = true;
      replay.trailers = trailers;
    }
  }

  // ---- The response body's flow ---------------------------------------------------------------

  pause(): void {
    this.stream?.pause();
  }

  resume(): void {
    this.stream?.resume();
  }

  abort(): void {
    const stream = this.stream;
    if (stream !== null && !stream.closed) stream.reset(ErrorCode.CANCEL);
  }

  // ---- The stream ------------------------------------------------------------------------------

  private onHead(fields: string[], endStream: boolean): void {
    const status = Number(fields[1]); // the connection checked: `:status` comes first
    if (this.idle !== null) this.idle.refresh();
    if (this.answered) return;
    if (status < 200) {
      // Interim answers (100 Continue to an `Expect: 100-continue`, 103) go to a client that can take them.
      const interim = this.ctx.interim;
      if (interim !== null) {
        regularFields(fields, false);
        interim(status, fields);
      }
      return;
    }
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    // Content-Length is framing, written again by whoever sends the body on; only a response to HEAD
    // and a 304 keep theirs (the length a GET would have had).
    const declared = regularFields(fields, this.req.method !== 'HEAD' && status !== 304);
    const headers = fields;
    this.answered = true;
    this.replay = null;
    if (endStream) {
      this.release();
      this.resolve({ status, headers, body: null });
      return;
    }
    const response = (this.response = new Body(declared, this));
    this.stream!.onData = (c) => {
      if (this.idle !== null) this.idle.refresh();
      response.push(c);
    };
    this.resolve({ status, headers, body: response });
  }

  private onClose(code: number): void {
    this.clearTimers();
    const s = this.session!;
    if (!this.answered) {
      const again = this.body === null ? (this.retried ? null : NO_BODY_REPLAY) : this.replay;
      if (again !== null && again.ended && this.ctx.aborted === null && (code === ErrorCode.REFUSED_STREAM || this.lostUnread(s))) {
        this.retry(again, s, code);
      } else {
        const why = code === ErrorCode.REFUSED_STREAM || !s.socket.destroyed ? `reset the HTTP/2 stream before answering (code ${code})` : 'closed the HTTP/2 connection before answering';
        this.finish(new MeshError('UPSTREAM_RESET', `${this.pool.key} ${why}`));
      }
    } else if (this.response !== null) {
      if (!this.response.done) this.response.fail(new MeshError('UPSTREAM_RESET', `${this.pool.key} reset the HTTP/2 stream mid-response (code ${code})`));
      this.release();
    }
    this.pool.streamClosed(s);
  }

  /**
   * The connection died under the stream with not a byte from the peer since it opened, and the
   * method is idempotent: the server cannot have answered, and seeing it twice is harmless.
   */
  private lostUnread(s: Session): boolean {
    return s.socket.destroyed && s.socket.bytesRead === this.readMark && IDEMPOTENT.has(this.req.method);
  }

  /** Sends the request again on another session (once): `s` refused it or died before reading it. */
  private retry(again: Replay, s: Session, code: number): void {
    this.retried = true;
    this.stream = null;
    this.session = null;
    this.replay = null;
    if (this.body !== null) {
      const b = new Body(this.body.length);
      for (const c of again.chunks) b.push(c);
      b.end(again.trailers);
      this.body = b;
    }
    // As Http2Pool: a session that refused a stream takes no new ones.
    if (code === ErrorCode.REFUSED_STREAM) this.pool.retire(s);
    this.pool.dispatch(this);
  }

  headTimeout(): void {
    this.timer = null;
    this.cancel(new MeshError('UPSTREAM_TIMEOUT', `no response from ${this.pool.key} within ${this.timeoutMs} ms`));
  }

  streamIdle(): void {
    if (this.response !== null && this.response.paused) {
      this.idle!.refresh();
      return;
    }
    this.idle = null;
    this.cancel(new MeshError('STREAM_IDLE_TIMEOUT', `upstream ${this.pool.key} ${this.answered ? 'sent no response bytes' : 'sent no response'} for ${this.streamIdleMs} ms (stream idle timeout)`));
  }

  /** Gives up (timeout, the client left): the stream is reset with CANCEL. */
  private cancel(err: MeshError): void {
    if (this.stream === null) {
      // Still waiting for a session.
      if (this.answered) return;
      this.pool.unqueue(this);
      return this.finish(err);
    }
    this.clearTimers();
    this.body?.abort(err);
    if (!this.answered) {
      this.answered = true;
      this.release();
      this.reject(err);
    } else {
      this.response?.fail(err);
    }
    const stream = this.stream;
    if (!stream.closed) stream.reset(ErrorCode.CANCEL);
  }

  /** @internal Fails the exchange before any answer. */
  finish(err: Error): void {
    if (this.answered) return;
    this.answered = true;
    this.clearTimers();
    this.release();
    this.body?.abort(err);
    this.reject(err);
  }

  private release(): void {
    if (!this.released) {
      this.released = true;
      this.pool.active--;
    }
  }

  private clearTimers(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.idle !== null) {
      clearTimeout(this.idle);
      this.idle = null;
    }
  }
}

/**
 * Compacts a response head in place to its regular fields (pseudo-fields and Host left out;
 * `dropLength`: content-length too); returns its declared content-length (-1: none).
 */
function regularFields(fields: string[], dropLength: boolean): number {
  let declared = -1;
  let w = 0;
  for (let r = 0; r < fields.length; r += 2) {
    const name = fields[r]!;
    if (name.charCodeAt(0) === 0x3a || name === 'host') continue;
    if (name === 'content-length') {
      const n = Number(fields[r + 1]);
      if (Number.isSafeInteger(n) && n >= 0) declared = n;
      if (dropLength) continue;
    }
    fields[w++] = name;
    fields[w++] = fields[r + 1]!;
  }
  fields.length = w;
  return declared;
}
