/**
 * The golden-signal views, like `linkerd viz`: `weft stat` (requests/s, success rate, latency
 * quantiles, mTLS share per service, route or workload; `weft stat tcp`: connections and bytes), `weft edges` (who calls whom, with
 * identities), `weft tap` (a live line per request) and `weft top` (tap aggregated by path).
 */
import type { StatsEdge, StatsRow, TcpStatsRow } from '../control/telemetry/stats-store.js';
import type { ApiTapEvent } from '../control/telemetry/tap-hub.js';
import { ApiError, api, authHeaders, serverUrl, wrongTokenHint } from './api-client.js';
import { UsageError, duration, type Command } from './command.js';
import { table } from './table.js';

function output(v: Record<string, unknown>, allowed: string[]): string {
  const o = (v.output as string | undefined) ?? 'table';
  if (!allowed.includes(o)) throw new UsageError(`-o: "${o}" is not one of ${allowed.join(', ')}`);
  return o;
}

/** A `--window` flag: a duration from 2s to 10m, passed on as written. */
function windowFlag(v: Record<string, unknown>): string {
  const w = v.window as string;
  const ms = duration(w, 'window');
  if (ms < 2000 || ms > 600_000) throw new UsageError(`--window: "${w}" is outside 2s..10m`);
  return w;
}

const pct = (x: number | null): string => (x === null ? '-' : `${(x * 100).toFixed(2)}%`);
const rps = (x: number): string => `${x.toFixed(1)}rps`;
const ms = (x: number | null): string => (x === null ? '-' : x >= 1000 ? `${(x / 1000).toFixed(2)}s` : x >= 10 ? `${Math.round(x)}ms` : `${x.toFixed(2)}ms`);

/** Bytes per second with a binary unit, like `1.5KiB/s`. */
export function byteRate(x: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(x) : x.toFixed(1)}${units[i]}/s`;
}

/** `weft stat tcp`: a row per destination service. */
async function statTcp(v: Record<string, unknown>, o: string): Promise<number> {
  const q = new URLSearchParams({ window: windowFlag(v) });
  if (typeof v.namespace === 'string') q.set('namespace', v.namespace);
  const { body } = await api<{ window: string; rows: TcpStatsRow[] }>('GET', `/api/v1/stats/tcp?${q}`);
  if (o === 'json') {
    console.log(JSON.stringify(body, null, 2));
    return 0;
  }
  if (body.rows.length === 0) {
    console.log(`no TCP connections reported in the last ${body.window}`);
    return 0;
  }
  console.log(
    table(
      ['NAMESPACE', 'NAME', 'CONN/S', 'ACTIVE', 'READ_BYTES/S', 'WRITE_BYTES/S', 'MTLS', 'CONNECTIONS'],
      body.rows.map((r) => [r.namespace, r.service, r.connectionsPerSecond.toFixed(2), String(r.activeConnections), byteRate(r.readBytesPerSecond), byteRate(r.writeBytesPerSecond), pct(r.mtlsRate), String(r.connections)]),
    ),
  );
  return 0;
}

const GROUPS: Record<string, 'service' | 'route' | 'workload'> = { services: 'service', service: 'service', svc: 'service', routes: 'route', route: 'route', workloads: 'workload', workload: 'workload', wl: 'workload' };

export const statCommand: Command = {
  summary: 'golden signals per service, route or workload (success rate, requests/s, latency)',
  usage: 'weft stat [services|routes|workloads|tcp] [-n NAMESPACE] [--window 1m] [-o table|json]',
  positionals: true,
  options: {
    namespace: { type: 'string', short: 'n' },
    window: { type: 'string', short: 'w', default: '1m' },
    output: { type: 'string', short: 'o' },
  },
  help: `Golden signals from the control plane's rolling window, which every proxy feeds every 2 s.
  services   (default) per destination service, as its own proxies served it (as its callers saw it
             when it has no proxy)
  routes     per route of the callers (HTTPRoute rules are chosen on the calling side)
  workloads  per workload, as its proxy served it
  tcp        TCP traffic per destination service, from the same side as services: CONN/S
             connections opened a second, ACTIVE open at the window's end, READ_BYTES/S from the
             clients and WRITE_BYTES/S to them (counted as they move, every 2 s), MTLS the share of
             connections opened over mutual TLS, CONNECTIONS opened in the window
