/**
 * The downstream side of HTTP/1.1: reads requests from one client connection, hands each to the
 * listener's handler, and writes the response back. One request at a time; pipelined requests wait
 * in the buffer (the socket is paused) until the response before them is complete.
 */
import type { Socket } from 'node:net';
import { STATUS_CODES } from './status.js';
import { newRequestId } from '../telemetry/trace-context.js';
import { MeshError } from '../../core/errors.js';
import { Body, type BodySink } from '../body.js';
import type { Handler, ProxyRequest, ProxyResponse, RequestContext, UpgradedStream } from '../message.js';
import { joinSockets } from '../tcp/join.js';
import { abortContext, requestContext } from '../message.js';
import { meshErrorResponse, toMeshError } from '../local-reply.js';
import { sendNow, writeInTurn } from './batch-write.js';
import { rearm } from '../rearm.js';
import { ChunkedDecoder, ParseError, findHeadEnd, parseRequestHead, type HeadLimits, type RequestHead } from './parse.js';
import { JOIN_BODY_MAX, REQUEST_FRAMING, REQUEST_FRAMING_HTTP10, requestedUpgrade, stripHopByHop, writeChunk, writeHeadAndBody, writeLastChunk } from './wire.js';

/** Per-listener settings of the HTTP/1.1 server side. */
export interface Http1ServerOptions {
  direction: 'inbound' | 'outbound';
  limits: HeadLimits;
  /** Time allowed from a request's first byte to the end of its head. */
  requestHeaderTimeoutMs: number;
  /** Time a keep-alive connection may sit with no request; also the most silence (both ways) an upgraded connection may keep. */
  idleTimeoutMs: number;
  /** Called once per finished exchange (metrics, logs). */
  onExchange?: (ctx: RequestContext, status: number, errorCode: string) => void;
  /**
   * Takes over the connection at a `CONNECT` head (the inbound side's TCP tunnels). Without it,
   * CONNECT is answered 501.
   */
  connect?: (tunnel: ConnectTunnel) => void;
}

/**
 * A connection handed over at a `CONNECT` head: from then on it is no longer HTTP. The socket is
 * paused with no listener of ours left on it; `rest` holds the bytes that followed the head, which
 * already belong to the tunnel.
 */
export interface ConnectTunnel {
  socket: Socket;
  head: RequestHead;
  rest: Buffer | null;
  /** The caller's SPIFFE ID from its mTLS certificate; null for plaintext. */
  peerIdentity: string | null;
  /** The HTTP/1.1 connection that handed it over, now finished with. */
  from: Http1ServerConnection;
}

const enum State {
  Head,
  Body,
  /** Request read, response not yet finished. */
  Wait,
  Closed,
  /** Handed over to a CONNECT tunnel, or switched protocols (101): the socket is not HTTP any more. */
  Tunnel,
}

const MAX_PIPELINED = 256 * 1024;

/** Serves HTTP/1.1 on one accepted socket. */
export class Http1ServerConnection {
  private readonly socket: Socket;
  private readonly handler: Handler;
  private readonly opts: Http1ServerOptions;
  private state = State.Head;
  private buf: Buffer | null = null;
  private body: Body | null = null;
  private bodyRemaining = 0;
  private decoder: ChunkedDecoder | null = null;
  private keepAlive = true;
  private peerEnded = false;
  /** HTTP/1.<minor> of the request being served; 1.0 clients get close-delimited bodies. */
  private minor = 1;
  private draining = false;
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private headStarted = false;
  private readonly clientAddress: string;
  /** The exchange being served, while there is one. */
  private ctx: RequestContext | null = null;
  /** The exchange being served asked for a protocol upgrade (what it forwarded as `Upgrade`). */
  private upgrade: string | null = null;

  private readonly peerIdentity: string | null;

