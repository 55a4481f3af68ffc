/**
 * The control plane's rolling window of golden signals (the embedded default: no Prometheus needed).
 * Proxies report request deltas every 2 s over their config stream (model/golden-signals.ts); each
 * series — direction, reporting proxy (inbound only), source and destination service and identity,
 * route, mTLS — keeps a ring of RING_STEPS buckets of STEP_MS: requests, failures and duration
 * buckets. A report's deltas are spread over the interval it covers, so rates do not jump with the
 * phase of the proxies' timers. Bounded: at most MAX_SERIES series (a report's new series beyond that
 * are dropped and counted; series with nothing in the ring are evicted), each a fixed ring.
 *
 * A window is the last N whole buckets before the previous one: the bucket in progress and the one
 * before it are still being filled by reports in flight, so answers lag 2–4 s and never undercount.
 * Quantiles come from the merged duration buckets with linear interpolation inside the bucket, as
 * Prometheus' histogram_quantile does.
 *
 * TCP series (direction, reporting proxy, source, destination, mTLS) keep their own ring, bounded the
 * same way: connections opened and bytes each way, spread like requests, and the open-connection
 * gauge sampled in the bucket its report arrived in. A window's ACTIVE is the newest sample at its end.
 */
import { STATS_DURATION_BOUNDS, STATS_REPORT_MS, apiServiceName, type StatsReport, type StatsSeriesDelta, type StatsTcpDelta } from '../../model/golden-signals.js';

/** Width of a bucket of the ring. */
export const STEP_MS = STATS_REPORT_MS;
/** The longest window answered. */
export const MAX_WINDOW_MS = 10 * 60_000;
/** The window, plus the bucket being filled, the one before it, and one spare. */
const RING_STEPS = MAX_WINDOW_MS / STEP_MS + 3;
/** Series kept at most (each about 22 KB: RING_STEPS × 18 float32). */
export const MAX_SERIES = 2000;
/** A report's deltas are spread over at most this much time before its arrival. */
const MAX_SPREAD_MS = 10_000;
const BUCKETS = STATS_DURATION_BOUNDS.length + 1;
/** Values per ring slot: requests, failures, then the duration buckets. */
const WIDTH = 2 + BUCKETS;

/** One row of `GET /api/v1/stats` (the API contract with the dashboard). */
export interface StatsRow {
  namespace: string;
  service: string;
  route: string | null;
  workload: string | null;
  requestsPerSecond: number;
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  requests: number;
  errors: number;
  mtlsRate: number | null;
}

/** One edge of `GET /api/v1/stats/edges`. */
export interface StatsEdge {
  source: string;
  destination: string;
  sourceIdentity: string | null;
  destinationIdentity: string | null;
  mtls: boolean;
  requestsPerSecond: number;
  successRate: number | null;
  p99Ms: number | null;
  requests: number;
}

/** One row of `GET /api/v1/stats/tcp`: a destination service's TCP traffic (bytes of closed connections). */
export interface TcpStatsRow {
  namespace: string;
  service: string;
  /** Connections opened per second, and open at the end of the window. */
  connectionsPerSecond: number;
  activeConnections: number;
  /** Bytes per second received from the clients (read) and sent to them (written). */
  readBytesPerSecond: number;
  writeBytesPerSecond: number;
  /** Share of the connections opened that were mutual TLS; null when none opened. */
  mtlsRate: number | null;
  connections: number;
  readBytes: number;
  writeBytes: number;
}

/** One edge of `GET /api/v1/stats/tcp/edges`: TCP connections from a source service to a destination. */
export interface TcpStatsEdge {
  source: string;
  destination: string;
  mtls: boolean;
  connectionsPerSecond: number;
  activeConnections: number;
  readBytesPerSecond: number;
  writeBytesPerSecond: number;
  connections: number;
  readBytes: number;
  writeBytes: number;
}

