/**
 * Endpoint health per (cluster, endpoint), owned by the proxy and kept across configurations (as
 * pools are): a new configuration's ClusterEndpoints take their `healthy` and outcome tracker from
 * here, and when an endpoint's health changes the cluster in force rebuilds its picker. Only the
 * clusters of the configuration in force that set `outlierDetection` or `healthCheck` have any
 * state; timers of endpoints and clusters that are gone stop, and all stop on close.
 */
import { MAX_REPORTED_HEALTHY, type EndpointHealthReport, type ReportedCluster } from '../../model/endpoint-health.js';
import type { Cluster } from '../../model/snapshot.js';
import type { TunnelDialer } from '../tcp/tunnel-client.js';
import type { ClusterEndpoint, ClusterRuntime } from './cluster.js';
import { HealthChecker } from './health-check.js';
import { EndpointHealth, endpointKey, type EndpointHealthView } from './health-state.js';
import { OutlierDetector, type EjectionReason } from './outlier.js';

/** Where health events are counted. */
export interface HealthReport {
  /** `weft_outlier_ejections_total{destination_service,reason}` (or, not `enforced`, `weft_outlier_ejections_skipped_total`). */
  ejection(destination: string, reason: EjectionReason, enforced: boolean): void;
  /** `weft_health_checks_total{destination_service,result}`. */
  check(destination: string, passed: boolean): void;
}

export class HealthRegistry {
  private readonly clusters = new Map<string, ClusterHealth>();
  private readonly report: HealthReport;
  private readonly dialer: TunnelDialer;
  /** Told after any endpoint's health changed, or clusters were taken over (set by whoever reports health; see health-reporter.ts). */
  onChange: () => void = () => {};
  private readonly notify = (): void => this.onChange();

  constructor(report: HealthReport, dialer: TunnelDialer) {
    this.report = report;
    this.dialer = dialer;
  }

  /** Takes over the clusters of the configuration now in force. */
  apply(clusters: ReadonlyMap<string, ClusterRuntime>): void {
    for (const [name, h] of this.clusters) {
      const rt = clusters.get(name);
      if (rt === undefined || !watched(rt.config)) {
        h.close();
        this.clusters.delete(name);
      }
    }
    for (const [name, rt] of clusters) {
      if (!watched(rt.config)) continue;
      let h = this.clusters.get(name);
      if (h === undefined) this.clusters.set(name, (h = new ClusterHealth(rt.config, this.report, this.dialer, this.notify)));
      h.attach(rt);
    }
    this.onChange();
  }

  /**
   * Every watched cluster's endpoints and how they stand, for the control plane. Past
   * MAX_REPORTED_HEALTHY endpoints in all, only those not HEALTHY are listed (`partial`).
   */
  snapshot(): EndpointHealthReport {
    let total = 0;
    for (const h of this.clusters.values()) total += h.endpoints.size;
    const partial = total > MAX_REPORTED_HEALTHY;
    const clusters: ReportedCluster[] = [];
    for (const [name, h] of this.clusters) {
      const endpoints: ReportedCluster['endpoints'] = [];
      for (const s of h.endpoints.values()) {
        if (partial && s.healthy) continue;
        const v = s.view();
        const health = v.ejectedUntil !== null ? 'EJECTED' : v.failingHealthChecks ? 'FAILING_HEALTH_CHECKS' : 'HEALTHY';
        endpoints.push({
          workload: s.endpoint.workload,
          address: `${s.endpoint.address}:${s.endpoint.port}`,
          health,
          reason: health === 'EJECTED' ? v.ejectionReason : health === 'FAILING_HEALTH_CHECKS' ? v.lastHealthCheck?.detail || 'failing health checks' : null,
          ejectedUntil: v.ejectedUntil,
          lastCheck: v.lastHealthCheck,
        });
      }
      clusters.push({ name, outlierDetection: h.outlier !== null, healthCheck: h.checker !== null, endpoints, partial });
    }
    return { clusters };
  }

  /** How an endpoint of a cluster in force stands; null when its cluster watches nothing. */
  view(cluster: string, ep: ClusterEndpoint): EndpointHealthView | null {
    return this.clusters.get(cluster)?.endpoints.get(endpointKey(ep.endpoint))?.view() ?? null;
  }

