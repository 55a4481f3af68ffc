/**
 * The proxy's metrics in Prometheus text format (docs/metrics.md): per-request counters and
 * histograms (duration, request and response body sizes), TCP connections and bytes, and the plain
 * counters the filters feed. Every family is written once, with `# HELP` and `# TYPE`, its samples
 * together. Request series are found through nested maps keyed by the label values themselves, so
 * recording a request builds no string and allocates nothing once its series exists.
 */
import type { RequestContext } from '../message.js';

/** Duration histogram bucket bounds in seconds (STATS_DURATION_BOUNDS in model/golden-signals.ts are the same). */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Body size histogram bucket bounds in bytes (×4 from 64 B to 16 MiB). */
const SIZE_BUCKETS = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216];

/** Help text of the plain counters fed through `count()`, by family name. */
const COUNTER_HELP: Readonly<Record<string, string>> = {
  weft_retries_total: 'Retries of requests to a destination, by result.',
  weft_faults_injected_total: 'Faults injected by HTTPFault filters, by route and kind.',
  weft_rate_limited_total: 'Requests refused by a RateLimitPolicy, by policy and scope (local or global).',
  weft_rate_limit_redis_errors_total: 'Failed calls to the Redis of global rate limits, by reason.',
  weft_mirrored_requests_total: 'Requests copied by RequestMirror filters, by result.',
  weft_circuit_open_total: 'Requests and TCP connections refused by a circuit breaker, by the limit that was reached.',
  weft_outbound_tcp_connections_total: 'Outbound TCP connections by destination service port, transport and mesh error code.',
  weft_tcp_idle_timeouts_total: 'Outbound TCP connections closed by their idle timeout (no byte either way for BackendPolicy timeouts.tcpIdle), by destination service port.',
  weft_outlier_ejections_total: 'Endpoints ejected by outlier detection, by reason.',
  weft_outlier_ejections_skipped_total: 'Ejections outlier detection decided but did not enforce (max ejection percent), by reason.',
  weft_health_checks_total: 'Active health checks, by result.',
  weft_inbound_tcp_connections_total: 'TCP tunnels that reached the inbound listener, by security, result and deciding policy.',
  weft_protocol_detected_total: 'Protocol detection on --upstream ports of undeclared protocol, by protocol and reason.',
  weft_inbound_connections_total: 'Connections accepted or refused by the inbound listener, by security and reason.',
  weft_config_reloads_total: 'Configurations applied or rejected by this proxy.',
  weft_trace_spans_total: 'Trace spans by where they went and how that ended.',
  weft_access_log_dropped_total: 'Access log lines dropped while too many were waiting to be written.',
  weft_tap_events_total: 'Tap events sent to the control plane, or dropped (over 100 a second, or no stream).',
  weft_stats_dropped_requests_total: 'Requests whose statistics could not be reported to the control plane in time.',
};

/** Escapes a label value for the text format. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** One histogram: cumulative counts are computed when rendered. */
class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    this.count++;
    this.sum += v;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  render(out: string[], name: string, labels: string): void {
    let cum = 0;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      cum += this.counts[i]!;
      out.push(`${name}_bucket{${labels},le="${b[i]}"} ${cum}`);
    }
    out.push(`${name}_bucket{${labels},le="+Inf"} ${this.count}`, `${name}_sum{${labels}} ${this.sum}`, `${name}_count{${labels}} ${this.count}`);
  }
}

/** The label values of a request series, for the stats reporter (telemetry/stats-reporter.ts). */
export interface RequestFields {
  direction: 'inbound' | 'outbound';
  sourceService: string;
  sourceIdentity: string;
  destinationService: string;
  destinationIdentity: string;
  route: string;
  status: number;
  errorCode: string;
  mtls: boolean;
}

/** Everything recorded for one combination of request labels. */
export class RequestSeries {
  readonly duration = new Histogram(DURATION_BUCKETS);
  readonly requestBytes = new Histogram(SIZE_BUCKETS);
  readonly responseBytes = new Histogram(SIZE_BUCKETS);
  constructor(
    readonly labels: string,
    readonly fields: RequestFields,
  ) {}
}

/** The label values of a TCP series, for the stats reporter. */
export interface TcpFields {
  direction: 'inbound' | 'outbound';
  sourceService: string;
  destinationService: string;
  mtls: boolean;
}