SUCCESS counts everything but 5xx answers and mesh errors (an app's 4xx is a success, as in Linkerd).
LATENCY_P50/P95/P99 come from the merged duration histograms (interpolated inside a bucket).
MTLS is the share of requests carried over mutual TLS. The window is 2s..10m (default 1m) and
ends 2-4 s ago, the time the last reports take to arrive.`,
  run: async (v, positionals) => {
    if (positionals.length > 1) throw new UsageError('give at most one of services, routes, workloads, tcp');
    if (positionals[0] === 'tcp') return statTcp(v, output(v, ['table', 'json']));
    const by = GROUPS[positionals[0] ?? 'services'];
    if (by === undefined) throw new UsageError(`"${positionals[0]}" is not services, routes, workloads or tcp`);
    const o = output(v, ['table', 'json']);
    const q = new URLSearchParams({ by, window: windowFlag(v) });
    if (typeof v.namespace === 'string') q.set('namespace', v.namespace);
    const { body } = await api<{ window: string; rows: StatsRow[] }>('GET', `/api/v1/stats?${q}`);
    if (o === 'json') {
      console.log(JSON.stringify(body, null, 2));
      return 0;
    }
    if (body.rows.length === 0) {
      console.log(`no requests reported in the last ${body.window}`);
      return 0;
    }
    const extra = by === 'route' ? ['ROUTE'] : by === 'workload' ? ['WORKLOAD'] : [];
    console.log(
      table(
        ['NAMESPACE', 'NAME', ...extra, 'SUCCESS', 'RPS', 'LATENCY_P50', 'LATENCY_P95', 'LATENCY_P99', 'MTLS', 'REQUESTS'],
        body.rows.map((r) => [r.namespace, r.service, ...(by === 'route' ? [r.route ?? '-'] : by === 'workload' ? [r.workload ?? '-'] : []), pct(r.successRate), rps(r.requestsPerSecond), ms(r.p50Ms), ms(r.p95Ms), ms(r.p99Ms), pct(r.mtlsRate), String(r.requests)]),
      ),
    );
    return 0;
  },
};

export const edgesCommand: Command = {
  summary: 'who calls whom: service edges with identities and mTLS',
  usage: 'weft edges [-n NAMESPACE] [--window 1m] [-o table|json]',
  options: {
    namespace: { type: 'string', short: 'n' },
    window: { type: 'string', short: 'w', default: '1m' },
    output: { type: 'string', short: 'o' },
  },
  help: `Every caller → service pair with requests in the window, as the destination's proxy saw it (its
caller's verified SPIFFE ID) or, when the destination has no proxy, as the caller's proxy did.
A caller without a mesh identity shows as (unmeshed). -n keeps edges with an end in NAMESPACE.`,
  run: async (v) => {
    const o = output(v, ['table', 'json']);
    const { body } = await api<{ window: string; edges: StatsEdge[] }>('GET', `/api/v1/stats/edges?${new URLSearchParams({ window: windowFlag(v) })}`);
    const ns = v.namespace as string | undefined;
    const inNs = (s: string): boolean => s.split('/', 1)[0] === ns;
    const edges = ns === undefined ? body.edges : body.edges.filter((e) => inNs(e.source) || inNs(e.destination));
    if (o === 'json') {
      console.log(JSON.stringify({ ...body, edges }, null, 2));
      return 0;
    }
    if (edges.length === 0) {
      console.log(`no requests reported in the last ${body.window}`);
      return 0;
    }
    console.log(
      table(
        ['SRC', 'DST', 'SRC_IDENTITY', 'DST_IDENTITY', 'MTLS', 'RPS', 'SUCCESS'],
        edges.map((e) => [e.source, e.destination, e.sourceIdentity ?? '-', e.destinationIdentity ?? '-', String(e.mtls), rps(e.requestsPerSecond), pct(e.successRate)]),
      ),
    );
    return 0;
  },
};

/** A service positional: `namespace/name`, or `name` in `-n NAMESPACE` (default `default`). */
function serviceArg(positionals: string[], namespace: unknown): string {
  if (positionals.length !== 1) throw new UsageError('give one service, as namespace/name');
  const s = positionals[0]!;
  const full = s.includes('/') ? s : `${typeof namespace === 'string' ? namespace : 'default'}/${s}`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(full)) throw new UsageError(`"${s}" is not a service (namespace/name)`);
  return full;
}

function count(v: unknown, flag: string, max: number): string {
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new UsageError(`--${flag}: "${String(v)}" is not a whole number from 1 to ${max}`);
  return v;
}

/**
 * Opens `GET /api/v1/tap` and calls `onEvent` per line until the stream ends, the time is up, or
 * `stop` aborts it. Resolves with the number of events.
 */
async function streamTap(q: URLSearchParams, seconds: number, onEvent: (e: ApiTapEvent) => void, stop: AbortSignal): Promise<number> {
  const url = `${serverUrl()}/api/v1/tap?${q}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: authHeaders(), signal: AbortSignal.any([stop, AbortSignal.timeout((seconds + 15) * 1000)]) });
  } catch (err) {
    if (stop.aborted) return 0;
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new ApiError(0, `cannot reach the control plane at ${serverUrl()} (${cause})`);
  }
  if (res.status === 401) throw new ApiError(401, `GET /api/v1/tap: refused: ${wrongTokenHint()}`);
  if (res.status !== 200 || res.body === null) {
    const text = await res.text();
    let message = `HTTP ${res.status}`;
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
    } catch {
      // not JSON: the status says enough
    }
    throw new ApiError(res.status, message);
  }
  let n = 0;
  let buffered = '';
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line === '') continue;
        n++;
        onEvent(JSON.parse(line) as ApiTapEvent);
      }
    }
  } catch (err) {
    if (!stop.aborted && (err as Error).name !== 'TimeoutError') throw err;
  }
  return n;
}