/** One point of `GET /api/v1/stats/series`. */
export interface StatsPoint {
  t: number;
  requestsPerSecond: number;
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

export type StatsGrouping = 'service' | 'route' | 'workload';

/** Counters for the control plane's metrics. */
export interface StatsStoreCounters {
  reports: number;
  /** Request series of reports refused because MAX_SERIES were kept. */
  seriesDropped: number;
  /** TCP series of reports refused because MAX_SERIES TCP series were kept. */
  tcpSeriesDropped: number;
  /** Request series entries of reports refused as malformed. */
  malformed: number;
  /** TCP series entries of reports refused as malformed. */
  tcpMalformed: number;
}

/**
 * A ring of RING_STEPS buckets of `width` values each: a bucket's slot is reset when a newer bucket
 * takes it, so a slot holds one bucket number's values or nothing.
 */
class Ring {
  readonly ring: Float32Array | Float64Array;
  /** The bucket number each slot holds; -1: empty. */
  readonly stamps = new Float64Array(RING_STEPS).fill(-1);
  /** The newest bucket with data. */
  last = -1;
  constructor(
    readonly width: number,
    /** 64-bit where totals can outgrow a 32-bit float's integers (byte counts). */
    wide: boolean,
  ) {
    this.ring = wide ? new Float64Array(RING_STEPS * width) : new Float32Array(RING_STEPS * width);
  }

  /** The offset of `bucket`'s values, its slot taken over (and cleared) when it held an older one. */
  protected slot(bucket: number): number {
    const slot = bucket % RING_STEPS;
    const at = slot * this.width;
    if (this.stamps[slot] !== bucket) {
      this.ring.fill(0, at, at + this.width);
      this.stamps[slot] = bucket;
    }
    if (bucket > this.last) this.last = bucket;
    return at;
  }

  /** Calls `each(bucket, offset)` for every bucket of `from`..`to` (inclusive) the ring holds. */
  protected forEach(from: number, to: number, each: (bucket: number, at: number) => void): void {
    for (let k = Math.max(from, to - RING_STEPS + 1); k <= to; k++) {
      const slot = k % RING_STEPS;
      if (this.stamps[slot] === k) each(k, slot * this.width);
    }
  }
}

class Series extends Ring {
  constructor(
    readonly direction: 'inbound' | 'outbound',
    /** Inbound: the reporting proxy (`namespace/workload`); '' outbound (callers' replicas merge). */
    readonly proxy: string,
    readonly src: string,
    readonly srcId: string,
    readonly dst: string,
    readonly dstId: string,
    readonly route: string,
    readonly mtls: boolean,
  ) {
    super(WIDTH, false);
  }

  add(bucket: number, share: number, d: StatsSeriesDelta): void {
    const at = this.slot(bucket);
    this.ring[at]! += d.n * share;
    this.ring[at + 1]! += d.err * share;
    for (let i = 0; i < BUCKETS; i++) this.ring[at + 2 + i]! += d.b[i]! * share;
  }

  /** Adds buckets `from`..`to` (inclusive) into `acc` (WIDTH values). */
  sum(from: number, to: number, acc: Float64Array): void {
    if (this.last < from) return;
    this.forEach(from, to, (_k, at) => {
      for (let i = 0; i < WIDTH; i++) acc[i]! += this.ring[at + i]!;
    });
  }
}

/** Values per TCP ring slot: opened, bytes received, bytes sent, then the gauge's sum and samples. */
const TCP_WIDTH = 5;
/** The gauge is read from the newest sample in the last this many buckets of a window (reports come every bucket). */
const GAUGE_LOOKBACK = 3;

class TcpSeries extends Ring {
  constructor(
    readonly direction: 'inbound' | 'outbound',
    readonly src: string,
    readonly dst: string,
    readonly mtls: boolean,
  ) {
    super(TCP_WIDTH, true);
  }

  add(bucket: number, share: number, d: StatsTcpDelta): void {
    const at = this.slot(bucket);
    this.ring[at]! += d.opened * share;
    this.ring[at + 1]! += d.rx * share;
    this.ring[at + 2]! += d.tx * share;
  }