/** An open TCP connection's byte counters (from and to its client), read whenever its series is. */
export interface OpenTcp {
  received(): number;
  sent(): number;
}

/** TCP connections and bytes for one (direction, source service, destination service, mTLS). */
export class TcpSeries {
  opened = 0;
  active = 0;
  received = 0;
  sent = 0;
  /** Open connections, with the bytes of each already counted. */
  readonly open = new Map<OpenTcp, { received: number; sent: number }>();
  constructor(
    readonly labels: string,
    readonly fields: TcpFields,
  ) {}

  /** Counts what `conn` moved since it was last read. */
  catchUp(conn: OpenTcp, counted: { received: number; sent: number }): void {
    const r = conn.received();
    const t = conn.sent();
    this.received += r - counted.received;
    this.sent += t - counted.sent;
    counted.received = r;
    counted.sent = t;
  }
}

type Level = Map<unknown, unknown>;

/** The map under `key` in `m`, made when missing. */
function level(m: Level, key: unknown): Level {
  let next = m.get(key) as Level | undefined;
  if (next === undefined) {
    next = new Map();
    m.set(key, next);
  }
  return next;
}

/** A counter family fed by `count()`: its samples by full series text. */
interface CounterFamily {
  help: string;
  samples: Map<string, number>;
}

/** Counters and histograms for one proxy. */
export class ProxyMetrics {
  /** direction → source service → source identity → destination service → destination identity → route → status → gRPC status → error code → mTLS → series. */
  private readonly requests: Level = new Map();
  /** In creation order, for rendering. */
  private readonly requestSeries: RequestSeries[] = [];
  private readonly tcp = new Map<string, TcpSeries>();
  /** Every counter series by its full text, and the families in first-use order. */
  private readonly counterIndex = new Map<string, CounterFamily>();
  private readonly counterFamilies = new Map<string, CounterFamily>();

  /**
   * Records one finished exchange. `ctx` gives direction, destination service, route, error code,
   * body sizes and start time; the caller supplies what depends on the side of the proxy.
   */
  request(ctx: RequestContext, sourceService: string, sourceIdentity: string, destinationIdentity: string, mtls: boolean, status: number, grpcStatus: string): void {
    let m = level(this.requests, ctx.direction);
    m = level(m, sourceService);
    m = level(m, sourceIdentity);
    m = level(m, ctx.destination);
    m = level(m, destinationIdentity);
    m = level(m, ctx.route);
    m = level(m, status);
    m = level(m, grpcStatus);
    m = level(m, ctx.errorCode);
    let s = m.get(mtls) as RequestSeries | undefined;
    if (s === undefined) {
      s = new RequestSeries(
        `direction="${ctx.direction}",source_service="${escapeLabel(sourceService)}",source_identity="${escapeLabel(sourceIdentity)}",` +
          `destination_service="${escapeLabel(ctx.destination)}",destination_identity="${escapeLabel(destinationIdentity)}",route="${escapeLabel(ctx.route)}",` +
          `response_code="${status}",grpc_status="${escapeLabel(grpcStatus)}",error_code="${escapeLabel(ctx.errorCode)}",mtls="${mtls}"`,
        { direction: ctx.direction, sourceService, sourceIdentity, destinationService: ctx.destination, destinationIdentity, route: ctx.route, status, errorCode: ctx.errorCode, mtls },
      );
      m.set(mtls, s);
      this.requestSeries.push(s);
    }
    s.duration.observe((performance.now() - ctx.start) / 1000);
    s.requestBytes.observe(ctx.bytesReceived);
    s.responseBytes.observe(ctx.bytesSent);
  }

  /** Every request series, in creation order (read, never changed, by the stats reporter). */
  get series(): readonly RequestSeries[] {
    return this.requestSeries;
  }

  /** Every TCP series, in creation order (read, never changed, by the stats reporter). */
  get tcpSeries(): Iterable<TcpSeries> {
    return this.tcp.values();
  }