/** An AbortController that Ctrl-C (SIGINT) aborts, and a function that removes the handler. */
function interruptible(): { signal: AbortSignal; done(): void } {
  const ac = new AbortController();
  const onInt = (): void => ac.abort();
  process.once('SIGINT', onInt);
  return { signal: ac.signal, done: () => process.removeListener('SIGINT', onInt) };
}

/** One tap event as a line, like `linkerd viz tap`. */
export function tapLine(e: ApiTapEvent): string {
  const parts = [
    e.time,
    e.direction === 'inbound' ? 'in ' : 'out',
    `${e.method} ${e.authority}${e.path}`,
    `status=${e.status}`,
    `dur=${ms(e.durationMs)}`,
    `src=${e.source ?? '-'}`,
    `dst=${e.destination}`,
    `mtls=${e.mtls}`,
  ];
  if (e.sourceIdentity !== null) parts.push(`src_id=${e.sourceIdentity}`);
  if (e.grpcStatus !== null) parts.push(`grpc=${e.grpcStatus}`);
  if (e.errorCode !== '') parts.push(`error=${e.errorCode}`);
  if (e.upstreamHost !== '') parts.push(`upstream=${e.upstreamHost}`);
  if (e.traceId !== '') parts.push(`trace=${e.traceId}`);
  parts.push(`proxy=${e.proxy}`);
  return parts.join(' ');
}

const TAP_OPTIONS = {
  namespace: { type: 'string', short: 'n' },
  method: { type: 'string' },
  path: { type: 'string' },
  status: { type: 'string' },
} as const;

function tapQuery(service: string, v: Record<string, unknown>): URLSearchParams {
  const q = new URLSearchParams({ service });
  if (typeof v.method === 'string') q.set('method', v.method.toUpperCase());
  if (typeof v.path === 'string') {
    if (!v.path.startsWith('/')) throw new UsageError(`--path: "${v.path}" must start with /`);
    q.set('path', v.path);
  }
  if (typeof v.status === 'string') {
    if (!/^[1-5](xx|\d\d)$/.test(v.status)) throw new UsageError(`--status: "${v.status}" is not a class like 5xx or a status like 404`);
    q.set('status', v.status);
  }
  return q;
}