  /** Gauges: endpoints ejected and endpoints failing their checks, per destination service. */
  gauges(): string[] {
    const ejected = new Map<string, number>();
    const failing = new Map<string, number>();
    for (const h of this.clusters.values()) {
      let e = 0;
      let f = 0;
      for (const s of h.endpoints.values()) {
        if (s.ejectedUntil !== 0) e++;
        if (s.failingChecks) f++;
      }
      if (h.outlier !== null) ejected.set(h.destination, (ejected.get(h.destination) ?? 0) + e);
      if (h.checker !== null) failing.set(h.destination, (failing.get(h.destination) ?? 0) + f);
    }
    const out: string[] = [];
    if (ejected.size > 0) out.push('# HELP weft_endpoints_ejected Endpoints ejected by outlier detection now.', '# TYPE weft_endpoints_ejected gauge', ...[...ejected].map(([d, n]) => `weft_endpoints_ejected{destination_service="${d}"} ${n}`));
    if (failing.size > 0) out.push('# HELP weft_endpoints_failing_health_checks Endpoints failing their active health checks now.', '# TYPE weft_endpoints_failing_health_checks gauge', ...[...failing].map(([d, n]) => `weft_endpoints_failing_health_checks{destination_service="${d}"} ${n}`));
    return out;
  }

  close(): void {
    for (const h of this.clusters.values()) h.close();
    this.clusters.clear();
  }
}

/** True when a cluster needs health state: it has outlier detection or active checks. */
function watched(c: Cluster): boolean {
  return c.outlierDetection !== undefined || c.healthCheck !== undefined;
}

/** The health of one cluster's endpoints, and the ClusterRuntime in force that it keeps informed. */
class ClusterHealth {
  readonly destination: string;
  readonly endpoints = new Map<string, EndpointHealth>();
  /** The same endpoints, for the detector's iteration. */
  private readonly set = new Set<EndpointHealth>();
  outlier: OutlierDetector | null = null;
  checker: HealthChecker | null = null;
  private runtime: ClusterRuntime | null = null;
  /** The ClusterEndpoints in force by endpoint key. */
  private current = new Map<string, ClusterEndpoint>();
  private readonly report: HealthReport;
  private readonly dialer: TunnelDialer;
  private readonly notify: () => void;

  constructor(config: Cluster, report: HealthReport, dialer: TunnelDialer, notify: () => void) {
    this.destination = `${config.service}.${config.namespace}`;
    this.report = report;
    this.dialer = dialer;
    this.notify = notify;
  }

  /** The cluster in force is now `rt`: endpoints come and go, settings change, state stays. */
  attach(rt: ClusterRuntime): void {
    const config = rt.config;
    this.runtime = rt;
    this.current = new Map(rt.endpoints.map((ep) => [endpointKey(ep.endpoint), ep]));
    for (const [key, s] of this.endpoints) {
      if (this.current.has(key)) continue;
      this.outlier?.forget(s);
      this.checker?.remove(s);
      this.endpoints.delete(key);
      this.set.delete(s);
    }

    const od = config.outlierDetection;
    if (od === undefined) {
      this.outlier?.close();
      this.outlier = null;
    } else if (this.outlier === null) {
      this.outlier = new OutlierDetector(od, this.set, { changed: this.changed, ejection: (reason, enforced) => this.report.ejection(this.destination, reason, enforced) });
    } else this.outlier.update(od);

    const hc = config.healthCheck;
    if (this.checker !== null && (hc === undefined || JSON.stringify(hc) !== JSON.stringify(this.checker.config))) {
      this.checker.close();
      this.checker = null;
    }
    if (hc !== undefined && this.checker === null) {
      this.checker = new HealthChecker(hc, {
        target: (s) => this.current.get(endpointKey(s.endpoint)),
        dialer: this.dialer,
        cluster: config.name,
        authority: this.destination,
        changed: this.changed,
        checked: (passed) => this.report.check(this.destination, passed),
      });
    }

    for (const [key, ep] of this.current) {
      let s = this.endpoints.get(key);
      if (s === undefined) {
        s = new EndpointHealth(ep.endpoint);
        this.endpoints.set(key, s);
        this.set.add(s);
      }
      s.endpoint = ep.endpoint;
      s.outlier = this.outlier;
      ep.tracker = this.outlier === null ? null : s;
      this.checker?.add(s);
    }
    this.changed();
  }

  /** Copies each endpoint's health to the cluster in force and has it rebuild its picker. */
  private readonly changed = (): void => {
    const rt = this.runtime;
    if (rt === null) return;
    for (const [key, ep] of this.current) ep.healthy = this.endpoints.get(key)?.healthy ?? true;
    rt.refresh();
    this.notify();
  };

  close(): void {
    this.outlier?.close();
    this.checker?.close();
    this.outlier = null;
    this.checker = null;
    this.runtime = null;
  }
}
