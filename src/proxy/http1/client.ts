/**
 * The upstream side of HTTP/1.1: a pool of keep-alive connections to one endpoint, each carrying
 * one exchange at a time. A connection returns to the pool only when both the request and the
 * response were complete and the server did not ask to close.
 */
import { hostPort, type ConnectionLimit } from '../upstream/upstream-pool.js';
import { HEALTH_CHECK_ROUTE } from '../message.js';
import { rearm } from '../rearm.js';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type SecureContext } from 'node:tls';
import { expectSpiffeId } from '../tls/peer-identity.js';
import { sharedReads } from './shared-read.js';
import { writeInTurn } from './batch-write.js';
import { MeshError } from '../../core/errors.js';
import { Body, type BodySink } from '../body.js';
import type { ProxyRequest, ProxyResponse, RequestContext } from '../message.js';
import {
  ChunkedDecoder, ParseError, defaultHeadLimits, findHeadEnd, parseResponseHead, type ResponseHead,
} from './parse.js';
import { BODYLESS_RESPONSE_FRAMING, JOIN_BODY_MAX, RESPONSE_FRAMING, headerLines, stripHopByHop, upgradeValue, writeChunk, writeHeadAndBody, writeLastChunk } from './wire.js';

/** Settings of one endpoint's pool. */
export interface PoolOptions {
  connectTimeoutMs: number;
  /** Most idle connections kept. */
  maxIdle: number;
  /** An idle connection unused this long is closed. */
  idleTimeoutMs: number;
  /**
   * Mutual TLS to the endpoint's proxy: the SPIFFE ID its certificate must carry, and this proxy's
   * client context (read at each connect, so a renewed certificate is used from then on). When the
   * context is null (no certificate yet, or mTLS off) connections are plaintext.
   */
  tls?: { peerIdentity: string; context: () => SecureContext | null } | null;
}

const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Keep-alive connections to one `host:port`. */
export class Http1Pool {
  readonly host: string;
  readonly port: number;
  readonly key: string;
  private readonly opts: PoolOptions;
  private readonly idle: UpstreamConnection[] = [];
  private closed = false;
  /** Exchanges in flight (read by least-request balancing). */
  active = 0;
  /** Exchanges started, and connect failures, since the pool was made. */
  total = 0;
  connectFailures = 0;
  /** Connections open or opening, until their socket closes: what `maxConnections` counts. */
  connections = 0;
  /** The circuit breaker of the cluster that uses this pool, or null: set by the cluster. */
  connectionLimit: ConnectionLimit | null = null;
  private readonly onConnectionClose = (): void => {
    this.connections--;
    this.connectionLimit?.connectionClosed();
  };

