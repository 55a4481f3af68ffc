/**
 * The proxy's request metrics in Prometheus text format: `weft_requests_total` and the
 * `weft_request_duration_seconds` histogram, labelled by direction, destination service, route,
 * response code and mesh error code.
 */

/** Histogram bucket bounds in seconds. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

interface Series {
  labels: string;
  count: number;
  sum: number;
  buckets: Float64Array;
}

/** Escapes a label value for the text format. */
function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Counters and histograms for one proxy. */
export class ProxyMetrics {
  private readonly series = new Map<string, Series>();
  private readonly counters = new Map<string, number>();

  /** Records one finished exchange. */
  request(direction: string, destination: string, route: string, status: number, errorCode: string, seconds: number): void {
    const key = `${direction}\0${destination}\0${route}\0${status}\0${errorCode}`;
    let s = this.series.get(key);
    if (s === undefined) {
      s = {
        labels: `direction="${direction}",destination_service="${esc(destination)}",route="${esc(route)}",response_code="${status}",error_code="${esc(errorCode)}"`,
        count: 0,
        sum: 0,
        buckets: new Float64Array(BUCKETS.length),
      };
      this.series.set(key, s);
    }
    s.count++;
    s.sum += seconds;
    for (let i = 0; i < BUCKETS.length; i++) {
      if (seconds <= BUCKETS[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
  }

  /** Adds to a plain counter, e.g. `weft_config_reloads_total{result="rejected"}`. */
  count(nameAndLabels: string, n = 1): void {
    this.counters.set(nameAndLabels, (this.counters.get(nameAndLabels) ?? 0) + n);
  }

  /** The exposition text; `extra` lines (gauges owned elsewhere) are appended. */
  render(extra: readonly string[] = []): string {
    const out: string[] = [
      '# HELP weft_requests_total Requests handled by the proxy.',
      '# TYPE weft_requests_total counter',
    ];
    for (const s of this.series.values()) out.push(`weft_requests_total{${s.labels}} ${s.count}`);
    out.push('# HELP weft_request_duration_seconds Time from request head received to response complete.');
    out.push('# TYPE weft_request_duration_seconds histogram');
    for (const s of this.series.values()) {
      let cum = 0;
      for (let i = 0; i < BUCKETS.length; i++) {
        cum += s.buckets[i]!;
        out.push(`weft_request_duration_seconds_bucket{${s.labels},le="${BUCKETS[i]}"} ${cum}`);
      }
      out.push(`weft_request_duration_seconds_bucket{${s.labels},le="+Inf"} ${s.count}`);
      out.push(`weft_request_duration_seconds_sum{${s.labels}} ${s.sum}`);
      out.push(`weft_request_duration_seconds_count{${s.labels}} ${s.count}`);
    }
    const typed = new Set<string>();
    for (const [k, v] of this.counters) {
      const name = k.split('{')[0]!;
      if (!typed.has(name)) {
        typed.add(name);
        out.push(`# TYPE ${name} counter`);
      }
      out.push(`${k} ${v}`);
    }
    out.push(...extra);
    return `${out.join('\n')}\n`;
  }
}
