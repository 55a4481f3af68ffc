/**
 * The golden-signal routes of the control plane API (docs/control-plane.md): `GET /api/v1/stats`,
 * `/api/v1/stats/edges`, `/api/v1/stats/series`, `/api/v1/stats/tcp[/edges]` from the rolling window, and `GET /api/v1/tap`, a
 * live NDJSON stream of matching requests. The API server authenticates and routes here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseDuration } from '../../model/duration.js';
import { MAX_WINDOW_MS, STEP_MS, type StatsGrouping, type StatsStore } from './stats-store.js';
import type { TapHub } from './tap-hub.js';

const DEFAULT_WINDOW = '1m';
const DEFAULT_TAP_SECONDS = 30;
const MAX_TAP_SECONDS = 300;
const MAX_TAP_LIMIT = 100_000;
const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** A bad query: the API answers it with `status` and `{ error: { code, message } }`. */
export class StatsQueryError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** What is wrong with a tap's status filter (`5xx`, `404`), or null. */
function statusFilterProblem(v: string): string | null {
  return /^[1-5]xx$/.test(v) || /^[1-5]\d\d$/.test(v) ? null : `${JSON.stringify(v)} is not a status class like 5xx or a status like 404`;
}

function bad(message: string): StatsQueryError {
  return new StatsQueryError(400, 'BAD_REQUEST', message);
}

/** A window or step query parameter in milliseconds: a duration of at least 2 s and at most 10 m. */
function windowParam(q: URLSearchParams, name: string, fallback: string): { text: string; ms: number } {
  const text = q.get(name) ?? fallback;
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch {
    throw bad(`query parameter ${name}: ${JSON.stringify(text)} is not a duration like 10s, 1m, 5m`);
  }
  if (ms < STEP_MS || ms > MAX_WINDOW_MS) throw bad(`query parameter ${name}: ${text} is outside ${STEP_MS / 1000}s..${MAX_WINDOW_MS / 60_000}m`);
  return { text, ms };
}

/** `namespace/name` of a service query parameter. */
function serviceParam(q: URLSearchParams): string {
  const s = q.get('service');
  if (s === null) throw bad('query parameter service is required (namespace/name)');
  const [ns, name, extra] = s.split('/');
  if (extra !== undefined || name === undefined || !NAME.test(ns!) || !NAME.test(name)) throw bad(`query parameter service: ${JSON.stringify(s)} is not namespace/name`);
  return s;
}

/** `GET /api/v1/stats[/edges|/series|/tcp|/tcp/edges]`: the JSON body to answer. */
export function statsQuery(rest: string[], q: URLSearchParams, store: StatsStore, now = Date.now()): unknown {
  const window = windowParam(q, 'window', DEFAULT_WINDOW);
  const generatedAt = new Date(now).toISOString();
  if (rest.length === 0) {
    const by = q.get('by') ?? 'service';
    if (by !== 'service' && by !== 'route' && by !== 'workload') throw bad(`query parameter by: ${JSON.stringify(by)} is not service, route or workload`);
    const ns = q.get('namespace');
    return { window: window.text, generatedAt, rows: store.rows(by as StatsGrouping, window.ms, ns === null || ns === '' ? null : ns, now) };
  }
  if (rest.length === 1 && rest[0] === 'edges') return { window: window.text, generatedAt, edges: store.edges(window.ms, now) };
  if (rest.length === 1 && rest[0] === 'tcp') {
    const ns = q.get('namespace');
    return { window: window.text, generatedAt, rows: store.tcpRows(window.ms, ns === null || ns === '' ? null : ns, now) };
  }
  if (rest.length === 2 && rest[0] === 'tcp' && rest[1] === 'edges') return { window: window.text, generatedAt, edges: store.tcpEdges(window.ms, now) };
  if (rest.length === 1 && rest[0] === 'series') {
    const service = serviceParam(q);
    const step = windowParam(q, 'step', '10s');
    if (window.ms / step.ms > 300) throw bad(`query parameter step: ${step.text} makes more than 300 points over ${window.text}`);
    return { service, window: window.text, step: step.text, generatedAt, points: store.points(service, window.ms, step.ms, now) };
  }
  throw new StatsQueryError(404, 'NOT_FOUND', `no such path: /api/v1/stats/${rest.join('/')}`);
}

/**
 * `GET /api/v1/tap`: streams matching requests as NDJSON until `limit` events, `seconds`, or the
 * client leaves. The response starts at once (headers flushed), so a client knows the tap is open.
 */
export function tapStream(req: IncomingMessage, res: ServerResponse, q: URLSearchParams, hub: TapHub): void {
  const service = serviceParam(q);
  const method = q.get('method')?.toUpperCase() ?? null;
  if (method !== null && !/^[A-Z]{1,20}$/.test(method)) throw bad(`query parameter method: ${JSON.stringify(method)} is not a method like GET`);
  const path = q.get('path');
  if (path !== null && !path.startsWith('/')) throw bad(`query parameter path: ${JSON.stringify(path)} must start with /`);
  const status = q.get('status');
  const problem = status === null ? null : statusFilterProblem(status);
  if (problem !== null) throw bad(`query parameter status: ${problem}`);
  const count = (name: string, fallback: number, max: number): number => {
    const v = q.get(name);
    if (v === null) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw bad(`query parameter ${name}: ${JSON.stringify(v)} is not a whole number from 1 to ${max}`);
    return Number(v);
  };
  const limit = count('limit', MAX_TAP_LIMIT, MAX_TAP_LIMIT);
  const seconds = count('seconds', DEFAULT_TAP_SECONDS, MAX_TAP_SECONDS);
  let sent = 0;
  let done = false;
  let tap: ReturnType<TapHub['start']>;
  try {
    tap = hub.start({ service, method, path, status }, (e) => {
      if (done) return;
      res.write(JSON.stringify(e) + '\n');
      if (++sent >= limit) finish();
    });
  } catch (err) {
    throw new StatsQueryError(429, 'TOO_MANY_TAPS', (err as Error).message);
  }
  const timer = setTimeout(() => finish(), seconds * 1000);
  function finish(): void {
    if (done) return;
    done = true;
    clearTimeout(timer);
    tap.close();
    res.end();
  }
  req.socket.setTimeout(0);
  res.on('close', finish);
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'weft-tap-id': tap.id, 'weft-tap-proxies': String(tap.proxies.length) });
  res.flushHeaders();
}
