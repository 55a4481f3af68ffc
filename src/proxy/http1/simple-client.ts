/**
 * A small HTTP/1.1 client on node:net and node:tls for the proxy's own calls, not for traffic: span
 * exports (OTLP/HTTP posts, keep-alive) and the config stream's Upgrade request. It buffers whole
 * (bounded) response bodies, parses heads strictly with parse.ts, and bounds every exchange by one
 * deadline. With it the proxy process never loads node:http or node:https (docs/performance.md).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type PeerCertificate, type SecureVersion } from 'node:tls';
import { ChunkedDecoder, ParseError, findHeadEnd, parseResponseHead, type ResponseHead } from './parse.js';

/** TLS settings of a request to an `https:` URL (those node:https takes under the same names). */
export interface ClientTls {
  ca?: string | string[];
  cert?: string;
  key?: string;
  /** SNI and the name checked; by default the URL's host when it is a name (never an IP address). */
  servername?: string;
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
  minVersion?: SecureVersion;
  rejectUnauthorized?: boolean;
}

/** One request. */
export interface SimpleRequest {
  url: URL;
  method: string;
  /** Header fields flattened [name, value, …]; Host, Content-Length and Connection are written by the client. */
  headers?: readonly string[];
  body?: string | Buffer | null;
  /** The whole exchange (connect, TLS, request, response head and body) must finish within this. */
  timeoutMs: number;
  /** For `https:` URLs. */
  tls?: ClientTls | null;
  /** Keep-alive connections to reuse; without one the connection closes after the response. */
  pool?: ConnectionPool | null;
  /** Largest response body taken (default 1 MiB). */
  maxBodyBytes?: number;
}

/** A complete response. */
export interface SimpleResponse {
  status: number;
  reason: string;
  /** Flattened [name, value, …], names lowercase. */
  headers: string[];
  body: Buffer;
}

/** The connection after a `101 Switching Protocols`: no longer HTTP, paused, with no listener of ours left on it. */
export interface Upgraded {
  status: 101;
  headers: string[];
  socket: Socket;
  /** Bytes that followed the 101's head: already the new protocol's. */
  rest: Buffer;
}

/** A failed exchange: a timeout, a connection closed early, or a response that is not valid HTTP/1.1. */
export class HttpClientError extends Error {
  constructor(
    message: string,
    /** `ETIMEDOUT`, `ECONNRESET` (closed before the response was complete) or `EPROTO` (invalid response). */
    readonly code: 'ETIMEDOUT' | 'ECONNRESET' | 'EPROTO',
  ) {
    super(message);
    this.name = 'HttpClientError';
  }
}

const MAX_HEAD_BYTES = 64 * 1024;
const DEFAULT_MAX_BODY = 1 << 20;

/** Sends one request and resolves with the whole response. Socket errors (ECONNREFUSED, TLS failures) reject as they are. */
export function simpleRequest(r: SimpleRequest): Promise<SimpleResponse> {
  return exchange(r, null) as Promise<SimpleResponse>;
}

/**
 * Asks to switch the connection to `protocol` (RFC 9110 7.8). Resolves with the connection on a 101,
 * or with the response when the server answered otherwise (it never switches then).
 */
export function upgradeRequest(r: Omit<SimpleRequest, 'pool' | 'body'>, protocol: string): Promise<Upgraded | SimpleResponse> {
  return exchange({ ...r, pool: null, body: null }, protocol);
}

/**
 * Idle keep-alive connections per origin, at most `maxSockets` open per origin (busy and idle): a
 * request over the limit waits for one to be released (within its own deadline). Idle connections do
 * not keep the process alive, close after `idleMs` (or sooner when the server's `Keep-Alive: timeout`
 * says so), and are reused only with the same TLS credentials (a renewed certificate opens new ones).
 */
export class ConnectionPool {
  private readonly origins = new Map<string, OriginPool>();

  constructor(
    readonly maxSockets: number,
    readonly idleMs = 15_000,
  ) {}

  /** Open connections (busy and idle) to `origin` (`https://host:port`). */
  openCount(origin: string): number {
    return this.origins.get(origin)?.open ?? 0;
  }

  /** Closes the idle connections; busy ones close when their exchange ends. */
  close(): void {
    for (const o of this.origins.values()) {
      for (const s of o.idle) s.socket.destroy();
      o.idle.length = 0;
    }
  }

