/**
 * A small Redis client over one TCP connection: commands are pipelined (written as they come,
 * replies matched in order), each has its own timeout, the number waiting is bounded, and a lost
 * connection is re-made with exponential backoff. While the connection is down (in backoff)
 * commands fail at once instead of queueing: a rate limiter must answer in bounded time.
 */
import { connect, type Socket } from 'node:net';
import { encodeCommand, RespParser, type RespValue } from './resp.js';

/** Why a command got no reply: `timeout` (Redis slow), `unavailable` (no connection, or too many waiting). */
export type RedisFailure = 'timeout' | 'unavailable';

/** A command that got no reply. Error replies from Redis are values (`RespError`), not this. */
export class RedisCommandError extends Error {
  constructor(
    readonly reason: RedisFailure,
    message: string,
  ) {
    super(message);
    this.name = 'RedisCommandError';
  }
}

export interface RedisClientOptions {
  host: string;
  port: number;
  /** Most commands waiting for a reply (sent or about to be); more fail at once. 1024 by default. */
  maxInFlight?: number;
  /** 1000 ms by default. */
  connectTimeoutMs?: number;
  /** First reconnect delay, doubled per failed attempt up to `maxBackoffMs`, jittered; 50 and 2000 ms by default. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A connection whose oldest unanswered command is this old (ms) is judged hung and re-made; 1000 by default. */
  staleMs?: number;
}

interface Pending {
  resolve: (v: RespValue) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  settled: boolean;
  sentAt: number;
  /** Bytes not yet written (queued while connecting); null once written. */
  bytes: Buffer | null;
}

type State = 'idle' | 'connecting' | 'ready' | 'backoff' | 'closed';

/** One pipelined connection to one Redis server. */
export class RedisClient {
  readonly address: string;
  private readonly opts: Required<Omit<RedisClientOptions, 'host' | 'port'>> & { host: string; port: number };
  private state: State = 'idle';
  private socket: Socket | null = null;
  /** Commands in the order their replies will come: written ones first, then queued ones. */
  private readonly pending: Pending[] = [];
  private readonly parser = new RespParser((v) => this.onReply(v));
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private lastError = 'not connected yet';

  constructor(opts: RedisClientOptions) {
    this.opts = { maxInFlight: 1024, connectTimeoutMs: 1000, initialBackoffMs: 50, maxBackoffMs: 2000, staleMs: 1000, ...opts };
    this.address = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  }

  /** True while connected. */
  get connected(): boolean {
    return this.state === 'ready';
  }

  /** Sends one command; resolves with its reply (an error reply is a `RespError` value), or rejects with a RedisCommandError. */
  command(args: ReadonlyArray<string | number>, timeoutMs: number): Promise<RespValue> {
    if (this.state === 'closed') return Promise.reject(new RedisCommandError('unavailable', 'the Redis client is closed'));
    if (this.state === 'backoff') return Promise.reject(new RedisCommandError('unavailable', `Redis ${this.address} is unreachable (${this.lastError})`));
    if (this.pending.length >= this.opts.maxInFlight) {
      return Promise.reject(new RedisCommandError('unavailable', `${this.pending.length} commands already wait for Redis ${this.address}`));
    }
    if (this.state === 'idle') this.connect();
    return new Promise<RespValue>((resolve, reject) => {
      const p: Pending = { resolve, reject, timer: undefined as unknown as NodeJS.Timeout, settled: false, sentAt: performance.now(), bytes: encodeCommand(args) };
      p.timer = setTimeout(() => this.onTimeout(p, timeoutMs), timeoutMs);
      this.pending.push(p);
      if (this.state === 'ready') this.write(p);
    });
  }

  /** Closes the connection for good; commands waiting fail. */
  close(): void {
    this.state = 'closed';
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.socket?.destroy();
    this.socket = null;
    this.failAll('the Redis client was closed');
  }

  private write(p: Pending): void {
    const bytes = p.bytes!;
    p.bytes = null;
    p.sentAt = performance.now();
    this.socket!.write(bytes);
  }

  private connect(): void {
    this.state = 'connecting';
    this.parser.reset();
    const socket = connect({ host: this.opts.host, port: this.opts.port, noDelay: true });
    this.socket = socket;
    const connectTimer = setTimeout(() => socket.destroy(new Error(`no connection within ${this.opts.connectTimeoutMs} ms`)), this.opts.connectTimeoutMs);
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      if (this.socket !== socket) return;
      this.state = 'ready';
      this.failures = 0;
      // Queued commands that have not timed out go now, in order; timed-out ones are dropped (they were never sent).
      for (let i = 0; i < this.pending.length; ) {
        const p = this.pending[i]!;
        if (p.settled && p.bytes !== null) this.pending.splice(i, 1);
        else {
          if (p.bytes !== null) this.write(p);
          i++;
        }
      }
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.socket !== socket) return;
      try {
        this.parser.push(chunk);
      } catch (e) {
        socket.destroy(e as Error);
      }
    });
    socket.on('error', (e) => {
      this.lastError = e.message;
    });
    socket.once('close', () => {
      clearTimeout(connectTimer);
      if (this.socket !== socket) return;
      this.socket = null;
      this.failAll(`the connection to Redis ${this.address} was lost (${this.lastError})`);
      if (this.state === 'closed') return;
      this.state = 'backoff';
      const base = Math.min(this.opts.maxBackoffMs, this.opts.initialBackoffMs * 2 ** this.failures);
      this.failures++;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (this.state === 'backoff') this.connect();
      }, base / 2 + Math.random() * (base / 2));
      this.retryTimer.unref();
    });
  }

  private onReply(v: RespValue): void {
    const p = this.pending.shift();
    if (p === undefined) {
      this.socket?.destroy(new Error('a reply nobody asked for'));
      return;
    }
    if (p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    p.resolve(v);
  }

  private onTimeout(p: Pending, timeoutMs: number): void {
    if (p.settled) return;
    p.settled = true;
    p.reject(new RedisCommandError('timeout', `Redis ${this.address} did not answer within ${timeoutMs} ms`));
    // Its slot stays in `pending` (its reply, if it comes, must be matched). A connection that answers
    // nothing for long is hung (a stopped server, a black-holed network): re-make it.
    const oldest = this.pending[0];
    if (this.state === 'ready' && oldest !== undefined && oldest.bytes === null && performance.now() - oldest.sentAt > this.opts.staleMs) {
      this.lastError = `no reply for ${this.opts.staleMs} ms`;
      this.socket?.destroy();
    }
  }

  private failAll(why: string): void {
    const all = this.pending.splice(0);
    for (const p of all) {
      if (p.settled) continue;
      p.settled = true;
      clearTimeout(p.timer);
      p.reject(new RedisCommandError('unavailable', why));
    }
  }
}