export const tapCommand: Command = {
  summary: 'a live line per request to a service',
  usage: 'weft tap NAMESPACE/SERVICE [--method M] [--path PREFIX] [--status 5xx|404] [--limit N] [--seconds N] [-o json]',
  positionals: true,
  options: {
    ...TAP_OPTIONS,
    limit: { type: 'string' },
    seconds: { type: 'string', default: '30' },
    output: { type: 'string', short: 'o' },
  },
  help: `Streams requests to the service as they complete, from the proxies that serve it (direction in)
and those that call it (out), until --limit requests, --seconds (default 30, at most 300), or Ctrl-C.
Filters apply at the proxies: --method (exact), --path (prefix), --status (5xx, 404, …).
Each proxy sends at most 100 events a second; tapping costs nothing while no tap is open.`,
  run: async (v, positionals) => {
    const o = output(v, ['table', 'json']);
    const q = tapQuery(serviceArg(positionals, v.namespace), v);
    const seconds = Number(count(v.seconds, 'seconds', 300));
    q.set('seconds', String(seconds));
    if (v.limit !== undefined) q.set('limit', count(v.limit, 'limit', 100_000));
    const stop = interruptible();
    try {
      await streamTap(q, seconds, (e) => console.log(o === 'json' ? JSON.stringify(e) : tapLine(e)), stop.signal);
    } finally {
      stop.done();
    }
    return 0;
  },
};

/** What `weft top` keeps per method and path. */
interface TopRow {
  method: string;
  path: string;
  count: number;
  ok: number;
  best: number;
  worst: number;
  last: number;
}

/** Aggregates tap events per method and path; inbound events (the service's own view) when there are any, else outbound. */
export class TopTable {
  private readonly rows = { inbound: new Map<string, TopRow>(), outbound: new Map<string, TopRow>() };

  add(e: ApiTapEvent): void {
    const q = e.path.indexOf('?');
    const path = q === -1 ? e.path : e.path.slice(0, q);
    const m = this.rows[e.direction === 'inbound' ? 'inbound' : 'outbound'];
    const key = `${e.method} ${path}`;
    let r = m.get(key);
    if (r === undefined) m.set(key, (r = { method: e.method, path, count: 0, ok: 0, best: Infinity, worst: 0, last: 0 }));
    r.count++;
    if (e.status < 500 && e.errorCode === '') r.ok++;
    r.best = Math.min(r.best, e.durationMs);
    r.worst = Math.max(r.worst, e.durationMs);
    r.last = e.durationMs;
  }

  render(): string {
    const m = this.rows.inbound.size > 0 ? this.rows.inbound : this.rows.outbound;
    if (m.size === 0) return 'no requests yet';
    const rows = [...m.values()].sort((a, b) => b.count - a.count || a.path.localeCompare(b.path));
    return table(
      ['METHOD', 'PATH', 'COUNT', 'BEST', 'WORST', 'LAST', 'SUCCESS'],
      rows.map((r) => [r.method, r.path, String(r.count), ms(r.best), ms(r.worst), ms(r.last), pct(r.ok / r.count)]),
    );
  }
}

export const topCommand: Command = {
  summary: 'requests to a service aggregated by path, live',
  usage: 'weft top NAMESPACE/SERVICE [--seconds N] [--method M] [--path PREFIX] [--status 5xx|404]',
  positionals: true,
  options: { ...TAP_OPTIONS, seconds: { type: 'string', default: '30' } },
  help: `Taps the service for --seconds (default 30, at most 300; Ctrl-C ends sooner) and counts requests
per method and path, with the best, worst and last latency and the success rate. On a terminal the
table refreshes in place every second; otherwise it is printed once at the end. Counts are of the
service's proxies (inbound) when it has any, else of its callers.`,
  run: async (v, positionals) => {
    const q = tapQuery(serviceArg(positionals, v.namespace), v);
    const seconds = Number(count(v.seconds, 'seconds', 300));
    q.set('seconds', String(seconds));
    const top = new TopTable();
    const tty = process.stdout.isTTY === true;
    const started = Date.now();
    const draw = (): void => {
      process.stdout.write(`\x1b[H\x1b[2J${q.get('service')}: ${Math.round((Date.now() - started) / 1000)}s of ${seconds}s (Ctrl-C to stop)\n\n${top.render()}\n`);
    };
    const timer = tty ? setInterval(draw, 1000) : null;
    const stop = interruptible();
    try {
      await streamTap(q, seconds, (e) => top.add(e), stop.signal);
    } finally {
      stop.done();
      if (timer !== null) clearInterval(timer);
    }
    if (tty) draw();
    else console.log(top.render());
    return 0;
  },
};
