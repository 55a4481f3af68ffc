/**
 * Open-loop (fixed-rate) HTTP/1.1 load generator that avoids coordinated omission.
 *
 * Request i is *intended* to be sent at t0 + i / rate, whatever happened to earlier requests. Its
 * latency is measured from that intended time, so a stall in the server (or a shortage of free
 * connections) shows up as latency of every request that should have been sent during the stall —
 * the way wrk2 and HdrHistogram's "corrected" mode count it. A closed-loop tool (wrk, ab) would
 * instead wait politely and under-report the tail.
 *
 * Many keep-alive sockets, one request in flight per socket (no pipelining), a minimal response
 * parser (Content-Length or chunked bodies). Run as a script it prints one JSON result to stdout:
 *   node dist/bench/open-loop.js --port 8080 --rate 2000 --duration 10 [--warmup 1]
 *        [--connections 50] [--host 127.0.0.1] [--host-header upstream] [--path /] [--drain 5]
 *        [--spin-ms 2]
 * For rates up to ~8,000 req/s run it with `node --no-opt`: without the optimizing compiler the
 * generator is slower but never stalls for a JIT compilation (which otherwise shows up as
 * milliseconds of send lag during the first seconds when pinned to one core).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { LatencyHistogram, type LatencySummary } from './histogram.js';

/** What to load and how hard. */
export interface OpenLoopOptions {
  host: string;
  port: number;
  /** Requests per second, on a fixed schedule. */
  rate: number;
  durationSec: number;
  /** Seconds sent at the same rate before recording starts (connections, caches, JIT settle). */
  warmupSec: number;
  connections: number;
  hostHeader: string;
  path: string;
  /** How long to wait for outstanding responses after the last intended send. */
  drainSec: number;
  /** Below this wait (ms) the scheduler polls the event loop instead of sleeping in a timer. */
  spinMs: number;
}

/** What happened, with latencies measured from each request's intended send time. */
export interface OpenLoopResult {
  rate: number;
  durationSec: number;
  connections: number;
  /** Requests in the measured period (warm-up excluded); the counts below are for those only. */
  intended: number;
  completed: number;
  non2xx: number;
  errors: number;
  /** Requests with no response by the end of the drain period. */
  unfinished: number;
  achievedRate: number;
  latency: LatencySummary;
  /** How late the generator itself sent requests (intended → write); large values mean the
   *  generator, or a shortage of free connections, not the server, was behind. */
  sendLag: LatencySummary;
}

const NS_PER_MS = 1e6;

/** One keep-alive connection and the response it is parsing. */
interface Conn {
  socket: net.Socket | null;
  ready: boolean;
  /** Intended send time (ns since t0) of the request in flight, or -1. */
  inFlight: number;
  buf: Buffer;
  state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-end';
  status: number;
  remaining: number;
  closeAfter: boolean;
}

