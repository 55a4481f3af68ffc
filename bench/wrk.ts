/**
 * Closed-loop maximum throughput with wrk: every connection sends its next request as soon as the
 * previous response arrives, so req/s is the most the proxy can serve with that many connections.
 */
import { launch } from './lib/processes.js';
import { oneLine } from './lib/http-probe.js';

export interface WrkOptions {
  port: number;
  connections: number;
  threads: number;
  durationSec: number;
  hostHeader: string;
  /** Core wrk is pinned to (the load core). */
  core: number | null;
}

/** The numbers we use from wrk's report. */
export interface WrkResult {
  requestsPerSec: number;
  requests: number;
  seconds: number;
  avgLatencyMs: number;
  non2xx: number;
  socketErrors: number;
  raw: string;
}

export async function runWrk(opts: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${opts.threads}`,
    `-c${opts.connections}`,
    `-d${opts.durationSec}s`,
    '-H',
    `Host: ${opts.hostHeader}`,
    `http://127.0.0.1:${opts.port}/`,
  ];
  const wrk = launch('wrk', 'wrk', args, { core: opts.core });
  const limitMs = (opts.durationSec + 15) * 1000;
  const timer = setTimeout(() => void wrk.stop(), limitMs);
  const code = await wrk.exited;
  clearTimeout(timer);
  await wrk.stop();
  const raw = wrk.outputTail();
  if (code !== 0) throw new Error(`wrk exited (${code}): ${oneLine(raw)}`);
  return parseWrk(raw);
}

export function parseWrk(raw: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(raw);
  if (!rps) throw new Error(`could not parse wrk output: ${oneLine(raw)}`);
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(raw);
  const latency = /Latency\s+([\d.]+)(us|ms|s|m)\b/.exec(raw);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(raw);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  return {
    requestsPerSec: Number(rps[1]),
    requests: total ? Number(total[1]) : Number.NaN,
    seconds: total ? toMs(Number(total[2]), total[3]!) / 1000 : Number.NaN,
    avgLatencyMs: latency ? toMs(Number(latency[1]), latency[2]!) : Number.NaN,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: sock ? sock.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0,
    raw,
  };
}

function toMs(value: number, unit: string): number {
  switch (unit) {
    case 'us':
      return value / 1000;
    case 'ms':
      return value;
    case 's':
      return value * 1000;
    default:
      return value * 60_000;
  }
}