  constructor(socket: Socket, handler: Handler, opts: Http1ServerOptions, peerIdentity: string | null = null) {
    this.socket = socket;
    this.peerIdentity = peerIdentity;
    this.handler = handler;
    this.opts = opts;
    this.clientAddress = socket.remoteAddress ?? '';
    socket.setNoDelay(true);
    socket.on('data', this.onDataListener);
    socket.on('error', this.onErrorListener);
    socket.on('close', this.onCloseListener);
    socket.on('end', this.onEndListener);
    this.armTimer(opts.idleTimeoutMs);
  }

  // Kept as fields so a CONNECT hand-over can remove exactly these.
  private readonly onDataListener = (chunk: Buffer): void => this.onData(chunk);
  private readonly onErrorListener = (): void => this.close();
  private readonly onCloseListener = (): void => this.onClose();
  private readonly onEndListener = (): void => this.onPeerEnd();
  private readonly onTimeoutListener = (): void => this.onTimeout();

  /** Gives the socket to the tunnel side: every later byte belongs to the tunnel, none to HTTP. */
  private handOver(head: RequestHead, rest: Buffer | null): void {
    const socket = this.socket;
    socket.pause();
    this.state = State.Tunnel;
    this.disarmTimer();
    this.buf = null;
    socket.off('data', this.onDataListener);
    socket.off('error', this.onErrorListener);
    socket.off('close', this.onCloseListener);
    socket.off('end', this.onEndListener);
    this.opts.connect!({ socket, head, rest, peerIdentity: this.peerIdentity, from: this });
  }

  /**
   * The client half-closed. A request body cut short fails; requests already received (pipelined)
   * are still answered; a partial head can never complete.
   */
  private onPeerEnd(): void {
    this.peerEnded = true;
    if (this.state === State.Body) {
      const err = new ParseError('BAD_REQUEST', 'request body truncated: the client closed its side');
      this.body?.fail(err);
      this.bodyFailed(err);
    } else if (this.state === State.Head) {
      this.close();
    }
  }

  /** True while a request is being served. */
  get busy(): boolean {
    return this.state === State.Body || this.state === State.Wait;
  }

  /** Stop after the current exchange; close now if idle. */
  drain(): void {
    this.draining = true;
    if (!this.busy && !this.headStarted) this.close();
  }

  /** One timer per connection, re-armed in place: a request that arrives whole allocates none. */
  private armTimer(ms: number): void {
    if (ms <= 0) return;
    this.timer = rearm(this.timer, this.timerMs, ms, this.onTimeoutListener);
    this.timerMs = ms;
  }

  private disarmTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private onTimeout(): void {
    if (this.state === State.Head && this.headStarted) {
      this.refuse(new MeshError('REQUEST_TIMEOUT', `request head not received within ${this.opts.requestHeaderTimeoutMs} ms`));
    } else if (this.state === State.Head) {
      this.close();
    } else if (this.state === State.Body && this.socket.isPaused()) {
      // We stopped reading (the upstream is slow to take the body): not the client's silence.
      this.timer?.refresh();
    } else if (this.state === State.Body) {
      // A request body that stops arriving would hold this connection and an upstream one forever.
      const err = new MeshError('REQUEST_TIMEOUT', `request body idle for ${this.opts.idleTimeoutMs} ms`);
      this.body?.fail(err);
      this.bodyFailed(err);
    } else if (this.state !== State.Closed) {
      // Waiting for the response is bounded by the route's timeouts, not by this one.
      this.timer?.refresh();
    }
  }

  private onData(chunk: Buffer): void {
    switch (this.state) {
      case State.Head:
        this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
        this.readHeads();
        return;
      case State.Body:
        this.timer?.refresh();
        this.feedBody(chunk, 0);
        return;
      case State.Wait:
        this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
        if (this.buf.length > MAX_PIPELINED) this.socket.pause();
        return;
      default:
        return;
    }
  }