  /** @internal A connection for `origin`: an idle one with the same credentials, a new one, or after a wait. */
  acquire(origin: string, creds: unknown[], open: () => Socket, ready: (s: Socket) => void): () => void {
    let o = this.origins.get(origin);
    if (o === undefined) this.origins.set(origin, (o = { open: 0, idle: [], waiting: [] }));
    const pool = o;
    const take = (): boolean => {
      while (pool.idle.length > 0) {
        const idle = pool.idle.pop()!;
        idle.detach();
        if (sameCreds(idle.creds, creds) && !idle.socket.destroyed) {
          idle.socket.ref();
          ready(idle.socket);
          return true;
        }
        idle.socket.destroy();
      }
      if (pool.open >= this.maxSockets) return false;
      pool.open++;
      const s = open();
      s.once('close', () => {
        pool.open--;
        pool.waiting.shift()?.();
      });
      (s as PooledSocket)[CREDS] = creds;
      ready(s);
      return true;
    };
    if (take()) return () => {};
    let cancelled = false;
    const waiter = (): void => {
      if (!cancelled && !take()) pool.waiting.unshift(waiter);
    };
    pool.waiting.push(waiter);
    return () => {
      cancelled = true;
      const i = pool.waiting.indexOf(waiter);
      if (i !== -1) pool.waiting.splice(i, 1);
    };
  }

  /** @internal Takes back a connection whose exchange completed cleanly. */
  release(origin: string, socket: Socket, keepAliveMs: number): void {
    const pool = this.origins.get(origin);
    if (pool === undefined || socket.destroyed) return;
    this.park(pool, socket, keepAliveMs);
    // Someone waiting for a connection finds this one idle.
    pool.waiting.shift()?.();
  }

  private park(pool: OriginPool, socket: Socket, keepAliveMs: number): void {
    const creds = (socket as PooledSocket)[CREDS] ?? [];
    const drop = (): void => {
      const i = pool.idle.indexOf(entry);
      if (i !== -1) pool.idle.splice(i, 1);
      socket.destroy();
    };
    // Bytes from an idle connection are a protocol error; its close or error only removes it.
    const onData = (): void => drop();
    const entry: IdleSocket = {
      socket,
      creds,
      detach: () => {
        socket.off('data', onData);
        socket.off('end', drop);
        socket.off('error', drop);
        socket.off('timeout', drop);
        socket.setTimeout(0);
      },
    };
    socket.on('data', onData);
    socket.on('end', drop);
    socket.on('error', drop);
    socket.on('timeout', drop);
    socket.setTimeout(Math.max(1, Math.min(this.idleMs, keepAliveMs)));
    socket.unref();
    pool.idle.push(entry);
  }
}

const CREDS = Symbol('credentials');
type PooledSocket = Socket & { [CREDS]?: unknown[] };
interface IdleSocket {
  socket: Socket;
  creds: unknown[];
  detach(): void;
}
interface OriginPool {
  open: number;
  idle: IdleSocket[];
  waiting: Array<() => void>;
}

