/**
 * Reports the proxy's request statistics to the control plane's rolling window (golden signals):
 * every STATS_REPORT_MS it compares the request series of `ProxyMetrics` with what it last reported
 * and sends the deltas — requests, failures and duration buckets per (direction, source,
 * destination, identities, route, mTLS), and TCP connections opened, bytes and the open-connection
 * gauge per (direction, source, destination, mTLS) — over the config stream. Nothing runs on the
 * request path: the metrics are read, never written. A report that cannot be sent (no stream, or a stream that is
 * not keeping up) is carried into the next one for up to MAX_CARRY_MS, then dropped and counted.
 */
import { performance } from 'node:perf_hooks';
import { STATS_REPORT_MS, type StatsReport, type StatsSeriesDelta, type StatsTcpDelta } from '../../model/golden-signals.js';
import type { ProxyMetrics, RequestSeries, TcpSeries } from '../admin/metrics.js';

/** Deltas older than this are dropped rather than reported late as if recent. */
const MAX_CARRY_MS = 10_000;
/** Most series in one message (a stream line stays far below the control plane's 1 MiB). */
const MAX_SERIES_PER_MESSAGE = 500;

/** What a series had when last reported. */
interface Baseline {
  count: number;
  counts: Float64Array;
}

export class StatsReporter {
  private readonly baselines = new Map<RequestSeries, Baseline>();
  /** What each TCP series had when last reported. */
  private readonly tcpBaselines = new Map<TcpSeries, { opened: number; received: number; sent: number; active: number }>();
  /** When the baseline was taken (performance.now()). */
  private takenAt = performance.now();
  private timer: NodeJS.Timeout | null = null;

  /**
   * `send` delivers one report and says whether it could (false: not connected, or backed up);
   * `dropped` is told how many requests' statistics were given up.
   */
  constructor(
    private readonly metrics: ProxyMetrics,
    private readonly send: (report: StatsReport) => boolean,
    private readonly dropped: (requests: number) => void = () => {},
  ) {}

  start(intervalMs = STATS_REPORT_MS): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Sends what changed since the last report; returns the number of series (request and TCP) reported. */
  tick(now = performance.now()): number {
    const changed: RequestSeries[] = [];
    const bySeries = new Map<string, StatsSeriesDelta>();
    let requests = 0;
    for (const s of this.metrics.series) {
      const base = this.baselines.get(s);
      const h = s.duration;
      if (base !== undefined && base.count === h.count) continue;
      changed.push(s);
      const f = s.fields;
      const key = `${f.direction}\0${f.sourceService}\0${f.sourceIdentity}\0${f.destinationService}\0${f.destinationIdentity}\0${f.route}\0${f.mtls}`;
      let d = bySeries.get(key);
      if (d === undefined) {
        d = { d: f.direction, src: f.sourceService, srcId: f.sourceIdentity, dst: f.destinationService, dstId: f.destinationIdentity, route: f.route, mtls: f.mtls, n: 0, err: 0, b: new Array<number>(h.counts.length + 1).fill(0) };
        bySeries.set(key, d);
      }
      const n = h.count - (base?.count ?? 0);
      d.n += n;
      if (f.status >= 500 || f.errorCode !== '') d.err += n;
      let inBounds = 0;
      for (let i = 0; i < h.counts.length; i++) {
        const delta = h.counts[i]! - (base?.counts[i] ?? 0);
        d.b[i]! += delta;
        inBounds += delta;
      }
      d.b[h.counts.length]! += n - inBounds;
      requests += n;
    }
    // TCP: a series that changed, or still has connections open (its gauge stays fresh), or just went idle.
    const tcpChanged: TcpSeries[] = [];
    const tcp: StatsTcpDelta[] = [];
    this.metrics.tcpCatchUp();
    for (const s of this.metrics.tcpSeries) {
      const base = this.tcpBaselines.get(s);
      if (base === undefined ? s.opened === 0 && s.active === 0 : base.opened === s.opened && base.received === s.received && base.sent === s.sent && base.active === s.active && s.active === 0) continue;
      tcpChanged.push(s);
      const f = s.fields;
      tcp.push({ d: f.direction, src: f.sourceService, dst: f.destinationService, mtls: f.mtls, opened: s.opened - (base?.opened ?? 0), rx: s.received - (base?.received ?? 0), tx: s.sent - (base?.sent ?? 0), active: s.active });
    }
    if (changed.length === 0 && tcpChanged.length === 0) {
      this.takenAt = now;
      return 0;
    }
    const series = [...bySeries.values()];
    const intervalMs = Math.round(now - this.takenAt);
    // Request series first, then TCP ones, MAX_SERIES_PER_MESSAGE entries of either kind a message.
    const entries = series.length + tcp.length;
    let sent = 0;
    let requestPartsSent = 0;
    for (let i = 0; i < entries; i += MAX_SERIES_PER_MESSAGE) {
      const end = i + MAX_SERIES_PER_MESSAGE;
      const report: StatsReport = { intervalMs, series: series.slice(i, end) };
      if (end > series.length && tcp.length > 0) report.tcp = tcp.slice(Math.max(0, i - series.length), end - series.length);
      if (!this.send(report)) continue;
      sent++;
      if (i < series.length) requestPartsSent++;
    }
    // Carried whole when nothing went; once a part went, what did not is given up (never counted twice).
    if (sent === 0 && now - this.takenAt < MAX_CARRY_MS) return 0;
    const withRequests = Math.ceil(series.length / MAX_SERIES_PER_MESSAGE);
    if (requestPartsSent < withRequests) this.dropped(Math.round((requests * (withRequests - requestPartsSent)) / withRequests));
    for (const s of changed) {
      const base = this.baselines.get(s);
      if (base === undefined) this.baselines.set(s, { count: s.duration.count, counts: Float64Array.from(s.duration.counts) });
      else {
        base.count = s.duration.count;
        base.counts.set(s.duration.counts);
      }
    }
    for (const s of tcpChanged) {
      const base = this.tcpBaselines.get(s);
      if (base === undefined) this.tcpBaselines.set(s, { opened: s.opened, received: s.received, sent: s.sent, active: s.active });
      else Object.assign(base, { opened: s.opened, received: s.received, sent: s.sent, active: s.active });
    }
    this.takenAt = now;
    return sent === 0 ? 0 : entries;
  }
}