  constructor(host: string, port: number, opts: PoolOptions) {
    this.host = host;
    this.port = port;
    this.key = hostPort(host, port);
    this.opts = opts;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /**
   * Sends `req` and resolves with the response head; the body streams after. `streamIdleMs` (0: none)
   * cuts the exchange when no byte moves either way for that long (STREAM_IDLE_TIMEOUT).
   */
  request(req: ProxyRequest, ctx: RequestContext, timeoutMs: number, streamIdleMs = 0): Promise<ProxyResponse> {
    this.active++;
    this.total++;
    let released = false;
    const done = (): void => {
      if (!released) {
        released = true;
        this.active--;
      }
    };
    // The common case, a current idle connection, goes straight to it: no async frame per request.
    let conn: UpstreamConnection | undefined;
    try {
      conn = ctx.aborted === null ? this.takeIdle() : undefined;
    } catch (err) {
      done();
      return Promise.reject(err);
    }
    if (conn !== undefined) return conn.exchange(req, ctx, timeoutMs, done, true, streamIdleMs);
    return this.requestSlowly(req, ctx, timeoutMs, streamIdleMs, done);
  }

  /** The newest idle connection opened under this proxy's current certificate, or undefined. */
  private takeIdle(): UpstreamConnection | undefined {
    for (;;) {
      const conn = this.idle.pop();
      if (conn === undefined || this.opts.tls == null || conn.context === this.opts.tls.context()) return conn;
      // Opened before this proxy's certificate (or its roots) changed, or in plaintext before it had
      // one: a new connection presents the current certificate, as the peer would require.
      conn.destroy();
    }
  }

  /**
   * `request` when no idle connection could be taken at once: waits for one under the cluster's
   * `maxConnections`, or opens one. Also where a request goes again after its pooled connection
   * turned out stale (`done` already counted it). Only for `request` and its connections: `done` must
   * be the once-only callback that counts the request down.
   */
  async requestSlowly(req: ProxyRequest, ctx: RequestContext, timeoutMs: number, streamIdleMs: number, done: () => void): Promise<ProxyResponse> {
    try {
      let conn = this.takeIdle();
      let counted = false;
      if (conn === undefined) {
        const limit = ctx.route === HEALTH_CHECK_ROUTE ? null : this.connectionLimit;
        if (limit !== null && !limit.mayOpen()) {
          const handed = await this.waitForConnection(limit, ctx, timeoutMs);
          if (handed === null) counted = true;
          else conn = handed;
        }
      }
      if (conn !== undefined) {
        if (ctx.aborted !== null) {
          this.release(conn);
          throw ctx.aborted;
        }
        return await conn.exchange(req, ctx, timeoutMs, done, true, streamIdleMs);
      }
      const fresh = await this.open(counted);
      if (ctx.aborted !== null) {
        // Gave up while connecting (a timeout, or the client left): keep the connection, send nothing.
        this.release(fresh);
        throw ctx.aborted;
      }
      return await fresh.exchange(req, ctx, timeoutMs, done, false, streamIdleMs);
    } catch (err) {
      done();
      throw err;
    }
  }

  /** The last TLS session with this endpoint, for resumption (a 1-RTT handshake without signatures). */
  private tlsSession: Buffer | undefined;
  private tlsSessionContext: SecureContext | null = null;

  /**
   * Waits, under the cluster's `maxConnections`, until a connection of this pool is released to this
   * request (resolves with it) or one may be opened (resolves null, with the connection counted
   * already). Refused at once with CIRCUIT_OPEN when `maxPendingRequests` already wait; a wait cut by
   * `timeoutMs` (the try's timeout) is CIRCUIT_OPEN too: nothing was sent to the endpoint.
   */
  private waitForConnection(limit: ConnectionLimit, ctx: RequestContext, timeoutMs: number): Promise<UpstreamConnection | null> {
    if (ctx.aborted !== null) return Promise.reject(ctx.aborted);
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        const i = this.waiters.indexOf(waiter);
        if (i !== -1) this.waiters.splice(i, 1);
        return true;
      };
      const waiter: Http1Waiter = {
        since: performance.now(),
        open: () => {
          if (!settle()) return;
          this.connections++;
          resolve(null);
        },
        take: (conn) => {
          if (settle()) resolve(conn);
          else this.release(conn);
        },
      };
      const refused = limit.admitPending();
      if (refused !== null) {
        reject(refused);
        return;
      }
      this.waiters.push(waiter);
      // An idle connection elsewhere in the cluster holds a slot nobody uses: close it for this request.
      limit.reclaimIdle(this);
      const giveUp = (err: Error): void => {
        if (settle()) reject(err);
      };
      if (timeoutMs > 0) {
        timer = setTimeout(
          () => giveUp(new MeshError('CIRCUIT_OPEN', `no connection to ${this.key} within ${timeoutMs} ms: the cluster's maxConnections (${limit.maxConnections}) are all busy`)),
          timeoutMs,
        );
      }
      ctx.abortHandlers.push(giveUp);
    });
  }

  /** Requests waiting for a connection (the cluster's `maxConnections` are busy), oldest first. */
  private readonly waiters: Http1Waiter[] = [];

  get pendingRequests(): number {
    return this.waiters.length;
  }

  /** When the oldest request waiting here began to wait, or Infinity. */
  get oldestWaiter(): number {
    return this.waiters.length === 0 ? Infinity : this.waiters[0]!.since;
  }

  /** Lets the oldest request waiting here open a connection (a slot of the cluster freed up). */
  wakeOne(): void {
    this.waiters[0]?.open();
  }

  /** Closes one idle connection, if there is one: true when it did. */
  closeOneIdle(): boolean {
    const conn = this.idle.shift();
    if (conn === undefined) return false;
    conn.destroy();
    return true;
  }

  /** Opens a connection; `counted` when a waiting request already counted it against `maxConnections`. */
  private open(counted: boolean): Promise<UpstreamConnection> {
    if (!counted) this.connections++;
    const context = this.opts.tls?.context() ?? null;
    if (context === null) {
      const socket: Socket = connect({ host: this.host, port: this.port, noDelay: true, onread: sharedReads(() => socket) });
      socket.once('close', this.onConnectionClose);
      return this.established(socket, null, (err) => new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${this.key} failed: ${err.code ?? err.message}`));
    }
    // A session resumed under an older certificate would present that certificate's identity.
    if (this.tlsSessionContext !== context) this.tlsSession = undefined;
    const expected = this.opts.tls!.peerIdentity;
    let wrongPeer: string | null = null;
    const socket = tlsConnect({
      host: this.host,
      port: this.port,
      secureContext: context,
      session: this.tlsSession,
      // The peer is named by its SPIFFE ID, not by a host name.
      checkServerIdentity: expectSpiffeId(expected, (presented) => (wrongPeer = presented)),
    });
    socket.once('close', this.onConnectionClose);
    socket.setNoDelay(true);
    socket.on('session', (s: Buffer) => {
      this.tlsSession = s;
      this.tlsSessionContext = context;
    });
    return this.established(socket, context, (err) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') {
        return new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${this.key} failed: ${err.code}`);
      }
      this.tlsSession = undefined;
      const why = wrongPeer !== null ? `the peer's certificate is for ${wrongPeer}, not ${expected}` : (err.code ?? err.message);
      return new MeshError('UPSTREAM_TLS_FAILURE', `mTLS to ${this.key} failed: ${why}`);
    });
  }

  /** Resolves once `socket` is connected (plaintext: `context` null) or its handshake done, within the connect timeout. */
  private established(socket: Socket, context: SecureContext | null, failure: (err: NodeJS.ErrnoException) => MeshError): Promise<UpstreamConnection> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        this.connectFailures++;
        reject(new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${this.key} timed out after ${this.opts.connectTimeoutMs} ms`));
      }, this.opts.connectTimeoutMs);
      socket.once(context === null ? 'connect' : 'secureConnect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new UpstreamConnection(socket, this, context));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        this.connectFailures++;
        reject(failure(err));
      });
    });
  }

  /** Called by a connection whose exchange ended cleanly. */
  release(conn: UpstreamConnection): void {
    const waiter = this.closed ? undefined : this.waiters[0];
    if (waiter !== undefined) {
      conn.idleSince(0);
      waiter.take(conn);
      return;
    }
    if (this.connectionLimit?.waitingElsewhere(this) === true) {
      // A request for another endpoint of the cluster waits for a slot: this connection's closing frees one.
      conn.destroy();
      return;
    }
    if (this.closed || this.idle.length >= this.opts.maxIdle) {
      conn.destroy();
      return;
    }
    conn.idleSince(this.opts.idleTimeoutMs);
    this.idle.push(conn);
  }

  /** Called by an idle connection that closed or timed out. */
  forget(conn: UpstreamConnection): void {
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
  }

  /** Closes idle connections now; busy ones close when their exchange ends. */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.destroy();
  }
}

/** A request of an Http1Pool waiting for a connection: it takes a released one, or opens one. */
interface Http1Waiter {
  /** When it began to wait (performance.now()): the cluster wakes the oldest first. */
  readonly since: number;
  open(): void;
  take(conn: UpstreamConnection): void;
}

const enum Phase {
  Idle,
  /** Waiting for the response head. */
  Head,
  Body,
  Dead,
}

/** One upstream connection. */
class UpstreamConnection {
  private readonly socket: Socket;
  private readonly pool: Http1Pool;
  private phase = Phase.Idle;
  private buf: Buffer | null = null;
  private resolve: ((res: ProxyResponse) => void) | null = null;
  private reject: ((err: Error) => void) | null = null;
  private ctx: RequestContext | null = null;
  private isHead = false;
  private idempotent = false;
  private reused = false;
  private requestDone = true;
  private responseDone = true;
  private keepAlive = true;
  private body: Body | null = null;
  private bodyRemaining = 0;
  private untilClose = false;
  private decoder: ChunkedDecoder | null = null;
  /**
   * The exchange's timeout and the pool's idle timeout: like the stream idle timer below, one Timeout
   * each for the connection's life, re-armed in place, and a firing that finds nothing to time (the
   * exchange over, the connection taken) does nothing.
   */
  private exchangeTimer: NodeJS.Timeout | null = null;
  private exchangeTimerMs = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private idleTimerMs = 0;
  /** The idle timeout of the stay in the pool now (0: none, or not in the pool). */
  private idleMs = 0;
  /**
   * The stream idle timer, kept for the connection's life and refreshed as bytes move (a request that
   * arrives on a reused connection allocates none); when it fires between exchanges it does nothing.
   */
  private streamTimer: NodeJS.Timeout | null = null;
  private streamTimerMs = 0;
  /** The stream idle timeout of the exchange in flight (0: none). */
  private streamIdleMs = 0;
  private onDone: (() => void) | null = null;
  /** The request in flight and its timeout, kept to send it again if this connection proves stale. */
  private req: ProxyRequest | null = null;
  private timeoutMs = 0;
  private requestBody: Body | null = null;
  private gen = 0;
  /** The `Upgrade` value sent with the request in flight, or null. */
  private upgrade: string | null = null;

  /** The client context of its mutual TLS (null: plaintext). */
  readonly context: SecureContext | null;

  constructor(socket: Socket, pool: Http1Pool, context: SecureContext | null) {
    this.socket = socket;
    this.pool = pool;
    this.context = context;
    socket.on('data', this.onDataListener);
    socket.on('error', this.onErrorListener);
    socket.on('close', this.onCloseListener);
    socket.on('end', this.onEndListener);
  }

  // Kept as fields so a switch of protocols can remove exactly these.
  private readonly onDataListener = (c: Buffer): void => this.onData(c);
  private readonly onErrorListener = (err: Error): void => this.fail(err);
  private readonly onCloseListener = (): void => this.fail(null);
  private readonly onEndListener = (): void => this.onEnd();

  idleSince(ms: number): void {
    this.phase = Phase.Idle;
    this.idleMs = ms;
    if (ms <= 0) return;
    this.idleTimer = rearm(this.idleTimer, this.idleTimerMs, ms, this.onIdleTimeout);
    this.idleTimerMs = ms;
  }

  private readonly onIdleTimeout = (): void => {
    if (this.phase === Phase.Idle && this.idleMs > 0) this.destroy();
  };

  destroy(): void {
    this.phase = Phase.Dead;
    if (this.exchangeTimer !== null) clearTimeout(this.exchangeTimer);
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    if (this.streamTimer !== null) clearTimeout(this.streamTimer);
    this.socket.destroy();
    this.pool.forget(this);
  }

  /** Times the exchange starting now (`ms` 0: untimed). */
  private armExchangeTimer(ms: number): void {
    this.timeoutMs = ms;
    if (ms <= 0) return;
    this.exchangeTimer = rearm(this.exchangeTimer, this.exchangeTimerMs, ms, this.onExchangeTimeout);
    this.exchangeTimerMs = ms;
  }

  private readonly onExchangeTimeout = (): void => {
    // Re-armed at each exchange's start, so a firing during an exchange is that exchange's timeout.
    if (this.ctx !== null && this.timeoutMs > 0 && (this.phase === Phase.Head || this.phase === Phase.Body)) this.timeout(this.timeoutMs);
  };

  exchange(req: ProxyRequest, ctx: RequestContext, timeoutMs: number, onDone: () => void, reused: boolean, streamIdleMs = 0): Promise<ProxyResponse> {
    return new Promise((resolve, reject) => {
      this.idleMs = 0;
      this.armStreamTimer(streamIdleMs);
      this.buf = null;
      this.resolve = resolve;
      this.reject = reject;
      this.ctx = ctx;
      this.onDone = onDone;
      this.reused = reused;
      this.isHead = req.method === 'HEAD';
      this.idempotent = IDEMPOTENT.has(req.method);
      this.phase = Phase.Head;
      this.requestDone = req.body === null;
      this.responseDone = false;
      this.keepAlive = true;
      this.untilClose = false;
      this.decoder = null;
      this.body = null;
      this.requestBody = req.body;
      this.req = req;
      this.upgrade = req.upgrade ?? null;
      ctx.upstreamHost = this.pool.key;
      this.armExchangeTimer(timeoutMs);
      // The handler outlives the exchange; the generation keeps it from touching a later one.
      const gen = ++this.gen;
      ctx.abortHandlers.push((err) => {
        if (this.gen === gen && this.phase !== Phase.Idle) this.abort(err);
      });
      try {
        this.writeRequest(req);
      } catch (err) {
        // Rejected and counted as done like any failed exchange: `request` has no catch of its own.
        this.abort(err as Error);
      }
    });
  }

  /** Starts (or restarts) the stream idle timer for an exchange; `ms` 0 turns it off. */
  private armStreamTimer(ms: number): void {
    this.streamIdleMs = ms;
    if (ms <= 0) return;
    this.streamTimer = rearm(this.streamTimer, this.streamTimerMs, ms, this.onStreamIdle).unref();
    this.streamTimerMs = ms;
  }

  /** Bytes moved for the exchange in flight. */
  private progress(): void {
    if (this.streamIdleMs > 0) this.streamTimer?.refresh();
  }

  private readonly onStreamIdle = (): void => {
    if (this.phase !== Phase.Head && this.phase !== Phase.Body) return;
    if (this.streamIdleMs <= 0) return;
    // A response held up by a slow client is not the upstream's silence.
    if (this.body !== null && this.body.paused) {
      this.streamTimer!.refresh();
      return;
    }
    const what = this.phase === Phase.Head ? 'sent no response' : 'sent no response bytes';
    this.abort(new MeshError('STREAM_IDLE_TIMEOUT', `upstream ${this.pool.key} ${what} for ${this.streamIdleMs} ms (stream idle timeout)`));
  };

  private writeRequest(req: ProxyRequest): void {
    const socket = this.socket;
    const body = req.body;
    let s = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${req.authority}\r\n${headerLines(req.headers)}`;
    const chunked = body !== null && body.length < 0;
    if (body !== null) s += chunked ? 'transfer-encoding: chunked\r\n' : `content-length: ${body.length}\r\n`;
    if (this.upgrade !== null) s += `connection: upgrade\r\nupgrade: ${this.upgrade}\r\n`;
    if (body === null) {
      writeInTurn(socket, `${s}\r\n`, 'latin1');
      return;
    }
    const whole = !chunked && body.length <= JOIN_BODY_MAX ? body.takeWhole() : null;
    if (whole !== null) {
      writeHeadAndBody(socket, s, whole);
      this.requestDone = true;
      this.maybeRelease();
      return;
    }
    socket.cork();
    socket.write(`${s}\r\n`, 'latin1');
    let waiting = false;
    const sink: BodySink = {
      data: (chunk) => {
        if (this.phase === Phase.Dead) return true;
        const ok = chunked ? writeChunk(socket, chunk) : socket.write(chunk);
        this.progress();
        if (!ok && !waiting) {
          waiting = true;
          socket.once('drain', () => {
            waiting = false;
            body.resume();
          });
        }
        return ok;
      },
      end: (trailers) => {
        if (this.phase === Phase.Dead) return;
        if (chunked) writeLastChunk(socket, trailers);
        socket.uncork();
        this.requestDone = true;
        this.maybeRelease();
      },
      error: (err) => {
        // The client's body broke off: the upstream can never see a complete request.
        this.abort(err instanceof MeshError ? err : new MeshError('BAD_REQUEST', err.message));
      },
    };
    body.pipe(sink);
    // Flush the head with the first bytes, but never hold them past this tick. A sink already full
    // (a complete body over the high-water mark) waits for a 'drain' only an uncorked socket emits.
    if (waiting) socket.uncork();
    else if (!body.done) process.nextTick(() => socket.uncork());
  }

  private onData(chunk: Buffer): void {
    this.progress();
    if (this.phase === Phase.Body) {
      this.feedBody(chunk, 0);
      return;
    }
    if (this.phase !== Phase.Head) {
      // Bytes with no request outstanding: the connection cannot be trusted any more.
      this.destroy();
      return;
    }
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    this.readHead();
  }

  private readHead(): void {
    while (this.phase === Phase.Head && this.buf !== null) {
      const buf = this.buf;
      const end = findHeadEnd(buf, 0);
      if (end === -1) {
        if (buf.length > defaultHeadLimits.maxHeadBytes) this.protocolError(new ParseError('UPSTREAM_PROTOCOL_ERROR', 'upstream response head too large'));
        return;
      }
      let head: ResponseHead;
      try {
        head = parseResponseHead(buf.toString('latin1', 0, end - 4));
      } catch (err) {
        this.protocolError(err as Error);
        return;
      }
      this.buf = end === buf.length ? null : buf.subarray(end);
      if (head.status < 200) {
        if (head.status === 101) {
          if (this.upgrade === null) {
            this.protocolError(new ParseError('UPSTREAM_PROTOCOL_ERROR', 'upstream switched protocols without an upgrade request'));
          } else {
            this.switchProtocols(head);
          }
          return;
        }
        stripHopByHop(head.headers, head.connection, RESPONSE_FRAMING);
        this.ctx?.interim?.(head.status, head.headers);
        continue;
      }
      this.startResponse(head);
    }
  }

  /**
   * The upstream answered 101 to our upgrade request: this connection leaves the pool for good and
   * becomes the response's upgraded stream. The exchange stays counted as active until it closes.
   */
  private switchProtocols(head: ResponseHead): void {
    const socket = this.socket;
    const resolve = this.resolve!;
    const protocol = upgradeValue(head.headers) ?? this.upgrade!;
    stripHopByHop(head.headers, head.connection, RESPONSE_FRAMING);
    const rest = this.buf;
    this.buf = null;
    this.resolve = null;
    this.reject = null;
    this.phase = Phase.Dead;
    // No longer an HTTP exchange: none of the connection's timers applies to the upgraded stream.
    if (this.exchangeTimer !== null) clearTimeout(this.exchangeTimer);
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    if (this.streamTimer !== null) clearTimeout(this.streamTimer);
    this.ctx = null;
    this.req = null;
    this.requestBody = null;
    socket.pause();
    socket.off('data', this.onDataListener);
    socket.off('error', this.onErrorListener);
    socket.off('close', this.onCloseListener);
    socket.off('end', this.onEndListener);
    // Whoever joins it adds its own; until then a reset must not crash the proxy.
    socket.on('error', () => {});
    const done = this.onDone;
    this.onDone = null;
    if (done !== null) socket.once('close', done);
    this.pool.forget(this);
    resolve({ status: 101, headers: head.headers, body: null, upgraded: { socket, protocol, rest } });
  }

  private startResponse(head: ResponseHead): void {
    const conn = head.connection;
    this.keepAlive = head.minor === 1 ? !(conn !== null && conn.includes('close')) : conn !== null && conn.includes('keep-alive');
    const bodyless = this.isHead || head.status === 204 || head.status === 304;
    stripHopByHop(head.headers, conn, bodyless ? BODYLESS_RESPONSE_FRAMING : RESPONSE_FRAMING);
    let body: Body | null = null;
    if (!bodyless && (head.chunked || head.contentLength !== 0)) {
      const length = head.chunked || head.contentLength === -1 ? -1 : head.contentLength;
      body = new Body(length, {
        pause: () => this.socket.pause(),
        resume: () => this.socket.resume(),
        abort: (err) => this.abort(err),
      });
      if (head.chunked) {
        const b = body;
        this.decoder = new ChunkedDecoder({ data: (c) => b.push(c), end: (t) => b.end(t) }, true);
      } else if (head.contentLength === -1) {
        this.untilClose = true;
        this.keepAlive = false;
      } else {
        this.bodyRemaining = head.contentLength;
      }
    }
    const resolve = this.resolve!;
    this.resolve = null;
    this.reject = null;
    this.body = body;
    if (body === null && this.buf !== null) {
      // Bytes after a response that has no body: the server and we disagree on framing.
      this.buf = null;
      this.keepAlive = false;
    }
    if (body === null) {
      this.phase = Phase.Idle;
      this.responseEnded();
    } else {
      this.phase = Phase.Body;
    }
    resolve({ status: head.status, headers: head.headers, body });
    if (this.phase === Phase.Body && this.buf !== null) {
      const rest = this.buf;
      this.buf = null;
      this.feedBody(rest, 0);
    }
  }

  private feedBody(chunk: Buffer, offset: number): void {
    const body = this.body!;
    if (this.decoder !== null) {
      let end: number;
      try {
        end = this.decoder.push(chunk, offset);
      } catch (err) {
        body.fail(err as Error);
        this.destroy();
        this.finishExchange();
        return;
      }
      if (end === -1) return;
      if (end < chunk.length) this.keepAlive = false; // bytes after the response: not reusable
      this.responseEnded();
      return;
    }
    if (this.untilClose) {
      body.push(offset === 0 ? chunk : chunk.subarray(offset));
      return;
    }
    const take = Math.min(this.bodyRemaining, chunk.length - offset);
    body.push(offset === 0 && take === chunk.length ? chunk : chunk.subarray(offset, offset + take));
    this.bodyRemaining -= take;
    if (this.bodyRemaining === 0) {
      if (offset + take < chunk.length) this.keepAlive = false;
      body.end(null);
      this.responseEnded();
    }
  }

  private responseEnded(): void {
    this.responseDone = true;
    this.body = null;
    this.decoder = null;
    this.finishExchange();
    this.maybeRelease();
  }

  private finishExchange(): void {
    this.ctx = null;
    this.req = null;
    const done = this.onDone;
    this.onDone = null;
    done?.();
  }

  private maybeRelease(): void {
    if (!this.requestDone || !this.responseDone || this.phase === Phase.Dead) return;
    this.requestBody = null;
    if (!this.keepAlive) {
      this.destroy();
      return;
    }
    if (this.socket.isPaused()) this.socket.resume();
    this.pool.release(this);
  }

  private onEnd(): void {
    if (this.phase === Phase.Body && this.untilClose) {
      this.body!.end(null);
      this.responseEnded();
      return;
    }
    this.fail(null);
  }

  private timeout(ms: number): void {
    this.abort(new MeshError('UPSTREAM_TIMEOUT', `upstream ${this.pool.key} did not answer within ${ms} ms`));
  }

  private protocolError(err: Error): void {
    this.abort(err instanceof MeshError ? err : new MeshError('UPSTREAM_PROTOCOL_ERROR', err.message));
  }

  /** Ends the exchange with `err`: before the response head it rejects, after it the body fails. */
  private abort(err: Error): void {
    if (this.phase === Phase.Dead) return;
    const reject = this.reject;
    const body = this.body;
    this.reject = null;
    this.resolve = null;
    this.destroy();
    this.requestBody?.abort(err);
    this.requestBody = null;
    if (reject !== null) reject(err);
    else if (body !== null) body.fail(err);
    this.finishExchange();
  }

  /** The socket errored or closed under us. */
  private fail(err: Error | null): void {
    if (this.phase === Phase.Dead) return;
    if (this.phase === Phase.Idle) {
      this.destroy();
      return;
    }
    const noResponseYet = this.phase === Phase.Head && this.buf === null;
    if (noResponseYet && this.reused && this.requestBody === null && this.idempotent) {
      // The server closed a kept-alive connection just as we reused it. It cannot have answered,
      // and an idempotent request is safe to send again even if it was seen.
      const resolve = this.resolve!;
      const reject = this.reject!;
      const req = this.req!;
      const ctx = this.ctx!;
      const done = this.onDone!;
      this.reject = null;
      this.resolve = null;
      this.onDone = null;
      this.req = null;
      this.ctx = null;
      this.destroy();
      // The same exchange goes on through another connection (already counted as active).
      this.pool.requestSlowly(req, ctx, this.timeoutMs, this.streamIdleMs, done).then(resolve, reject);
      return;
    }
    const detail = err === null ? 'closed the connection' : `reset the connection (${(err as NodeJS.ErrnoException).code ?? err.message})`;
    this.abort(new MeshError('UPSTREAM_RESET', `upstream ${this.pool.key} ${detail}`));
  }
}
