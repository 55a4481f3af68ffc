/**
 * Endpoint health as the connected proxies report it (model/endpoint-health.ts): per proxy, its
 * latest whole view (watched cluster → endpoint → health, reason, ejection end, last check), replaced
 * by each report and dropped when its stream closes. `serviceHealth` sums the callers' views of each
 * endpoint of a service for `GET /api/v1/endpoints` and the dashboard.
 */
import {
  aggregateHealth,
  endpointHealthReportProblem,
  reportedEndpointKey,
  type AggregateHealth,
  type ClusterConfig,
  type Endpoint,
  type EndpointHealthReport,
  type ReportedCluster,
  type ReportedEndpoint,
} from '../../model/index.js';

/** One cluster of one proxy's view, its endpoints by key. */
interface HeldCluster {
  outlierDetection: boolean;
  healthCheck: boolean;
  partial: boolean;
  endpoints: Map<string, ReportedEndpoint>;
}

/** One proxy's view. */
interface HeldView {
  /** When it was reported (ms since the epoch). */
  at: number;
  report: EndpointHealthReport;
  clusters: Map<string, HeldCluster>;
}

/** An endpoint of a service with every caller's verdict summed. */
export interface ServiceEndpointHealth extends AggregateHealth {
  cluster: string;
  port: number;
  workload: string;
  /** `host:port` callers dial. */
  address: string;
  proxied: boolean;
  /** In words: `excluded by 1 of 2 callers that check it`, `checked by 2 callers`, `not checked`. */
  summary: string;
}

/** What `GET /api/v1/endpoints?service=` answers. */
export interface ServiceHealthView {
  service: string;
  /** Whether a cluster holding the service's endpoints has outlier detection or health checks configured (a BackendPolicy). */
  policy: { outlierDetection: boolean; healthCheck: boolean };
  /** Connected proxies whose report covers a cluster holding one of the service's endpoints. */
  reporting: string[];
  endpoints: ServiceEndpointHealth[];
}

export class EndpointHealthStore {
  private readonly views = new Map<string, HeldView>();
  readonly counters = { reports: 0, malformed: 0 };

  /** Takes a proxy's whole view in place of its last one; false (and counted) when it is malformed. */
  ingest(proxyId: string, report: unknown): boolean {
    const problem = endpointHealthReportProblem(report);
    if (problem !== null) {
      this.counters.malformed++;
      return false;
    }
    const r = report as EndpointHealthReport;
    this.counters.reports++;
    if (r.clusters.length === 0) {
      this.views.delete(proxyId);
      return true;
    }
    const clusters = new Map<string, HeldCluster>();
    for (const c of r.clusters) {
      clusters.set(c.name, {
        outlierDetection: c.outlierDetection === true,
        healthCheck: c.healthCheck === true,
        partial: c.partial === true,
        endpoints: new Map(c.endpoints.map((e) => [reportedEndpointKey(e.workload, e.address), e])),
      });
    }
    this.views.set(proxyId, { at: Date.now(), report: r, clusters });
    return true;
  }

  /** Forgets a proxy's view (its stream closed, or a new one opened that has not reported yet). */
  drop(proxyId: string): void {
    this.views.delete(proxyId);
  }

  /** Proxies with a view held. */
  get size(): number {
    return this.views.size;
  }

  /** A proxy's own view as it reported it, and when; null when it reported none on its current stream. */
  forProxy(proxyId: string): { reportedAt: number; clusters: ReportedCluster[] } | null {
    const v = this.views.get(proxyId);
    return v === undefined ? null : { reportedAt: v.at, clusters: v.report.clusters };
  }

  /**
   * Each endpoint of the service `namespace/name` with the verdict of every caller whose view covers
   * a cluster holding it. `clusters` are the compiled clusters of the service's namespace: its own
   * give the endpoints; any other that holds the same endpoint counts too (a caller that reaches
   * `reviews` only through a route's `reviews-v1` backend still checks reviews' endpoints).
   */
  serviceHealth(namespace: string, name: string, clusters: ReadonlyArray<{ config: ClusterConfig; endpoints: readonly Endpoint[] }>): ServiceHealthView {
    const own = clusters.filter((c) => c.config.service === name && c.config.namespace === namespace);
    const keys = new Set(own.flatMap((c) => c.endpoints.map((e) => reportedEndpointKey(e.workload, `${e.address}:${e.port}`))));
    /** Clusters holding each endpoint of the service. */
    const holding = new Map<string, ClusterConfig[]>();
    const policy = { outlierDetection: false, healthCheck: false };
    for (const c of clusters) {
      let holds = false;
      for (const e of c.endpoints) {
        const key = reportedEndpointKey(e.workload, `${e.address}:${e.port}`);
        if (!keys.has(key)) continue;
        holds = true;
        const list = holding.get(key);
        if (list === undefined) holding.set(key, [c.config]);
        else list.push(c.config);
      }
      if (holds && c.config.outlierDetection !== undefined) policy.outlierDetection = true;
      if (holds && c.config.healthCheck !== undefined) policy.healthCheck = true;
    }
    const reporting = new Set<string>();
    const endpoints: ServiceEndpointHealth[] = [];
    for (const { config, endpoints: eps } of own) {
      for (const e of eps) {
        const address = `${e.address}:${e.port}`;
        const key = reportedEndpointKey(e.workload, address);
        const views: Array<{ proxy: string; endpoint: ReportedEndpoint | null }> = [];
        for (const [proxy, v] of this.views) {
          // A caller with several clusters holding the endpoint excludes it if any of them does; an
          // endpoint a view leaves out (a partial view lists only what is not HEALTHY) is HEALTHY.
          let seen = false;
          let verdict: ReportedEndpoint | null = null;
          for (const c of holding.get(key) ?? []) {
            const held = v.clusters.get(c.name);
            if (held === undefined) continue;
            seen = true;
            const r = held.endpoints.get(key);
            if (r !== undefined && (verdict === null || verdict.health === 'HEALTHY')) verdict = r;
          }
          if (!seen) continue;
          views.push({ proxy, endpoint: verdict });
          reporting.add(proxy);
        }
        const agg = aggregateHealth(views);
        endpoints.push({ cluster: config.name, port: config.port, workload: e.workload, address, proxied: e.proxied, ...agg, summary: summary(agg) });
      }
    }
    endpoints.sort((a, b) => (a.workload !== b.workload ? (a.workload < b.workload ? -1 : 1) : a.port - b.port));
    return { service: `${namespace}/${name}`, policy, reporting: [...reporting].sort(), endpoints };
  }
}

function summary(a: AggregateHealth): string {
  const callers = (n: number): string => `${n} caller${n === 1 ? '' : 's'}`;
  if (!a.checked) return 'not checked';
  if (a.excludedBy === 0) return `checked by ${callers(a.checkedBy)}`;
  return `excluded by ${a.excludedBy} of ${callers(a.checkedBy)} that check it`;
}
