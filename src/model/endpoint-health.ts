/**
 * Endpoint health as the proxies see it (outlier detection, active health checks), reported to the
 * control plane on the config stream, and how the control plane sums the callers' views of one
 * endpoint. Only clusters with outlier detection or health checks are reported: an endpoint of any
 * other cluster is never excluded, and nobody watches it.
 */

/** How one caller treats an endpoint: takes traffic, or excluded and why. */
export type EndpointHealthState = 'HEALTHY' | 'EJECTED' | 'FAILING_HEALTH_CHECKS';

/** Most endpoints a report lists whole; past this it lists only the ones not HEALTHY (unlisted ones of a listed cluster are HEALTHY). */
export const MAX_REPORTED_HEALTHY = 500;

/** One endpoint in a proxy's report. */
export interface ReportedEndpoint {
  /** Workload `namespace/name`. */
  workload: string;
  /** `host:port` the proxy dials (the workload proxy's inbound port when the endpoint is proxied). */
  address: string;
  health: EndpointHealthState;
  /** Why it is excluded: the ejection reason (`consecutive_5xx`, …) or the failing check's detail; null when HEALTHY. */
  reason: string | null;
  /** When the ejection ends (ISO time); null unless EJECTED. */
  ejectedUntil: string | null;
  /** The last active check, when the cluster has them. */
  lastCheck: { at: string; passed: boolean; detail: string } | null;
}

/** One watched cluster in a proxy's report. */
export interface ReportedCluster {
  /** `<service>.<namespace>:<port>` */
  name: string;
  outlierDetection: boolean;
  healthCheck: boolean;
  /** Every endpoint, or (when `partial`) only those not HEALTHY. */
  endpoints: ReportedEndpoint[];
  partial: boolean;
}

/** A proxy's whole view, sent on connect and after each change (message `endpoint-health`). */
export interface EndpointHealthReport {
  clusters: ReportedCluster[];
}

/** The key of an endpoint within its cluster, the same on both ends: `<workload>|<host:port>`. */
export function reportedEndpointKey(workload: string, address: string): string {
  return `${workload}|${address}`;
}

/** One caller that excludes an endpoint. */
export interface ExcludedBy {
  proxy: string;
  health: Exclude<EndpointHealthState, 'HEALTHY'>;
  reason: string | null;
  /** When the ejection ends (ISO time), or null. */
  until: string | null;
}

/** An endpoint's health over every caller that watches it. */
export interface AggregateHealth {
  /** HEALTHY when no caller excludes it; else what most excluding callers say (ties: FAILING_HEALTH_CHECKS). */
  health: EndpointHealthState;
  /** Some caller has outlier detection or health checks for it and reported. */
  checked: boolean;
  /** Callers that check it (M), and the ones that exclude it (N). */
  checkedBy: number;
  excludedBy: number;
  by: ExcludedBy[];
}

/** Sums the views of the callers that report on an endpoint (`views` holds one entry per caller whose report lists its cluster). */
export function aggregateHealth(views: ReadonlyArray<{ proxy: string; endpoint: ReportedEndpoint | null }>): AggregateHealth {
  const by: ExcludedBy[] = [];
  for (const v of views) {
    const e = v.endpoint;
    if (e === null || e.health === 'HEALTHY') continue;
    by.push({ proxy: v.proxy, health: e.health, reason: e.reason, until: e.ejectedUntil });
  }
  by.sort((a, b) => (a.proxy < b.proxy ? -1 : 1));
  const ejected = by.filter((b) => b.health === 'EJECTED').length;
  const health: EndpointHealthState = by.length === 0 ? 'HEALTHY' : ejected > by.length - ejected ? 'EJECTED' : 'FAILING_HEALTH_CHECKS';
  return { health, checked: views.length > 0, checkedBy: views.length, excludedBy: by.length, by };
}

/** Checks a report from the wire; returns why it is malformed, or null. */
export function endpointHealthReportProblem(r: unknown): string | null {
  if (typeof r !== 'object' || r === null || !Array.isArray((r as EndpointHealthReport).clusters)) return 'report.clusters: not a list';
  const states = new Set(['HEALTHY', 'EJECTED', 'FAILING_HEALTH_CHECKS']);
  for (const [i, c] of (r as EndpointHealthReport).clusters.entries()) {
    if (typeof c !== 'object' || c === null || typeof c.name !== 'string') return `report.clusters[${i}].name: not a string`;
    if (!Array.isArray(c.endpoints)) return `report.clusters[${i}].endpoints: not a list`;
    for (const [j, e] of c.endpoints.entries()) {
      if (typeof e !== 'object' || e === null || typeof e.workload !== 'string' || typeof e.address !== 'string') return `report.clusters[${i}].endpoints[${j}]: no workload or address`;
      if (!states.has(e.health)) return `report.clusters[${i}].endpoints[${j}].health: ${JSON.stringify(e.health)} is not HEALTHY, EJECTED or FAILING_HEALTH_CHECKS`;
    }
  }
  return null;
}