  /** Parses as many complete heads as the buffer holds, one exchange at a time. */
  private readHeads(): void {
    while (this.state === State.Head && this.buf !== null) {
      let buf = this.buf;
      // RFC 9112 2.2: ignore empty lines before a request line.
      let start = 0;
      while (start + 1 < buf.length && buf[start] === 0x0d && buf[start + 1] === 0x0a) start += 2;
      const end = findHeadEnd(buf, start);
      if (end === -1) {
        if (buf.length - start > this.opts.limits.maxHeadBytes) {
          this.refuse(new ParseError('HEADERS_TOO_LARGE', `request head larger than ${this.opts.limits.maxHeadBytes} bytes`));
          return;
        }
        if (start > 0) this.buf = buf.length === start ? null : buf.subarray(start);
        if (!this.headStarted && this.buf !== null) {
          this.headStarted = true;
          this.armTimer(this.opts.requestHeaderTimeoutMs);
        }
        return;
      }
      if (end - start - 4 > this.opts.limits.maxHeadBytes) {
        this.refuse(new ParseError('HEADERS_TOO_LARGE', `request head larger than ${this.opts.limits.maxHeadBytes} bytes`));
        return;
      }
      let head: RequestHead;
      try {
        head = parseRequestHead(buf.toString('latin1', start, end - 4), this.opts.limits);
      } catch (err) {
        this.refuse(err);
        return;
      }
      if (this.headStarted) {
        this.headStarted = false;
        this.armTimer(this.opts.idleTimeoutMs);
      }
      const rest = end === buf.length ? null : buf.subarray(end);
      this.buf = null;
      if (head.method === 'CONNECT' && this.opts.connect !== undefined) {
        this.handOver(head, rest);
        return;
      }
      // From here the idle timeout measures silence within the request body.
      this.timer?.refresh();
      this.begin(head);
      if (rest !== null) {
        if ((this.state as State) === State.Body) this.feedBody(rest, 0);
        else this.buf = rest;
      }
    }
  }

  /** Starts one exchange for a parsed head. */
  private begin(head: RequestHead): void {
    const target = resolveTarget(head);
    if (target instanceof MeshError) {
      this.refuse(target);
      return;
    }
    const conn = head.connection;
    this.keepAlive = head.minor === 1 ? !(conn !== null && conn.includes('close')) : conn !== null && conn.includes('keep-alive');
    if (this.draining) this.keepAlive = false;
    this.minor = head.minor;

    const headers = head.headers;
    // Connection and Upgrade are hop-by-hop: an upgrade travels as `req.upgrade`, and each hop
    // writes its own pair (so nothing else the client named in Connection leaks).
    const upgrade = requestedUpgrade(head);
    this.upgrade = upgrade;
    stripHopByHop(headers, conn, head.minor === 1 ? REQUEST_FRAMING : REQUEST_FRAMING_HTTP10);
    let requestId = '';
    let xff = '';
    for (let i = 0; i < headers.length; i += 2) {
      const n = headers[i];
      if (n === 'x-request-id') requestId = headers[i + 1]!;
      else if (n === 'x-forwarded-for') xff = headers[i + 1]!;
    }
    if (requestId === '' || requestId.length > 128) {
      requestId = newRequestId();
      setOrAppend(headers, 'x-request-id', requestId, false);
    }
    setOrAppend(headers, 'x-forwarded-for', xff === '' ? this.clientAddress : `${xff}, ${this.clientAddress}`, xff !== '');

    let body: Body | null = null;
    if (head.chunked || head.contentLength > 0) {
      body = new Body(head.chunked ? -1 : head.contentLength, {
        pause: () => this.socket.pause(),
        resume: () => this.socket.resume(),
        abort: () => {
          // The consumer gave up on the body: this connection can no longer find the next request.
          this.keepAlive = false;
        },
      });
      this.body = body;
      if (head.chunked) {
        this.decoder = new ChunkedDecoder({
          data: (c) => {
            if (this.ctx !== null) this.ctx.bytesReceived += c.length;
            body!.push(c);
          },
          end: (t) => body!.end(t),
        });
      } else {
        this.bodyRemaining = head.contentLength;
      }
      this.state = State.Body;
    } else {
      this.state = State.Wait;
    }

    const req: ProxyRequest = { method: head.method, path: target.path, authority: target.authority, headers, body };
    if (upgrade !== null) req.upgrade = upgrade;
    const ctx = this.newContext(requestId, head.expectContinue && head.minor === 1 ? (status, h) => this.writeInterim(status, h) : null);
    const isHead = head.method === 'HEAD';
    this.handler(req, ctx).then(
      (res) => this.respond(ctx, res, isHead),
      (err) => this.respond(ctx, this.errorResponse(ctx, err), isHead),
    );
  }