function sameCreds(a: unknown[], b: unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function defaultPort(url: URL): number {
  return url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

/** The host to dial: URL hosts keep IPv6 addresses in brackets. */
function hostOf(url: URL): string {
  const h = url.hostname;
  return h.startsWith('[') ? h.slice(1, -1) : h;
}

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}

function exchange(r: SimpleRequest, upgrade: string | null): Promise<SimpleResponse | Upgraded> {
  const url = r.url;
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') return Promise.reject(new TypeError(`${url.href}: only http: and https: URLs are supported`));
  const what = `${r.method} ${url.origin}${url.pathname}`;
  const host = hostOf(url);
  const port = defaultPort(url);
  const tls = secure ? (r.tls ?? {}) : null;
  const open = (): Socket => {
    if (tls === null) return netConnect({ host, port });
    // Only the settings given: tls.connect takes an explicit `rejectUnauthorized: undefined` as false.
    const o: ConnectionOptions = { host, port };
    for (const [k, v] of Object.entries(tls)) if (v !== undefined) (o as Record<string, unknown>)[k] = v;
    if (o.servername === undefined && !isIp(host)) o.servername = host;
    return tlsConnect(o);
  };
  const pool = r.pool ?? null;
  const creds = tls === null ? [] : [tls.cert, tls.key, tls.ca, tls.servername, tls.minVersion, tls.rejectUnauthorized];
  const maxBody = r.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const body = r.body == null ? null : typeof r.body === 'string' ? Buffer.from(r.body) : r.body;

  let head = `${r.method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  const h = r.headers ?? [];
  for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
  if (body !== null || r.method === 'POST' || r.method === 'PUT') head += `content-length: ${body?.length ?? 0}\r\n`;
  if (upgrade !== null) head += `connection: upgrade\r\nupgrade: ${upgrade}\r\n`;
  else if (pool === null) head += 'connection: close\r\n';
  head += '\r\n';

  return new Promise((resolve, reject) => {
    let socket: Socket | null = null;
    let settled = false;
    let buf: Buffer | null = null;
    let res: ResponseHead | null = null;
    const parts: Buffer[] = [];
    let got = 0;
    let remaining = -1;
    let decoder: ChunkedDecoder | null = null;
    let bodyDone = false;
    /** Withdraws a wait for a pooled connection. */
    let cancelWait = (): void => {};

    const cleanup = (): void => {
      clearTimeout(timer);
      if (socket !== null) {
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.off('error', fail);
      }
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cancelWait();
      cleanup();
      socket?.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new HttpClientError(`${what}: no complete response within ${r.timeoutMs} ms`, 'ETIMEDOUT')), r.timeoutMs);
    timer.unref();

    const done = (): void => {
      if (settled || res === null) return;
      settled = true;
      cleanup();
      const s = socket!;
      const response: SimpleResponse = { status: res.status, reason: res.reason, headers: res.headers, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
      // Reused only when the response was framed, nothing followed it, and both sides keep it open.
      const keep = pool !== null && res.minor === 1 && remaining !== -2 && buf === null && !(res.connection?.includes('close') ?? false);
      // Not kept: the response is whole, so nothing is lost by closing now (and no late error can go unheard).
      if (keep) pool.release(url.origin, s, keepAliveHint(res.headers));
      else s.destroy();
      resolve(response);
    };

    const take = (chunk: Buffer): void => {
      got += chunk.length;
      if (got > maxBody) throw new HttpClientError(`${what}: response body larger than ${maxBody} bytes`, 'EPROTO');
      parts.push(chunk);
    };

    /** Reads as much of the response as `buf` holds. */
    const read = (): void => {
      while (res === null && buf !== null) {
        const end = findHeadEnd(buf, 0);
        if (end === -1) {
          if (buf.length > MAX_HEAD_BYTES) throw new HttpClientError(`${what}: response head larger than ${MAX_HEAD_BYTES} bytes`, 'EPROTO');
          return;
        }
        let parsed: ResponseHead;
        try {
          parsed = parseResponseHead(buf.toString('latin1', 0, end - 4));
        } catch (err) {
          throw err instanceof ParseError ? new HttpClientError(`${what}: invalid response: ${err.message.replace(/^upstream sent an invalid response: /, '')}`, 'EPROTO') : err;
        }
        const rest = end === buf.length ? null : buf.subarray(end);
        if (parsed.status === 101) {
          if (upgrade === null) throw new HttpClientError(`${what}: invalid response: 101 Switching Protocols without an upgrade request`, 'EPROTO');
          settled = true;
          cleanup();
          socket!.pause();
          resolve({ status: 101, headers: parsed.headers, socket: socket!, rest: rest ?? Buffer.alloc(0) });
          return;
        }
        buf = rest;
        // Interim responses (100 Continue, 103 Early Hints) come before the one that counts.
        if (parsed.status < 200) continue;
        res = parsed;
        if (r.method === 'HEAD' || parsed.status === 204 || parsed.status === 304) remaining = 0;
        else if (parsed.chunked) {
          decoder = new ChunkedDecoder({ data: take, end: () => (bodyDone = true) }, true);
        } else if (parsed.contentLength >= 0) {
          remaining = parsed.contentLength;
          if (remaining > maxBody) throw new HttpClientError(`${what}: response body larger than ${maxBody} bytes`, 'EPROTO');
        } else {
          remaining = -2; // delimited by the connection's close
        }
      }
      if (res === null || settled) return;
      if (buf !== null) {
        const b = buf;
        buf = null;
        if (decoder !== null) {
          let end: number;
          try {
            end = decoder.push(b, 0);
          } catch (err) {
            throw err instanceof ParseError ? new HttpClientError(`${what}: invalid response body: ${err.message.replace(/^upstream sent an invalid response: /, '')}`, 'EPROTO') : err;
          }
          if (end !== -1 && end < b.length) buf = b.subarray(end);
        } else if (remaining === -2) {
          take(b);
        } else {
          const n = Math.min(remaining, b.length);
          if (n > 0) take(n === b.length ? b : b.subarray(0, n));
          remaining -= n;
          if (n < b.length) buf = b.subarray(n);
        }
      }
      if (decoder !== null ? bodyDone : remaining === 0) done();
    };

    const onData = (chunk: Buffer): void => {
      buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
      try {
        read();
      } catch (err) {
        fail(err as Error);
      }
    };
    const onEnd = (): void => {
      if (settled) return;
      if (res !== null && remaining === -2) {
        done();
        return;
      }
      fail(new HttpClientError(`${what}: the connection closed before the response was complete`, 'ECONNRESET'));
    };

    function start(s: Socket): void {
      socket = s;
      s.setNoDelay(true);
      s.on('data', onData);
      s.on('end', onEnd);
      s.on('close', onEnd);
      s.on('error', fail);
      s.write(head, 'latin1');
      if (body !== null && body.length > 0) s.write(body);
    }
    if (pool === null) start(open());
    else cancelWait = pool.acquire(url.origin, creds, open, start);
  });
}

/** How long the server keeps an idle connection (`Keep-Alive: timeout=N`), less a margin so we never reuse one it is closing. */
function keepAliveHint(headers: readonly string[]): number {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== 'keep-alive') continue;
    const m = /(?:^|[,\s])timeout=(\d+)/i.exec(headers[i + 1]!);
    if (m !== null) return Math.max(1, Number(m[1]) * 1000 - 1000);
  }
  return Infinity;
}