  sample(bucket: number, active: number): void {
    const at = this.slot(bucket);
    this.ring[at + 3]! += active;
    this.ring[at + 4]!++;
  }

  /** Adds opened and bytes of buckets `from`..`to` into `acc`; returns the gauge at `to` (0 without a recent sample). */
  sum(from: number, to: number, acc: Float64Array): number {
    if (this.last < from - GAUGE_LOOKBACK) return 0;
    let gauge = 0;
    let gaugeAt = -Infinity;
    this.forEach(from - GAUGE_LOOKBACK, to, (k, at) => {
      if (k >= from) for (let i = 0; i < 3; i++) acc[i]! += this.ring[at + i]!;
      if (k > to - GAUGE_LOOKBACK && this.ring[at + 4]! > 0 && k > gaugeAt) {
        gauge = this.ring[at + 3]! / this.ring[at + 4]!;
        gaugeAt = k;
      }
    });
    return gauge;
  }
}

/**
 * Spreads a report over the buckets of the interval it covers (ending at `now`, in bucket `cur`),
 * each taking its share of the time; an interval of 0 goes whole into `cur`.
 */
function spread(now: number, interval: number, cur: number, add: (bucket: number, share: number) => void): void {
  if (interval === 0) return add(cur, 1);
  const from = now - interval;
  for (let k = Math.floor(from / STEP_MS); k <= cur; k++) {
    const overlap = Math.min(now, (k + 1) * STEP_MS) - Math.max(from, k * STEP_MS);
    if (overlap > 0) add(k, overlap / interval);
  }
}

/** Requests, failures and duration buckets merged, and how many of the requests had mTLS. */
class Merged {
  readonly acc = new Float64Array(WIDTH);
  mtls = 0;
}

export class StatsStore {
  private readonly series = new Map<string, Series>();
  /** TCP series, capped at MAX_SERIES of their own. */
  private readonly tcp = new Map<string, TcpSeries>();
  private lastSweep = 0;
  /**
   * The first bucket any report covered: a window reaching back before it is measured over the
   * time since then, so a mesh up for 10 s shows its real rate, not a tenth of it diluted over 1 m.
   */
  private firstBucket: number | null = null;
  readonly counters: StatsStoreCounters = { reports: 0, seriesDropped: 0, tcpSeriesDropped: 0, malformed: 0, tcpMalformed: 0 };

  /** Request series kept now. */
  get size(): number {
    return this.series.size;
  }

  /** TCP series kept now. */
  get tcpSize(): number {
    return this.tcp.size;
  }