  /**
   * A TCP connection opened: counted as opened and active, and its bytes counted as they move (read
   * whenever the metrics are rendered or reported, and at its close). Returns its series.
   */
  tcpOpened(direction: 'inbound' | 'outbound', sourceService: string, destinationService: string, mtls: boolean, conn: OpenTcp): TcpSeries {
    const key = `${direction}\0${sourceService}\0${destinationService}\0${mtls}`;
    let s = this.tcp.get(key);
    if (s === undefined) {
      s = new TcpSeries(`direction="${direction}",source_service="${escapeLabel(sourceService)}",destination_service="${escapeLabel(destinationService)}",mtls="${mtls}"`, { direction, sourceService, destinationService, mtls });
      this.tcp.set(key, s);
    }
    s.opened++;
    s.active++;
    s.open.set(conn, { received: 0, sent: 0 });
    return s;
  }

  /** A TCP connection of `s` closed: its last bytes are counted, and it is no longer active. */
  tcpClosed(s: TcpSeries, conn: OpenTcp): void {
    const counted = s.open.get(conn);
    if (counted === undefined) return;
    s.catchUp(conn, counted);
    s.open.delete(conn);
    s.active--;
  }

  /** Brings every TCP series' byte counters up to date with its open connections. */
  tcpCatchUp(): void {
    for (const s of this.tcp.values()) for (const [conn, counted] of s.open) s.catchUp(conn, counted);
  }

  /** Adds to a plain counter, e.g. `weft_config_reloads_total{result="rejected"}`; the family's help comes from COUNTER_HELP. */
  count(nameAndLabels: string, n = 1): void {
    let family = this.counterIndex.get(nameAndLabels);
    if (family === undefined) {
      const brace = nameAndLabels.indexOf('{');
      const name = brace === -1 ? nameAndLabels : nameAndLabels.slice(0, brace);
      family = this.counterFamilies.get(name);
      if (family === undefined) {
        family = { help: COUNTER_HELP[name] ?? `Weft counter ${name}.`, samples: new Map() };
        this.counterFamilies.set(name, family);
      }
      this.counterIndex.set(nameAndLabels, family);
    }
    family.samples.set(nameAndLabels, (family.samples.get(nameAndLabels) ?? 0) + n);
  }

  /** The exposition text; `extra` lines (whole gauge families, with HELP and TYPE, owned elsewhere) are appended. */
  render(extra: readonly string[] = []): string {
    const out: string[] = [];
    const series = this.requestSeries;
    out.push('# HELP weft_requests_total Requests handled by the proxy, counted when the response is complete.', '# TYPE weft_requests_total counter');
    for (const s of series) out.push(`weft_requests_total{${s.labels}} ${s.duration.count}`);
    out.push('# HELP weft_request_duration_seconds Time from request head received to response complete.', '# TYPE weft_request_duration_seconds histogram');
    for (const s of series) s.duration.render(out, 'weft_request_duration_seconds', s.labels);
    out.push('# HELP weft_request_bytes Request body sizes received from the client.', '# TYPE weft_request_bytes histogram');
    for (const s of series) s.requestBytes.render(out, 'weft_request_bytes', s.labels);
    out.push('# HELP weft_response_bytes Response body sizes sent to the client.', '# TYPE weft_response_bytes histogram');
    for (const s of series) s.responseBytes.render(out, 'weft_response_bytes', s.labels);
    this.tcpCatchUp();
    const tcp = [...this.tcp.values()];
    out.push('# HELP weft_tcp_connections_total TCP connections proxied (outbound: connected to an endpoint; inbound: tunnels let through to the app).', '# TYPE weft_tcp_connections_total counter');
    for (const s of tcp) out.push(`weft_tcp_connections_total{${s.labels}} ${s.opened}`);
    out.push('# HELP weft_tcp_connections_active TCP connections open now.', '# TYPE weft_tcp_connections_active gauge');
    for (const s of tcp) out.push(`weft_tcp_connections_active{${s.labels}} ${s.active}`);
    out.push('# HELP weft_tcp_bytes_total Bytes of TCP connections, received from or sent to the client (flow), counted as they move.', '# TYPE weft_tcp_bytes_total counter');
    for (const s of tcp) out.push(`weft_tcp_bytes_total{${s.labels},flow="received"} ${s.received}`, `weft_tcp_bytes_total{${s.labels},flow="sent"} ${s.sent}`);
    for (const [name, family] of this.counterFamilies) {
      out.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} counter`);
      for (const [k, v] of family.samples) out.push(`${k} ${v}`);
    }
    out.push(...extra);
    return `${out.join('\n')}\n`;
  }
}