  /** The context of a new exchange, which becomes the current one. */
  private newContext(requestId: string, interim: RequestContext['interim']): RequestContext {
    const ctx = requestContext(this.opts.direction, requestId, this.clientAddress, this.peerIdentity, interim, this.minor === 1 ? 'HTTP/1.1' : 'HTTP/1.0');
    this.ctx = ctx;
    return ctx;
  }

  private errorResponse(ctx: RequestContext, err: unknown): ProxyResponse {
    const e = toMeshError(err);
    ctx.errorCode = e.code;
    return meshErrorResponse(e, ctx.requestId);
  }

  private feedBody(buf: Buffer, offset: number): void {
    const body = this.body!;
    let rest: number;
    if (this.decoder !== null) {
      try {
        rest = this.decoder.push(buf, offset);
      } catch (err) {
        body.fail(err as Error);
        this.bodyFailed(err);
        return;
      }
      if (rest === -1) return;
    } else {
      const take = Math.min(this.bodyRemaining, buf.length - offset);
      if (this.ctx !== null) this.ctx.bytesReceived += take;
      body.push(offset === 0 && take === buf.length ? buf : buf.subarray(offset, offset + take));
      this.bodyRemaining -= take;
      if (this.bodyRemaining > 0) return;
      body.end(null);
      rest = offset + take;
    }
    this.decoder = null;
    this.body = null;
    if (this.state === State.Body) this.state = State.Wait;
    if (rest < buf.length) {
      this.buf = buf.subarray(rest);
      if (this.state === State.Wait && this.buf.length > MAX_PIPELINED) this.socket.pause();
    }
    if (this.state === State.Head) this.readHeads();
  }

  /** A malformed request body: answer 400 if nothing was sent yet, then close. */
  private bodyFailed(err: unknown): void {
    this.keepAlive = false;
    this.body = null;
    this.decoder = null;
    const ctx = this.ctx;
    if (ctx !== null) abortContext(ctx, err as Error);
    this.state = State.Wait;
  }

  private writeInterim(status: number, headers: string[]): void {
    if (this.state === State.Closed || this.socket.destroyed) return;
    let s = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
    for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
    this.socket.write(s + '\r\n', 'latin1');
  }