  /** Takes one proxy's report; returns what was wrong with it ('' when nothing was). Malformed series are skipped. */
  ingest(proxy: string, report: StatsReport, now = Date.now()): string {
    this.counters.reports++;
    if (typeof report !== 'object' || report === null || !Array.isArray(report.series)) return 'report.series: must be a list';
    const interval = typeof report.intervalMs === 'number' && Number.isFinite(report.intervalMs) ? Math.min(MAX_SPREAD_MS, Math.max(0, report.intervalMs)) : 0;
    const cur = Math.floor(now / STEP_MS);
    this.firstBucket ??= Math.floor((now - interval) / STEP_MS);
    if (now - this.lastSweep > 30_000) this.sweep(cur);
    let problem = '';
    for (let i = 0; i < report.series.length; i++) {
      const d = report.series[i]!;
      const why = deltaProblem(d);
      if (why !== null) {
        this.counters.malformed++;
        problem ||= `report.series[${i}].${why}`;
        continue;
      }
      const owner = d.d === 'inbound' ? proxy : '';
      const key = `${d.d}\0${owner}\0${d.src}\0${d.srcId}\0${d.dst}\0${d.dstId}\0${d.route}\0${d.mtls}`;
      let s = this.series.get(key);
      if (s === undefined) {
        if (this.series.size >= MAX_SERIES) this.sweep(cur);
        if (this.series.size >= MAX_SERIES) {
          this.counters.seriesDropped++;
          continue;
        }
        s = new Series(d.d, owner, d.src, d.srcId, d.dst, d.dstId, d.route, d.mtls);
        this.series.set(key, s);
      }
      spread(now, interval, cur, (k, share) => s.add(k, share, d));
    }
    // Optional: proxies older than TCP stats send none.
    if (report.tcp === undefined) return problem;
    if (!Array.isArray(report.tcp)) return problem || 'report.tcp: must be a list';
    for (let i = 0; i < report.tcp.length; i++) {
      const d = report.tcp[i]!;
      const why = tcpDeltaProblem(d);
      if (why !== null) {
        this.counters.tcpMalformed++;
        problem ||= `report.tcp[${i}].${why}`;
        continue;
      }
      // Keyed by proxy in both directions: the gauge is per proxy, and the proxies' gauges add up.
      const key = `${d.d}\0${proxy}\0${d.src}\0${d.dst}\0${d.mtls}`;
      let s = this.tcp.get(key);
      if (s === undefined) {
        if (this.tcp.size >= MAX_SERIES) this.sweep(cur);
        if (this.tcp.size >= MAX_SERIES) {
          this.counters.tcpSeriesDropped++;
          continue;
        }
        s = new TcpSeries(d.d, d.src, d.dst, d.mtls);
        this.tcp.set(key, s);
      }
      s.sample(cur, d.active);
      spread(now, interval, cur, (k, share) => s.add(k, share, d));
    }
    return problem;
  }

  /** Forgets series with nothing left in the ring. */
  private sweep(cur: number): void {
    this.lastSweep = cur * STEP_MS;
    for (const [k, s] of this.series) if (s.last <= cur - RING_STEPS) this.series.delete(k);
    for (const [k, s] of this.tcp) if (s.last <= cur - RING_STEPS) this.tcp.delete(k);
  }

  /** Destinations (`name.namespace`) that report inbound: their rows and edges come from that side. */
  private served(): Set<string> {
    const out = new Set<string>();
    for (const s of this.series.values()) if (s.direction === 'inbound') out.add(s.dst);
    return out;
  }

  /** The series that speak for their destination: inbound when it has a proxy, else callers' outbound. */
  private *speaking(): Generator<Series> {
    const served = this.served();
    for (const s of this.series.values()) {
      if (s.dst === '') continue;
      if (s.direction === 'inbound' || !served.has(s.dst)) yield s;
    }
  }

  /** `GET /api/v1/stats`: one row per service, route or workload over the last `windowMs`. */
  rows(by: StatsGrouping, windowMs: number, namespace: string | null, now = Date.now()): StatsRow[] {
    const [from, to, seconds] = range(windowMs, now, this.firstBucket);
    const groups = new Map<string, { ns: string; service: string; route: string | null; workload: string | null; m: Merged }>();
    const source: Iterable<Series> = by === 'service' ? this.speaking() : this.series.values();
    for (const s of source) {
      if (by === 'route' && (s.direction !== 'outbound' || s.route === '' || s.dst === '')) continue;
      if (by === 'workload' && s.direction !== 'inbound') continue;
      const [ns, name] = splitService(s.dst);
      const workloadNs = by === 'workload' ? s.proxy.split('/', 1)[0]! : ns;
      if (namespace !== null && workloadNs !== namespace) continue;
      const key = by === 'service' ? s.dst : by === 'route' ? `${s.dst}\0${s.route}` : `${s.proxy}\0${s.dst}`;
      let g = groups.get(key);
      if (g === undefined) {
        g = { ns: workloadNs, service: name, route: by === 'route' ? s.route : null, workload: by === 'workload' ? s.proxy : null, m: new Merged() };
        groups.set(key, g);
      }
      merge(s, from, to, g.m);
    }
    const rows = [...groups.values()].map((g) => ({ namespace: g.ns, service: g.service, route: g.route, workload: g.workload, ...signals(g.m, seconds) }));
    return rows.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.service.localeCompare(b.service) || (a.route ?? a.workload ?? '').localeCompare(b.route ?? b.workload ?? ''));
  }

