/**
 * The upstream side of HTTP/2: one multiplexed session per endpoint (cleartext with prior knowledge
 * to an app, or mutual TLS with ALPN `h2` to another proxy), every exchange a stream. A session that
 * fails, closes or is told to go away is replaced on the next request; streams in flight on it finish
 * or fail with it. Under the `h2` peer transport the session to another proxy also carries HTTP/1.1
 * requests (as streams) and TCP tunnels (as CONNECT streams, RFC 9113 8.5).
 */
import { hostPort } from '../upstream/upstream-pool.js';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';
import { connect as h2Connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { MeshError } from '../../core/errors.js';
import { Body, type BodySink } from '../body.js';
import { removeHeader, type ProxyRequest, type ProxyResponse, type RequestContext } from '../message.js';
import { expectSpiffeId } from '../tls/peer-identity.js';
import { fromH2Headers, toH2Headers } from './headers.js';

export interface Http2PoolOptions {
  connectTimeoutMs: number;
  /** A session with no stream for this long is closed. */
  idleTimeoutMs: number;
  /** Mutual TLS to the endpoint's proxy, as for HTTP/1.1 pools; a null context means cleartext. */
  tls?: { peerIdentity: string; context: () => SecureContext | null } | null;
}

const CANCEL = constants.NGHTTP2_CANCEL;
/** Request bodies up to this size are kept until the answer begins, to send again if the stream is refused. */
const REPLAY_MAX_BYTES = 64 * 1024;

const ignore = (): void => {};
// `session.request` options of one shape, with the priority fields Node would otherwise add to its
// copy of them on every request (a measurable share of the call's cost).
const END_STREAM = { endStream: true, waitForTrailers: false, weight: 16, parent: 0, exclusive: false, silent: false };
const NO_TRAILERS = { ...END_STREAM, endStream: false };
const WAIT_FOR_TRAILERS = { ...END_STREAM, endStream: false, waitForTrailers: true };
/** A request with no body can always be sent again. */
const NO_BODY_REPLAY: Replay = { chunks: [], bytes: 0, ended: true, trailers: null };

/** A copy of a request body kept to send it again (REFUSED_STREAM). */
interface Replay {
  chunks: Buffer[];
  bytes: number;
  ended: boolean;
  trailers: string[] | null;
}

/**
 * Writes a request body on its upstream stream with backpressure. Until the stream exists (`early`
 * set) it only collects what the body delivers.
 */
class RequestSink implements BodySink {
  trailers: string[] | null = null;
  /** The copy kept for a replay; null once the answer began or the body outgrew REPLAY_MAX_BYTES. */
  replay: Replay | null = null;
  private stream: ClientHttp2Stream | null = null;
  private idle: NodeJS.Timeout | null = null;
  private drainHooked = false;
  constructor(
    private readonly body: Body,
    public early: { chunks: Buffer[]; ended: boolean; trailers: string[] | null; err: Error | null } | null,
  ) {}

  attach(stream: ClientHttp2Stream, replay: Replay | null, idle: NodeJS.Timeout | null): void {
    this.stream = stream;
    this.replay = replay;
    this.idle = idle;
  }

  data(c: Buffer): boolean {
    const early = this.early;
    if (early !== null) {
      early.chunks.push(c);
      return true;
    }
    this.note(c);
    const stream = this.stream!;
    if (stream.write(c)) return true;
    if (!this.drainHooked) {
      this.drainHooked = true;
      stream.on('drain', () => this.body.resume());
    }
    return false;
  }

  /** Keeps `c` for a replay and marks the stream active. */
  note(c: Buffer): void {
    const replay = this.replay;
    if (replay !== null) {
      replay.bytes += c.length;
      if (replay.bytes > REPLAY_MAX_BYTES) this.replay = null;
      else replay.chunks.push(c);
    }
    this.idle?.refresh();
  }

  noteEnd(t: string[] | null): void {
    this.trailers = t;
    const replay = this.replay;
    if (replay !== null) {
      replay.ended = true;
      replay.trailers = t;
    }
  }

  end(t: string[] | null): void {
    const early = this.early;
    if (early !== null) {
      early.ended = true;
      early.trailers = t;
      return;
    }
    this.noteEnd(t);
    this.stream!.end();
  }

  error(): void {
    const early = this.early;
    if (early !== null) {
      early.err = new Error('request body failed');
      return;
    }
    const stream = this.stream!;
    if (!stream.closed) stream.close(CANCEL);
  }
}

/** One HTTP/2 session to `host:port`, shared by every exchange. */
export class Http2Pool {
  readonly host: string;
  readonly port: number;
  readonly key: string;
  private readonly opts: Http2PoolOptions;
  private session: ClientHttp2Session | null = null;
  private connecting: Promise<ClientHttp2Session> | null = null;
  private tlsSession: Buffer | undefined;
  private tlsSessionContext: SecureContext | null = null;
  /** The client context `session` was opened with (null: plaintext). */
  private sessionContext: SecureContext | null = null;
  private closed = false;
  /** CONNECT streams open on the session (TCP tunnels): they keep it from closing when idle. */
  private tunnels = 0;
  active = 0;
  total = 0;
  connectFailures = 0;

  constructor(host: string, port: number, opts: Http2PoolOptions) {
    this.host = host;
    this.port = port;
    this.key = hostPort(host, port);
    this.opts = opts;
  }

  /** Open sessions (0 or 1), for `/clusters`. */
  get idleCount(): number {
    return this.session !== null && this.active === 0 && this.tunnels === 0 ? 1 : 0;
  }

  /** As Http1Pool.request: `streamIdleMs` (0: none) cuts a stream on which nothing moves for that long. */
  async request(req: ProxyRequest, ctx: RequestContext, timeoutMs: number, streamIdleMs = 0): Promise<ProxyResponse> {
    this.active++;
    this.total++;
    let released = false;
    const done = (): void => {
      if (!released) {
        released = true;
        this.active--;
      }
    };
    try {
      const session = await this.sessionFor();
      if (ctx.aborted !== null) throw ctx.aborted;
      return await this.exchange(session, req, ctx, timeoutMs, done, false, streamIdleMs);
    } catch (err) {
      done();
      req.body?.abort(err as Error);
      throw err;
    }
  }

  private sessionFor(): Promise<ClientHttp2Session> {
    const s = this.session;
    if (s !== null && !s.closed && !s.destroyed) {
      // Opened before this proxy's certificate (or its roots) changed, or in plaintext before it had
      // one: it drains, and a new session presents the current certificate.
      if (this.opts.tls != null && this.sessionContext !== this.opts.tls.context()) {
        this.session = null;
        s.close();
      } else {
        return Promise.resolve(s);
      }
    }
    this.connecting ??= this.open().finally(() => (this.connecting = null));
    return this.connecting;
  }

  private open(): Promise<ClientHttp2Session> {
    const context = this.opts.tls?.context() ?? null;
    const expected = this.opts.tls?.peerIdentity ?? '';
    let wrongPeer: string | null = null;
    // A session resumed under an older certificate would present that certificate's identity.
    if (this.tlsSessionContext !== context) this.tlsSession = undefined;
    return new Promise((resolve, reject) => {
      const secure = context !== null;
      const session = h2Connect(`${secure ? 'https' : 'http'}://${this.key}`, {
        settings: { enablePush: false },
        // As the server side: room for many streams in flight on one session.
        maxSessionMemory: 64,
        createConnection: () => {
          if (!secure) return tcpConnect({ host: this.host, port: this.port, noDelay: true });
          const socket: TLSSocket = tlsConnect({
            host: this.host,
            port: this.port,
            secureContext: context,
            session: this.tlsSession,
            ALPNProtocols: ['h2'],
            checkServerIdentity: expectSpiffeId(expected, (presented) => (wrongPeer = presented)),
          });
          socket.setNoDelay(true);
          socket.on('session', (t: Buffer) => {
            this.tlsSession = t;
            this.tlsSessionContext = context;
          });
          return socket;
        },
      });
      const timer = setTimeout(() => session.destroy(new Error('timeout')), this.opts.connectTimeoutMs);
      const fail = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        this.connectFailures++;
        session.destroy();
        if (err.message === 'timeout') return reject(new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${this.key} timed out after ${this.opts.connectTimeoutMs} ms`));
        if (!secure || err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') {
          return reject(new MeshError('UPSTREAM_CONNECT_FAILURE', `connect to ${this.key} failed: ${err.code ?? err.message}`));
        }
        this.tlsSession = undefined;
        const why = wrongPeer !== null ? `the peer's certificate is for ${wrongPeer}, not ${expected}` : (err.code ?? err.message);
        reject(new MeshError('UPSTREAM_TLS_FAILURE', `mTLS to ${this.key} failed: ${why}`));
      };
      session.once('error', fail);
      session.once('connect', () => {
        clearTimeout(timer);
        session.off('error', fail);
        if (secure && (session.socket as TLSSocket).alpnProtocol !== 'h2') {
          session.destroy();
          this.connectFailures++;
          return reject(new MeshError('UPSTREAM_PROTOCOL_ERROR', `${this.key} did not agree to HTTP/2 (ALPN ${String((session.socket as TLSSocket).alpnProtocol)})`));
        }
        session.on('error', () => {});
        const forget = (): void => {
          if (this.session === session) this.session = null;
        };
        session.once('close', forget);
        session.once('goaway', forget);
        session.setTimeout(this.opts.idleTimeoutMs, () => {
          if (this.active === 0 && this.tunnels === 0) session.close();
        });
        session.unref();
        if (this.closed) session.close();
        else {
          this.session = session;
          this.sessionContext = context;
        }
        resolve(session);
      });
    });
  }

  private exchange(session: ClientHttp2Session, req: ProxyRequest, ctx: RequestContext, timeoutMs: number, done: () => void, retried = false, streamIdleMs = 0): Promise<ProxyResponse> {
    return new Promise((resolve, reject) => {
      const head: OutgoingHttpHeaders = toH2Headers(req.headers);
      head[':method'] = req.method;
      head[':path'] = req.path;
      head[':authority'] = req.authority;
      head[':scheme'] = 'http';
      const body = req.body;
      if (body !== null && body.length >= 0) head['content-length'] = body.length;
      // What the request body holds already is taken before the stream opens: a body complete by now
      // (from an HTTP/1.1 client, a small body read with its head) goes as HEADERS + DATA with
      // END_STREAM, with no wait for trailers (a 'wantTrailers' event and an empty frame a tick later)
      // it does not have. From an HTTP/2 client it rarely is: Node hands over its DATA after the handler started.
      let early: { chunks: Buffer[]; ended: boolean; trailers: string[] | null; err: Error | null } | null = null;
      let sink: RequestSink | null = null;
      if (body !== null) {
        early = { chunks: [], ended: false, trailers: null, err: null };
        sink = new RequestSink(body, early);
        body.pipe(sink);
        sink.early = null;
      }
      const whole = early !== null && early.err === null && early.ended && early.trailers === null;
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(head, body === null ? END_STREAM : whole ? NO_TRAILERS : WAIT_FOR_TRAILERS);
      } catch (err) {
        reject(new MeshError('UPSTREAM_RESET', `HTTP/2 to ${this.key}: ${(err as Error).message}`));
        return;
      }
      ctx.upstreamHost = this.key;
      let answered = false;
      let response: Body | null = null;
      const timer = timeoutMs > 0 ? setTimeout(() => fail(new MeshError('UPSTREAM_TIMEOUT', `no response from ${this.key} within ${timeoutMs} ms`)), timeoutMs) : null;
      // Stream idle: refreshed whenever a byte moves either way; a response held up by a slow client does not count.
      const idle =
        streamIdleMs > 0
          ? setTimeout(() => {
              if (response !== null && response.paused) {
                idle!.refresh();
                return;
              }
              fail(new MeshError('STREAM_IDLE_TIMEOUT', `upstream ${this.key} ${answered ? 'sent no response bytes' : 'sent no response'} for ${streamIdleMs} ms (stream idle timeout)`));
            }, streamIdleMs)
          : null;
      const fail = (err: MeshError): void => {
        if (timer !== null) clearTimeout(timer);
        if (idle !== null) clearTimeout(idle);
        if (!stream.closed) stream.close(CANCEL);
        body?.abort(err);
        if (!answered) {
          answered = true;
          done();
          reject(err);
        } else {
          response?.fail(err);
        }
      };
      ctx.abortHandlers.push((err) => fail(err instanceof MeshError ? err : new MeshError('UPSTREAM_RESET', err.message)));
      stream.on('error', ignore);
      // A copy of a small request body, kept until the answer begins: a stream the server refused
      // unprocessed (REFUSED_STREAM, e.g. it was going away) is sent again on a new session.
      if (sink !== null && early !== null) {
        const s = sink;
        s.attach(stream, retried ? null : { chunks: [], bytes: 0, ended: false, trailers: null }, idle);
        if (!whole) stream.on('wantTrailers', () => stream.sendTrailers(s.trailers === null ? {} : toH2Headers(s.trailers)));
        const chunks = early.chunks;
        if (whole) {
          const last = chunks.length - 1;
          for (let i = 0; i < last; i++) s.data(chunks[i]!);
          if (last >= 0) s.note(chunks[last]!);
          s.noteEnd(null);
          if (last >= 0) stream.end(chunks[last]);
          else stream.end();
        } else {
          for (const c of chunks) s.data(c);
          if (early.err !== null) s.error();
          else if (early.ended) s.end(early.trailers);
        }
      }
      // Interim answers (100 Continue to an `Expect: 100-continue`, 103) go to a client that can take them.
      const interim = ctx.interim;
      if (interim !== null) {
        stream.on('headers', (h: IncomingHttpHeaders) => {
          const status = Number(h[':status']);
          if (!answered && status >= 100 && status < 200 && status !== 101) interim(status, fromH2Headers(h));
        });
      }
      stream.on('response', (h: IncomingHttpHeaders, flags: number) => {
        const status = Number(h[':status']);
        idle?.refresh();
        if (status < 200) return;
        if (timer !== null) clearTimeout(timer);
        const headers = fromH2Headers(h);
        const declared = Number(h['content-length'] ?? -1);
        const ended = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
        // Content-Length is framing, written again by whoever sends the body on; only a response to
        // HEAD and a 304 keep theirs (the length a GET would have had).
        if (req.method !== 'HEAD' && status !== 304) removeHeader(headers, 'content-length');
        response = ended ? null : new Body(Number.isSafeInteger(declared) && declared >= 0 ? declared : -1, {
          pause: () => stream.pause(),
          resume: () => stream.resume(),
          abort: () => {
            if (!stream.closed) stream.close(CANCEL);
          },
        });
        answered = true;
        if (sink !== null) sink.replay = null;
        if (ended) done();
        resolve({ status, headers, body: response });
        // Node emits 'response' a tick after the HEADERS frame, while DATA read with it would already
        // go to a 'data' listener: so the body is read only from here (until then it waits in the stream).
        const r = response;
        if (r === null) stream.resume();
        else if (idle === null) stream.on('data', (c: Buffer) => r.push(c));
        else
          stream.on('data', (c: Buffer) => {
            idle.refresh();
            r.push(c);
          });
      });
      let trailers: string[] | null = null;
      stream.on('trailers', (t: IncomingHttpHeaders) => (trailers = fromH2Headers(t)));
      stream.on('end', () => {
        response?.end(trailers);
      });
      stream.on('close', () => {
        if (timer !== null) clearTimeout(timer);
        if (idle !== null) clearTimeout(idle);
        if (!answered) {
          answered = true;
          const again = sink === null ? (retried ? null : NO_BODY_REPLAY) : sink.replay;
          if (stream.rstCode === constants.NGHTTP2_REFUSED_STREAM && again !== null && (body === null || again.ended) && ctx.aborted === null) {
            let retryBody: Body | null = null;
            if (body !== null) {
              retryBody = new Body(body.length);
              for (const c of again.chunks) retryBody.push(c);
              retryBody.end(again.trailers);
            }
            if (session === this.session) this.session = null;
            resolve(this.sessionFor().then((s2) => this.exchange(s2, { ...req, body: retryBody }, ctx, timeoutMs, done, true, streamIdleMs)));
            return;
          }
          done();
          reject(new MeshError('UPSTREAM_RESET', `${this.key} reset the HTTP/2 stream before answering (code ${stream.rstCode ?? 0})`));
          return;
        }
        if (response !== null && !response.done) response.fail(new MeshError('UPSTREAM_RESET', `${this.key} reset the HTTP/2 stream mid-response (code ${stream.rstCode ?? 0})`));
        if (response !== null) done();
      });
    });
  }

  /**
   * Opens a CONNECT stream (RFC 9113 8.5: `:method CONNECT`, `:authority host:port`, no `:scheme` or
   * `:path`) on the session, for a TCP tunnel; the caller reads the answer. Rejects with the mesh
   * error of a session that cannot be opened (connect, mTLS), or UPSTREAM_RESET.
   */
  async connect(authority: string, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    const session = await this.sessionFor();
    let stream: ClientHttp2Stream;
    try {
      stream = session.request({ ...headers, ':method': 'CONNECT', ':authority': authority }, { endStream: false });
    } catch (err) {
      throw new MeshError('UPSTREAM_RESET', `HTTP/2 to ${this.key}: ${(err as Error).message}`);
    }
    this.tunnels++;
    stream.once('close', () => this.tunnels--);
    return stream;
  }

  /** Closes the session once its streams end. */
  close(): void {
    this.closed = true;
    this.session?.close();
    this.session = null;
  }
}