  /** Writes a response; when its body ends, the next request may start. */
  private respond(ctx: RequestContext, res: ProxyResponse, isHead: boolean): void {
    if (this.state === State.Closed || this.socket.destroyed) {
      res.body?.abort(new Error('client closed'));
      res.upgraded?.socket.destroy();
      this.finish(ctx, res.status);
      return;
    }
    if (res.status === 101 || res.upgraded !== undefined) {
      if (res.status === 101 && res.upgraded !== undefined && this.upgrade !== null && this.state === State.Wait) {
        this.switchProtocols(ctx, res, res.upgraded);
        return;
      }
      // A 101 this client did not ask for, or one that lost its connection on the way: never
      // relayed, or the client would take the bytes after it for another protocol.
      res.upgraded?.socket.destroy();
      res.body?.abort(new Error('switching protocols refused'));
      res = this.errorResponse(ctx, new MeshError('UPSTREAM_PROTOCOL_ERROR', 'the upstream switched protocols without an upgrade request'));
    }
    // The request body must be fully read before the connection can carry another request.
    if (this.state === State.Body) this.keepAlive = false;
    const status = res.status;
    const bodyless = isHead || status === 204 || status === 304 || (status >= 100 && status < 200);
    const body = bodyless ? null : res.body;
    if (bodyless && res.body !== null) res.body.abort(new Error('response to HEAD carries no body'));
    let chunked = false;
    if (body !== null && body.length < 0 && this.minor === 0) this.keepAlive = false;
    let s = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    const h = res.headers;
    for (let i = 0; i < h.length; i += 2) s += `${h[i]}: ${h[i + 1]}\r\n`;
    if (body !== null) {
      if (body.length >= 0) s += `content-length: ${body.length}\r\n`;
      else if (this.minor === 1) {
        // Chunked even when closing afterwards: the client can tell a complete body from a cut one.
        chunked = true;
        s += 'transfer-encoding: chunked\r\n';
      }
    } else if (!bodyless) {
      s += 'content-length: 0\r\n';
    }
    if (!this.keepAlive) s += 'connection: close\r\n';
    const socket = this.socket;
    if (body === null) {
      writeInTurn(socket, s + '\r\n', 'latin1');
      this.finish(ctx, status);
      return;
    }
    const whole = body.length >= 0 && body.length <= JOIN_BODY_MAX ? body.takeWhole() : null;
    if (whole !== null) {
      ctx.bytesSent += whole.length;
      writeHeadAndBody(socket, s, whole);
      this.finish(ctx, status);
      return;
    }
    socket.cork();
    socket.write(s + '\r\n', 'latin1');
    let waitingDrain = false;
    const sink: BodySink = {
      data: (chunk) => {
        ctx.bytesSent += chunk.length;
        const ok = chunked ? writeChunk(socket, chunk) : socket.write(chunk);
        if (!ok && !waitingDrain) {
          waitingDrain = true;
          socket.once('drain', () => {
            waitingDrain = false;
            body.resume();
          });
        }
        return ok;
      },
      end: (trailers) => {
        if (chunked) writeLastChunk(socket, trailers);
        socket.uncork();
        this.finish(ctx, status);
      },
      error: () => {
        // Headers are out: the only honest signal left is to reset the connection, and no
        // pipelined request behind this one may start.
        this.keepAlive = false;
        socket.uncork();
        this.finish(ctx, status);
        this.close();
      },
    };
    body.pipe(sink);
    // Flush the head with the first bytes, but never hold them past this tick. A sink already full
    // (a complete body over the high-water mark) waits for a 'drain' only an uncorked socket emits.
    if (waitingDrain) socket.uncork();
    else if (!body.done) process.nextTick(() => socket.uncork());
  }

  /**
   * The upstream switched protocols: relay its 101, then the connection is a byte pipe between the
   * client and that upstream connection (backpressure and half-close both ways), no longer HTTP.
   * Bytes the client sent behind its request head go first, as do those that followed the 101.
   * The exchange counts once, as a 101, now. Silence both ways for the idle timeout closes both.
   */
  private switchProtocols(ctx: RequestContext, res: ProxyResponse, up: UpgradedStream): void {
    const socket = this.socket;
    socket.pause();
    this.state = State.Tunnel;
    this.disarmTimer();
    socket.off('data', this.onDataListener);
    socket.off('error', this.onErrorListener);
    socket.off('close', this.onCloseListener);
    socket.off('end', this.onEndListener);
    socket.on('error', () => {});
    const early = this.buf;
    this.buf = null;
    this.upgrade = null;
    let s = 'HTTP/1.1 101 Switching Protocols\r\n';
    const h = res.headers;
    for (let i = 0; i < h.length; i += 2) s += `${h[i]}: ${h[i + 1]}\r\n`;
    socket.write(`${s}connection: upgrade\r\nupgrade: ${up.protocol}\r\n\r\n`, 'latin1');
    if (up.rest !== null) socket.write(up.rest);
    if (early !== null) up.socket.write(early);
    // A client that already half-closed sent all it will: the upstream must hear so (the join
    // below cannot pass on an end it never sees).
    if (this.peerEnded) up.socket.end();
    this.ctx = null;
    this.opts.onExchange?.(ctx, 101, ctx.errorCode);
    const idle = this.opts.idleTimeoutMs;
    if (idle > 0) {
      // Activity in either direction is a read or a write on the client's socket.
      socket.setTimeout(idle, () => {
        socket.destroy();
        up.socket.destroy();
      });
    }
    joinSockets(socket, up.socket, () => socket.setTimeout(0));
  }

