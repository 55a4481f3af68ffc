/**
 * The health of one endpoint of one cluster, kept by the proxy's HealthRegistry across
 * configurations: outlier detection's counts and ejection, and the active checks' verdict.
 */
import type { Endpoint } from '../../model/snapshot.js';
import { failureKind, type EjectionReason, type OutcomeTracker, type OutlierDetector } from './outlier.js';

/** How an endpoint stands, as `/clusters` shows it. */
export interface EndpointHealthView {
  healthy: boolean;
  /** When the current ejection ends (ISO time), or null. */
  ejectedUntil: string | null;
  ejectionReason: EjectionReason | null;
  /** Ejections that count towards the next one's length. */
  ejections: number;
  failingHealthChecks: boolean;
  /** The last active check: when, passed or not, and why not. */
  lastHealthCheck: { at: string; passed: boolean; detail: string } | null;
}

export class EndpointHealth implements OutcomeTracker {
  endpoint: Endpoint;
  /** The cluster's outlier detection, or null when it has none. */
  outlier: OutlierDetector | null = null;

  consecutive5xx = 0;
  consecutiveGatewayErrors = 0;
  consecutiveConnectFailures = 0;
  /** Tries and successes this interval (success-rate ejection). */
  requests = 0;
  successes = 0;
  /** Ejections so far, less one per interval spent in: multiplies `baseEjectionTime`. */
  ejections = 0;
  /** When the current ejection ends (`Date.now()` ms), or 0 when not ejected. */
  ejectedUntil = 0;
  ejectionReason: EjectionReason | null = null;
  ejectTimer: NodeJS.Timeout | null = null;

  /** True once `unhealthyThreshold` checks failed in a row, until `healthyThreshold` pass in a row. */
  failingChecks = false;
  checkPasses = 0;
  checkFailures = 0;
  lastCheck: { at: number; passed: boolean; detail: string } | null = null;
  checkTimer: NodeJS.Timeout | null = null;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  /** Takes traffic: not ejected and not failing its checks (new endpoints start healthy). */
  get healthy(): boolean {
    return this.ejectedUntil === 0 && !this.failingChecks;
  }

  response(status: number): void {
    this.outlier?.response(this, status);
  }

  failure(err: unknown): void {
    if (this.outlier === null) return;
    const kind = failureKind(err);
    if (kind !== null) this.outlier.failure(this, kind);
  }

  connected(): void {
    this.outlier?.connected(this);
  }

  view(): EndpointHealthView {
    const last = this.lastCheck;
    return {
      healthy: this.healthy,
      ejectedUntil: this.ejectedUntil === 0 ? null : new Date(this.ejectedUntil).toISOString(),
      ejectionReason: this.ejectedUntil === 0 ? null : this.ejectionReason,
      ejections: this.ejections,
      failingHealthChecks: this.failingChecks,
      lastHealthCheck: last === null ? null : { at: new Date(last.at).toISOString(), passed: last.passed, detail: last.detail },
    };
  }
}

/** An endpoint's identity within its cluster: its health is kept while this stays the same. */
export function endpointKey(e: Endpoint): string {
  return `${e.workload}|${e.address}|${e.port}|${e.appPort}`;
}
