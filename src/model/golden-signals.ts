/**
 * What proxies send the control plane for golden signals and tap, over their config stream
 * (docs/observability.md): a delta report of request statistics every STATS_REPORT_MS, and batches of
 * tap events while a tap that concerns them is open. Both ends use these types.
 */

/** How often a proxy reports its request statistics. */
export const STATS_REPORT_MS = 2000;

/**
 * Upper bounds (seconds) of the duration buckets of a report; one more bucket counts everything
 * above the last bound. The same bounds as `weft_request_duration_seconds`.
 */
export const STATS_DURATION_BOUNDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Requests of one series since the proxy's previous report. Services are `name.namespace` as in metrics; '' when unknown. */
export interface StatsSeriesDelta {
  /** `inbound` (what this proxy's workload served) or `outbound` (what it called). */
  d: 'inbound' | 'outbound';
  src: string;
  srcId: string;
  dst: string;
  dstId: string;
  route: string;
  mtls: boolean;
  /** Requests, and those that failed (5xx, or a mesh error code). */
  n: number;
  err: number;
  /** Requests per duration bucket (STATS_DURATION_BOUNDS, then the overflow bucket); not cumulative. */
  b: number[];
}

/**
 * TCP connections of one series since the proxy's previous report (`weft_tcp_*`). Bytes count when a
 * connection closes; `rx` came from the clients, `tx` went to them, on either side of the proxy.
 */
export interface StatsTcpDelta {
  /** `inbound` (tunnels let through to this proxy's app) or `outbound` (connections its app made). */
  d: 'inbound' | 'outbound';
  src: string;
  dst: string;
  mtls: boolean;
  /** Connections opened, and bytes received from / sent to clients (closed connections). */
  opened: number;
  rx: number;
  tx: number;
  /** Connections open when the report was taken: a gauge, not a delta. */
  active: number;
}

/** One report: the deltas since the previous one, and the time they cover. */
export interface StatsReport {
  /** Milliseconds since the previous report was taken (the proxy's monotonic clock): the control plane spreads the deltas over it. */
  intervalMs: number;
  series: StatsSeriesDelta[];
  /** TCP series that changed or have connections open; absent from proxies older than TCP stats. */
  tcp?: StatsTcpDelta[];
}

/** An open tap, as the control plane tells the proxies concerned. */
export interface TapSpec {
  id: string;
  /** The destination tapped, `name.namespace` (as proxies label services). */
  service: string;
  /** Exact request method, or null for any. */
  method: string | null;
  /** Path prefix, or null for any. */
  path: string | null;
  /** A status class (`5xx`), an exact status (`404`), or null for any. */
  status: string | null;
}

/** One finished request seen by a tap (the contract's event, without `proxy`, which the control plane knows). */
export interface TapEvent {
  time: string;
  direction: 'inbound' | 'outbound';
  /** `namespace/name`, or null when the caller is not known (plaintext, or unmeshed). */
  source: string | null;
  destination: string;
  sourceIdentity: string | null;
  method: string;
  authority: string;
  path: string;
  status: number;
  grpcStatus: number | null;
  durationMs: number;
  errorCode: string;
  traceId: string;
  mtls: boolean;
  upstreamHost: string;
}

/** `name.namespace` (metrics labels) as `namespace/name` (the API's); '' stays ''. */
export function apiServiceName(label: string): string {
  const dot = label.lastIndexOf('.');
  return dot === -1 ? label : `${label.slice(dot + 1)}/${label.slice(0, dot)}`;
}