  /** The exchange is over: report it, then read the next request or close. */
  private finish(ctx: RequestContext, status: number): void {
    if (this.ctx !== ctx) return;
    this.ctx = null;
    this.opts.onExchange?.(ctx, status, ctx.errorCode);
    if (this.state === State.Closed) return;
    if (!this.keepAlive || this.draining) {
      this.state = State.Closed;
      this.disarmTimer();
      this.socket.end();
      return;
    }
    if (this.state === State.Body) return; // unreachable: keepAlive is false then
    this.state = State.Head;
    this.armTimer(this.opts.idleTimeoutMs);
    if (this.socket.isPaused()) this.socket.resume();
    if (this.buf !== null) this.readHeads();
    // A client that half-closed gets answers to what it sent, then the connection ends.
    if (this.peerEnded && this.state === State.Head) this.close();
  }

  /** Answers a request that cannot be served, then closes the connection. */
  private refuse(err: unknown): void {
    this.keepAlive = false;
    this.headStarted = false;
    this.buf = null;
    const ctx = this.newContext('', null);
    this.state = State.Wait;
    this.socket.pause();
    this.respond(ctx, this.errorResponse(ctx, err), false);
  }

  private close(): void {
    if (this.state === State.Tunnel) return;
    if (this.state === State.Closed && this.socket.destroyed) return;
    this.state = State.Closed;
    this.disarmTimer();
    // An answer written this turn (to a client that half-closed) still goes out.
    sendNow(this.socket);
    this.socket.destroy();
  }


  private onClose(): void {
    this.state = State.Closed;
    this.disarmTimer();
    const err = new MeshError('CLIENT_CLOSED', 'the client closed the connection');
    this.body?.fail(err);
    if (this.ctx !== null) abortContext(this.ctx, err);
  }
}

/** Authority and path from an origin-form or absolute-form target. */
function resolveTarget(head: RequestHead): { authority: string; path: string } | MeshError {
  const t = head.target;
  if (t.charCodeAt(0) === 0x2f /* / */) {
    if (head.host === null || head.host === '') return new MeshError('BAD_REQUEST', 'missing Host field');
    return { authority: head.host.toLowerCase(), path: t };
  }
  if (head.method === 'CONNECT') return new MeshError('NOT_IMPLEMENTED', 'this listener does not take CONNECT (TCP tunnels go to a workload\'s inbound listener)');
  // Absolute-form: the target's authority wins over Host (RFC 9112 3.2.2).
  const m = /^http:\/\/([^/?#@]+)([^#]*)$/i.exec(t);
  if (m === null) {
    if (t === '*' && head.method === 'OPTIONS' && head.host) return { authority: head.host.toLowerCase(), path: '*' };
    return new MeshError('BAD_REQUEST', `unsupported request target ${JSON.stringify(t.slice(0, 60))}`);
  }
  const path = m[2] === '' ? '/' : m[2]!.charCodeAt(0) === 0x3f ? `/${m[2]}` : m[2]!;
  return { authority: m[1]!.toLowerCase(), path };
}

function setOrAppend(headers: string[], name: string, value: string, replace: boolean): void {
  if (replace) {
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === name) {
        headers[i + 1] = value;
        return;
      }
    }
  }
  headers.push(name, value);
}
