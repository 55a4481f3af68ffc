/**
 * A latency histogram with log-spaced buckets (about 1 % relative precision), in the spirit of
 * HdrHistogram: memory is fixed (a few KiB) however many values are recorded.
 */

/** Relative width of one bucket: a reported percentile is within 1 % of the true value. */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
/** Values are recorded in microseconds; bucket 0 holds everything ≤ 1 µs, the last one ≥ ~16 min. */
const BUCKETS = 2400;

/** Percentiles (and friends) of a histogram, in milliseconds. */
export interface LatencySummary {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** A bounded-memory histogram of durations recorded in nanoseconds. */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  private total = 0;
  private sumUs = 0;
  private minUs = Number.POSITIVE_INFINITY;
  private maxUs = 0;

  recordNs(ns: number): void {
    const us = Math.max(ns, 0) / 1000;
    this.counts[bucketOf(us)]! += 1;
    this.total += 1;
    this.sumUs += us;
    if (us < this.minUs) this.minUs = us;
    if (us > this.maxUs) this.maxUs = us;
  }

  get count(): number {
    return this.total;
  }

  /** The value (ms) below which `q` (0..1) of the recordings fall; the exact max for q = 1. */
  quantileMs(q: number): number {
    if (this.total === 0) return Number.NaN;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(upperBoundUs(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  summary(): LatencySummary {
    const empty = this.total === 0;
    return {
      count: this.total,
      minMs: empty ? Number.NaN : this.minUs / 1000,
      meanMs: empty ? Number.NaN : this.sumUs / this.total / 1000,
      p50Ms: this.quantileMs(0.5),
      p90Ms: this.quantileMs(0.9),
      p99Ms: this.quantileMs(0.99),
      p999Ms: this.quantileMs(0.999),
      maxMs: empty ? Number.NaN : this.maxUs / 1000,
    };
  }
}

function bucketOf(us: number): number {
  if (us <= 1) return 0;
  return Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / LOG_GROWTH));
}

function upperBoundUs(bucket: number): number {
  return Math.pow(GROWTH, bucket);
}