  /** `GET /api/v1/stats/edges`: who called whom over the last `windowMs` (edges with requests only). */
  edges(windowMs: number, now = Date.now()): StatsEdge[] {
    const [from, to, seconds] = range(windowMs, now, this.firstBucket);
    const groups = new Map<string, { s: Series; m: Merged }>();
    for (const s of this.speaking()) {
      const key = `${s.src}\0${s.srcId}\0${s.dst}\0${s.dstId}\0${s.mtls}`;
      let g = groups.get(key);
      if (g === undefined) {
        g = { s, m: new Merged() };
        groups.set(key, g);
      }
      merge(s, from, to, g.m);
    }
    const edges: StatsEdge[] = [];
    for (const { s, m } of groups.values()) {
      if (m.acc[0]! < 0.5) continue;
      const x = signals(m, seconds);
      edges.push({
        source: s.src === '' ? '(unmeshed)' : apiServiceName(s.src),
        destination: apiServiceName(s.dst),
        sourceIdentity: s.srcId === '' ? null : s.srcId,
        destinationIdentity: s.dstId === '' ? null : s.dstId,
        mtls: s.mtls,
        requestsPerSecond: x.requestsPerSecond,
        successRate: x.successRate,
        p99Ms: x.p99Ms,
        requests: x.requests,
      });
    }
    return edges.sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
  }

