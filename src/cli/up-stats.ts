/**
 * Golden signals for `weft up --stats`: each sidecar's inbound metrics, scraped every interval, turned
 * into requests/s, success rate and p99 over that interval (from counter and histogram deltas).
 */
import { table } from './table.js';

/** Inbound totals of one proxy at one moment. */
interface Sample {
  at: number;
  total: number;
  failed: number;
  /** Cumulative bucket counts by upper bound (seconds). */
  buckets: Map<number, number>;
}

const LINE = /^weft_request(s_total|_duration_seconds_bucket)\{([^}]*)\} ([0-9.e+-]+)$/;

/** Sums a proxy's inbound series from its /metrics text. */
export function inboundSample(text: string, at: number): Sample {
  const s: Sample = { at, total: 0, failed: 0, buckets: new Map() };
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (m === null || !m[2]!.includes('direction="inbound"')) continue;
    const value = Number(m[3]);
    if (m[1] === 's_total') {
      s.total += value;
      if (/response_code="5\d\d"/.test(m[2]!) || /response_code="0"/.test(m[2]!)) s.failed += value;
    } else {
      const le = /le="([^"]+)"/.exec(m[2]!)![1]!;
      const bound = le === '+Inf' ? Infinity : Number(le);
      s.buckets.set(bound, (s.buckets.get(bound) ?? 0) + value);
    }
  }
  return s;
}

/** One row of the table: rate, success and p99 between two samples. */
export interface Signals {
  name: string;
  rps: number;
  success: number | null;
  /** Upper bound of the bucket holding the 99th percentile, in ms; null without traffic. */
  p99Ms: number | null;
}

export function signals(name: string, before: Sample, after: Sample): Signals {
  const n = after.total - before.total;
  const seconds = Math.max(0.001, (after.at - before.at) / 1000);
  if (n <= 0) return { name, rps: 0, success: null, p99Ms: null };
  let p99: number | null = null;
  for (const bound of [...after.buckets.keys()].sort((a, b) => a - b)) {
    if ((after.buckets.get(bound) ?? 0) - (before.buckets.get(bound) ?? 0) >= 0.99 * n) {
      p99 = bound === Infinity ? Infinity : bound * 1000;
      break;
    }
  }
  return { name, rps: n / seconds, success: 1 - (after.failed - before.failed) / n, p99Ms: p99 };
}

export function renderSignals(rows: Signals[]): string {
  return table(
    ['SERVICE', 'REQ/S', 'SUCCESS', 'P99'],
    rows.map((r) => [
      r.name,
      r.rps.toFixed(1),
      r.success === null ? '-' : `${(r.success * 100).toFixed(2)}%`,
      r.p99Ms === null ? '-' : r.p99Ms === Infinity ? '> 30s' : `≤ ${r.p99Ms} ms`,
    ]),
  );
}