export function runOpenLoop(opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const request = Buffer.from(
    `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.hostHeader}\r\nUser-Agent: weft-bench-open-loop\r\n\r\n`,
  );
  const warmupCount = Math.round(opts.rate * opts.warmupSec);
  const measured = Math.max(1, Math.round(opts.rate * opts.durationSec));
  const total = warmupCount + measured;
  const intervalNs = 1e9 / opts.rate;
  const latency = new LatencyHistogram();
  const sendLag = new LatencyHistogram();
  // performance.now() (a double, µs precision or better) rather than hrtime.bigint(): the scheduler
  // calls it in a hot loop and a BigInt per call would feed the GC.
  const origin = performance.now();
  const now = (): number => (performance.now() - origin) * NS_PER_MS;

  let t0 = 0; // set once every socket is connected
  let next = 0; // index of the next request to schedule
  let measureFrom = 0; // intended time (ns) of the first recorded request
  let done = 0; // responses and failures, warm-up included
  let completed = 0;
  let non2xx = 0;
  let errors = 0;
  let finished = false;
  // Requests that are due but waiting for a free connection (intended times, ns). Bounded by `total`.
  const backlog: number[] = [];
  let backlogHead = 0;
  const idle: Conn[] = [];
  const conns: Conn[] = [];

  return new Promise<OpenLoopResult>((resolve, reject) => {
    let tickTimer: NodeJS.Timeout | null = null;
    let drainTimer: NodeJS.Timeout | null = null;
    let lastSendAt = 0;

    const finish = (): void => {
      if (finished) return;
      finished = true;
      if (tickTimer) clearTimeout(tickTimer);
      if (drainTimer) clearTimeout(drainTimer);
      for (const c of conns) c.socket?.destroy();
      const elapsedSec = Math.max((lastSendAt - measureFrom) / 1e9, 1e-9);
      resolve({
        rate: opts.rate,
        durationSec: opts.durationSec,
        connections: opts.connections,
        intended: measured,
        completed,
        non2xx,
        errors,
        unfinished: measured - completed - errors,
        achievedRate: completed / Math.max(elapsedSec, opts.durationSec),
        latency: latency.summary(),
        sendLag: sendLag.summary(),
      });
    };

    const maybeDone = (): void => {
      if (next >= total && done >= total) finish();
    };

    const send = (c: Conn, intended: number): void => {
      c.inFlight = intended;
      const t = now();
      lastSendAt = t;
      if (intended >= measureFrom) sendLag.recordNs(t - intended);
      c.socket!.write(request);
    };

    const dispatch = (): void => {
      while (backlogHead < backlog.length && idle.length > 0) {
        const c = idle.shift()!;
        send(c, backlog[backlogHead++]!);
      }
      if (backlogHead > 4096 && backlogHead * 2 > backlog.length) {
        backlog.splice(0, backlogHead);
        backlogHead = 0;
      }
    };

    const onResponse = (c: Conn): void => {
      const t = now();
      if (c.inFlight < 0) return;
      done += 1;
      if (c.inFlight >= measureFrom) {
        latency.recordNs(t - c.inFlight);
        completed += 1;
        if (c.status < 200 || c.status > 299) non2xx += 1;
      }
      c.inFlight = -1;
      if (c.closeAfter) {
        reconnect(c);
      } else {
        idle.push(c);
        dispatch();
      }
      maybeDone();
    };

    const fail = (c: Conn): void => {
      if (c.inFlight >= 0) {
        done += 1;
        if (c.inFlight >= measureFrom) errors += 1;
        c.inFlight = -1;
      }
      const i = idle.indexOf(c);
      if (i >= 0) idle.splice(i, 1);
      maybeDone();
    };

    const parse = (c: Conn): boolean => {
      for (;;) {
        if (c.state === 'head') {
          const end = c.buf.indexOf('\r\n\r\n');
          if (end < 0) return true;
          const lines = c.buf.toString('latin1', 0, end).split('\r\n');
          c.buf = c.buf.subarray(end + 4);
          c.status = Number.parseInt(lines[0]!.slice(9, 12), 10);
          let length = 0;
          let chunked = false;
          c.closeAfter = false;
          for (let i = 1; i < lines.length; i++) {
            const line = lines[i]!;
            const colon = line.indexOf(':');
            const name = line.slice(0, colon).trim().toLowerCase();
            const value = line.slice(colon + 1).trim().toLowerCase();
            if (name === 'content-length') length = Number.parseInt(value, 10);
            else if (name === 'transfer-encoding') chunked = value.includes('chunked');
            else if (name === 'connection') c.closeAfter = value.includes('close');
          }
          if (!Number.isFinite(c.status) || !Number.isFinite(length)) return false;
          if (c.status >= 100 && c.status < 200) continue; // interim response: wait for the final one
          if (chunked) c.state = 'chunk-size';
          else if (length > 0) {
            c.state = 'body';
            c.remaining = length;
          } else onResponse(c);
        } else if (c.state === 'body') {
          const take = Math.min(c.remaining, c.buf.length);
          c.remaining -= take;
          c.buf = c.buf.subarray(take);
          if (c.remaining > 0) return true;
          c.state = 'head';
          onResponse(c);
        } else if (c.state === 'chunk-size') {
          const eol = c.buf.indexOf('\r\n');
          if (eol < 0) return true;
          const size = Number.parseInt(c.buf.toString('latin1', 0, eol).split(';')[0]!, 16);
          if (!Number.isFinite(size)) return false;
          c.buf = c.buf.subarray(eol + 2);
          c.remaining = size;
          c.state = size === 0 ? 'chunk-end' : 'chunk-data';
        } else if (c.state === 'chunk-data') {
          const take = Math.min(c.remaining, c.buf.length);
          c.remaining -= take;
          c.buf = c.buf.subarray(take);
          if (c.remaining > 0) return true;
          if (c.buf.length < 2) return true;
          c.buf = c.buf.subarray(2); // CRLF after the chunk data
          c.state = 'chunk-size';
        } else {
          // Last chunk seen: skip trailers up to the empty line.
          const eol = c.buf.indexOf('\r\n');
          if (eol < 0) return true;
          c.buf = c.buf.subarray(eol + 2);
          if (eol === 0) {
            c.state = 'head';
            onResponse(c);
          }
        }
        if (c.buf.length === 0) return true;
      }
    };

    const connect = (c: Conn, onFirstConnect?: () => void): void => {
      c.ready = false;
      c.buf = Buffer.alloc(0);
      c.state = 'head';
      const socket = net.connect({ host: opts.host, port: opts.port, noDelay: true });
      c.socket = socket;
      socket.on('connect', () => {
        c.ready = true;
        if (t0 === 0) {
          onFirstConnect?.();
        } else {
          idle.push(c);
          dispatch();
        }
      });
      socket.on('data', (chunk: Buffer) => {
        if (c.socket !== socket) return;
        c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
        if (c.inFlight < 0 && c.state === 'head') {
          // Bytes nobody asked for: the connection is out of sync.
          socket.destroy();
          return;
        }
        if (!parse(c)) socket.destroy();
      });
      socket.on('error', () => {
        /* handled on close */
      });
      socket.on('close', () => {
        if (c.socket !== socket) return;
        c.socket = null;
        fail(c);
        if (!finished && t0 !== 0) setTimeout(() => !finished && connect(c), 10);
      });
    };

    const reconnect = (c: Conn): void => {
      const old = c.socket;
      c.socket = null;
      old?.destroy();
      connect(c);
    };

    const tick = (): void => {
      tickTimer = null;
      if (finished) return;
      const t = now();
      while (next < total && t0 + next * intervalNs <= t) {
        backlog.push(t0 + next * intervalNs);
        next += 1;
      }
      dispatch();
      if (next >= total) {
        drainTimer = setTimeout(finish, opts.drainSec * 1000);
        maybeDone();
        return;
      }
      const waitMs = (t0 + next * intervalNs - t) / NS_PER_MS;
      // A timer cannot fire with sub-millisecond precision; near the next send we poll the event loop
      // (setImmediate still lets socket I/O run in between) instead of oversleeping.
      if (waitMs > opts.spinMs) tickTimer = setTimeout(tick, Math.max(0, Math.floor(waitMs - opts.spinMs)));
      else setImmediate(tick);
    };

    let connected = 0;
    const connectDeadline = setTimeout(() => {
      if (t0 === 0) {
        finished = true;
        for (const c of conns) c.socket?.destroy();
        reject(new Error(`open-loop: only ${connected}/${opts.connections} connections opened in 5 s`));
      }
    }, 5000);
    for (let i = 0; i < opts.connections; i++) {
      const c: Conn = {
        socket: null,
        ready: false,
        inFlight: -1,
        buf: Buffer.alloc(0),
        state: 'head',
        status: 0,
        remaining: 0,
        closeAfter: false,
      };
      conns.push(c);
      connect(c, () => {
        connected += 1;
        if (connected === opts.connections && t0 === 0) {
          clearTimeout(connectDeadline);
          for (const k of conns) if (k.ready) idle.push(k);
          t0 = now();
          measureFrom = t0 + warmupCount * intervalNs;
          tick();
        }
      });
    }
  });
}

function parseArgs(argv: string[]): OpenLoopOptions {
  const get = (name: string, fallback: string): string => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : fallback;
  };
  const num = (name: string, fallback: number): number => {
    const v = Number(get(name, String(fallback)));
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
    return v;
  };
  return {
    host: get('host', '127.0.0.1'),
    port: num('port', 0),
    rate: num('rate', 2000),
    durationSec: num('duration', 10),
    connections: Math.round(num('connections', 50)),
    hostHeader: get('host-header', 'upstream'),
    path: get('path', '/'),
    drainSec: num('drain', 5),
    warmupSec: Number(get('warmup', '0')),
    spinMs: Number(get('spin-ms', '2')),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runOpenLoop(parseArgs(process.argv.slice(2))).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