  /**
   * `GET /api/v1/stats/tcp`: one row per destination service over the last `windowMs`, from the
   * side that speaks for it as for requests: its own proxies' inbound series when any reports TCP,
   * else its callers' outbound ones.
   */
  tcpRows(windowMs: number, namespace: string | null, now = Date.now()): TcpStatsRow[] {
    const [from, to, seconds] = range(windowMs, now, this.firstBucket);
    const served = new Set<string>();
    for (const s of this.tcp.values()) if (s.direction === 'inbound') served.add(s.dst);
    const groups = new Map<string, { acc: Float64Array; active: number; mtls: number }>();
    const acc = new Float64Array(3);
    for (const s of this.tcp.values()) {
      if (s.dst === '' || (s.direction === 'outbound' && served.has(s.dst))) continue;
      if (namespace !== null && splitService(s.dst)[0] !== namespace) continue;
      let g = groups.get(s.dst);
      if (g === undefined) groups.set(s.dst, (g = { acc: new Float64Array(3), active: 0, mtls: 0 }));
      acc.fill(0);
      g.active += s.sum(from, to, acc);
      for (let i = 0; i < 3; i++) g.acc[i]! += acc[i]!;
      if (s.mtls) g.mtls += acc[0]!;
    }
    const rows: TcpStatsRow[] = [];
    for (const [dst, g] of groups) {
      const [ns, name] = splitService(dst);
      const [opened, rx, tx] = g.acc as unknown as [number, number, number];
      rows.push({
        namespace: ns,
        service: name,
        connectionsPerSecond: round(opened / seconds, 3),
        activeConnections: Math.round(g.active),
        readBytesPerSecond: round(rx / seconds, 1),
        writeBytesPerSecond: round(tx / seconds, 1),
        mtlsRate: opened >= 0.5 ? round(Math.min(1, g.mtls / opened), 4) : null,
        connections: Math.round(opened),
        readBytes: Math.round(rx),
        writeBytes: Math.round(tx),
      });
    }
    return rows.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.service.localeCompare(b.service));
  }

  /**
   * `GET /api/v1/stats/tcp/edges`: TCP connections from source to destination service over the last
   * `windowMs`, from the side that knows both ends: the destination's inbound side when it names
   * sources, else its callers' outbound side, else its inbound side with the source `(unmeshed)`
   * (an inbound side names no source where mTLS is off, or from proxies that predate tunnels naming
   * their source: callers speak for those edges). An edge with nothing opened, moved or open is left out.
   */
  tcpEdges(windowMs: number, now = Date.now()): TcpStatsEdge[] {
    const [from, to, seconds] = range(windowMs, now, this.firstBucket);
    const named = new Set<string>();
    const called = new Set<string>();
    for (const s of this.tcp.values()) {
      if (s.direction === 'inbound' && s.src !== '') named.add(s.dst);
      if (s.direction === 'outbound') called.add(s.dst);
    }
    const speaks = (s: TcpSeries): boolean => (named.has(s.dst) ? s.direction === 'inbound' : called.has(s.dst) ? s.direction === 'outbound' : true);
    const groups = new Map<string, { s: TcpSeries; acc: Float64Array; active: number }>();
    const acc = new Float64Array(3);
    for (const s of this.tcp.values()) {
      if (s.dst === '' || !speaks(s)) continue;
      const key = `${s.src}\0${s.dst}\0${s.mtls}`;
      let g = groups.get(key);
      if (g === undefined) groups.set(key, (g = { s, acc: new Float64Array(3), active: 0 }));
      acc.fill(0);
      g.active += s.sum(from, to, acc);
      for (let i = 0; i < 3; i++) g.acc[i]! += acc[i]!;
    }
    const edges: TcpStatsEdge[] = [];
    for (const { s, acc: a, active } of groups.values()) {
      const [opened, rx, tx] = a as unknown as [number, number, number];
      if (opened < 0.5 && rx + tx < 0.5 && Math.round(active) === 0) continue;
      edges.push({
        source: s.src === '' ? '(unmeshed)' : apiServiceName(s.src),
        destination: apiServiceName(s.dst),
        mtls: s.mtls,
        connectionsPerSecond: round(opened / seconds, 3),
        activeConnections: Math.round(active),
        readBytesPerSecond: round(rx / seconds, 1),
        writeBytesPerSecond: round(tx / seconds, 1),
        connections: Math.round(opened),
        readBytes: Math.round(rx),
        writeBytes: Math.round(tx),
      });
    }
    return edges.sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination) || Number(a.mtls) - Number(b.mtls));
  }

  /** `GET /api/v1/stats/series`: a service's signals per `stepMs` over the last `windowMs`, oldest first. */
  points(service: string, windowMs: number, stepMs: number, now = Date.now()): StatsPoint[] {
    const label = metricsServiceName(service);
    const [from, to] = range(windowMs, now);
    const per = Math.max(1, Math.round(stepMs / STEP_MS));
    const mine = [...this.speaking()].filter((s) => s.dst === label);
    const points: StatsPoint[] = [];
    for (let k = from; k <= to; k += per) {
      const m = new Merged();
      const end = Math.min(to, k + per - 1);
      for (const s of mine) merge(s, k, end, m);
      const x = signals(m, ((end - k + 1) * STEP_MS) / 1000);
      points.push({ t: k * STEP_MS, requestsPerSecond: x.requestsPerSecond, successRate: x.successRate, p50Ms: x.p50Ms, p99Ms: x.p99Ms });
    }
    return points;
  }
}

/**
 * The buckets of a window ending before the bucket in progress and the one before it, and the
 * seconds it covers: from its start, or from `first` (the first bucket with data) when that is later.
 */
function range(windowMs: number, now: number, first: number | null = null): [number, number, number] {
  const steps = Math.max(1, Math.min(MAX_WINDOW_MS / STEP_MS, Math.ceil(windowMs / STEP_MS)));
  const to = Math.floor(now / STEP_MS) - 2;
  const from = to - steps + 1;
  const covered = first === null || first <= from ? steps : Math.max(1, to - first + 1);
  return [from, to, (covered * STEP_MS) / 1000];
}

function merge(s: Series, from: number, to: number, m: Merged): void {
  if (!s.mtls) return s.sum(from, to, m.acc);
  const before = m.acc[0]!;
  s.sum(from, to, m.acc);
  m.mtls += m.acc[0]! - before;
}

function signals(m: Merged, seconds: number): Omit<StatsRow, 'namespace' | 'service' | 'route' | 'workload'> {
  const a = m.acc;
  const n = a[0]!;
  const has = n >= 0.5;
  const q = (x: number): number | null => (has ? round(histogramQuantile(x, a.subarray(2)) * 1000, 3) : null);
  return {
    requestsPerSecond: round(n / seconds, 3),
    successRate: has ? round(Math.min(1, Math.max(0, 1 - a[1]! / n)), 4) : null,
    p50Ms: q(0.5),
    p95Ms: q(0.95),
    p99Ms: q(0.99),
    requests: Math.round(n),
    errors: Math.round(a[1]!),
    mtlsRate: has ? round(Math.min(1, m.mtls / n), 4) : null,
  };
}

/**
 * The `q` quantile (seconds) of non-cumulative bucket counts over STATS_DURATION_BOUNDS (then the
 * overflow bucket), as histogram_quantile: linear inside the bucket, the first starting at 0, and
 * the highest finite bound when the rank falls in the overflow bucket. NaN when there is nothing.
 */
export function histogramQuantile(q: number, counts: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  if (!(total > 0)) return NaN;
  const rank = Math.min(1, Math.max(0, q)) * total;
  const bounds = STATS_DURATION_BOUNDS;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (c > 0 && cum + c >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1]!;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return lower + (bounds[i]! - lower) * ((rank - cum) / c);
    }
    cum += c;
  }
  return bounds[bounds.length - 1]!;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** `name.namespace` → [namespace, name]. */
function splitService(label: string): [string, string] {
  const dot = label.lastIndexOf('.');
  return dot === -1 ? ['', label] : [label.slice(dot + 1), label.slice(0, dot)];
}

/** `namespace/name` (the API's) → `name.namespace` (metrics labels); a name without a namespace is in `default`. */
export function metricsServiceName(service: string): string {
  const slash = service.indexOf('/');
  return slash === -1 ? `${service}.default` : `${service.slice(slash + 1)}.${service.slice(0, slash)}`;
}

function deltaProblem(d: StatsSeriesDelta): string | null {
  if (typeof d !== 'object' || d === null) return 'must be an object';
  if (d.d !== 'inbound' && d.d !== 'outbound') return `d: ${JSON.stringify(d.d)} is not inbound or outbound`;
  for (const f of ['src', 'srcId', 'dst', 'dstId', 'route'] as const) if (typeof d[f] !== 'string' || d[f].length > 512) return `${f}: must be a string of at most 512 characters`;
  if (typeof d.mtls !== 'boolean') return 'mtls: must be true or false';
  if (!(Number.isFinite(d.n) && d.n >= 0)) return 'n: must be a count';
  if (!(Number.isFinite(d.err) && d.err >= 0 && d.err <= d.n)) return 'err: must be a count no larger than n';
  if (!Array.isArray(d.b) || d.b.length !== BUCKETS || !d.b.every((x) => Number.isFinite(x) && x >= 0)) return `b: must be ${BUCKETS} counts`;
  return null;
}

function tcpDeltaProblem(d: StatsTcpDelta): string | null {
  if (typeof d !== 'object' || d === null) return 'must be an object';
  if (d.d !== 'inbound' && d.d !== 'outbound') return `d: ${JSON.stringify(d.d)} is not inbound or outbound`;
  for (const f of ['src', 'dst'] as const) if (typeof d[f] !== 'string' || d[f].length > 512) return `${f}: must be a string of at most 512 characters`;
  if (typeof d.mtls !== 'boolean') return 'mtls: must be true or false';
  for (const f of ['opened', 'rx', 'tx', 'active'] as const) if (!(Number.isFinite(d[f]) && d[f] >= 0)) return `${f}: must be a count`;
  return null;
}
