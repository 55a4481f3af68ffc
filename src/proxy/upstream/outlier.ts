/**
 * Outlier detection per cluster (Envoy's): every try's outcome is counted per endpoint, and an
 * endpoint that fails `consecutive…` times in a row is ejected at once — not at the next interval —
 * for `baseEjectionTime` × its number of ejections (capped by `maxEjectionTime`); it comes back
 * when that time is over. Each `interval` compares success rates (when `successRate` is set) and
 * lets every endpoint not ejected forget one past ejection. At most `maxEjectionPercent` % of the
 * endpoints are ejected at once, but always at least one (a percentage of 0 ejects none).
 */
import { isMeshError } from '../../core/errors.js';
import type { OutlierDetection } from '../../model/snapshot.js';
import type { EndpointHealth } from './health-state.js';

/** Why an endpoint was ejected: the `reason` label of `weft_outlier_ejections_total`. */
export type EjectionReason = 'consecutive_5xx' | 'consecutive_gateway_errors' | 'consecutive_connect_failures' | 'success_rate';

/** What outlier detection is told of each try to one endpoint (an EndpointHealth; set on ClusterEndpoint.tracker). */
export interface OutcomeTracker {
  /** The endpoint answered (HTTP), with this status. */
  response(status: number): void;
  /** The try failed without an answer: connect, TLS, reset, timeout… (other errors are not the endpoint's). */
  failure(err: unknown): void;
  /** A TCP connection was joined to the endpoint. */
  connected(): void;
}

/** How a failed try counts: a connect failure (local origin), a gateway error, or not at all. */
export function failureKind(err: unknown): 'connect' | 'gateway' | null {
  if (!isMeshError(err)) return null;
  switch (err.code) {
    case 'UPSTREAM_CONNECT_FAILURE':
    case 'UPSTREAM_TLS_FAILURE':
      return 'connect';
    case 'UPSTREAM_RESET':
    case 'UPSTREAM_TIMEOUT':
    case 'UPSTREAM_PROTOCOL_ERROR':
      return 'gateway';
    default:
      return null;
  }
}

/** What a detector tells its cluster. */
export interface OutlierHooks {
  /** An endpoint was ejected or came back: the cluster's picker must be rebuilt. */
  changed(): void;
  /** An ejection happened (`enforced`), or was not done because too many endpoints are out. */
  ejection(reason: EjectionReason, enforced: boolean): void;
}

/** The outlier detection of one cluster, kept across configurations by the HealthRegistry. */
export class OutlierDetector {
  config: OutlierDetection;
  private readonly endpoints: ReadonlySet<EndpointHealth>;
  private readonly hooks: OutlierHooks;
  private readonly now: () => number;
  private ticker: NodeJS.Timeout;

  constructor(config: OutlierDetection, endpoints: ReadonlySet<EndpointHealth>, hooks: OutlierHooks, now: () => number = Date.now) {
    this.config = config;
    this.endpoints = endpoints;
    this.hooks = hooks;
    this.now = now;
    this.ticker = this.startTicker();
  }

  private startTicker(): NodeJS.Timeout {
    const t = setInterval(() => this.tick(), this.config.intervalMs);
    t.unref();
    return t;
  }

  /** A new configuration of the same cluster: counts and ejections carry on under the new limits. */
  update(config: OutlierDetection): void {
    const interval = config.intervalMs !== this.config.intervalMs;
    this.config = config;
    if (interval) {
      clearInterval(this.ticker);
      this.ticker = this.startTicker();
    }
  }

  /** Endpoints ejected now. */
  get ejectedCount(): number {
    let n = 0;
    for (const e of this.endpoints) if (e.ejectedUntil !== 0) n++;
    return n;
  }

  response(e: EndpointHealth, status: number): void {
    if (e.ejectedUntil !== 0) return;
    e.requests++;
    if (status < 500) {
      e.successes++;
      e.consecutive5xx = e.consecutiveGatewayErrors = e.consecutiveConnectFailures = 0;
      return;
    }
    e.consecutive5xx++;
    if (status === 502 || status === 503 || status === 504) e.consecutiveGatewayErrors++;
    else e.consecutiveGatewayErrors = 0;
    // An answer, even a 5xx, means the connection worked.
    e.consecutiveConnectFailures = 0;
    this.check(e);
  }

  failure(e: EndpointHealth, kind: 'connect' | 'gateway'): void {
    if (e.ejectedUntil !== 0) return;
    e.requests++;
    // As Envoy without split local-origin errors: a connect failure is also a 503, a reset a 502.
    e.consecutive5xx++;
    e.consecutiveGatewayErrors++;
    if (kind === 'connect') e.consecutiveConnectFailures++;
    this.check(e);
  }

  connected(e: EndpointHealth): void {
    if (e.ejectedUntil !== 0) return;
    e.requests++;
    e.successes++;
    e.consecutive5xx = e.consecutiveGatewayErrors = e.consecutiveConnectFailures = 0;
  }

  private check(e: EndpointHealth): void {
    const c = this.config;
    let reason: EjectionReason | null = null;
    if (c.consecutiveConnectFailures > 0 && e.consecutiveConnectFailures >= c.consecutiveConnectFailures) reason = 'consecutive_connect_failures';
    else if (c.consecutiveGatewayErrors > 0 && e.consecutiveGatewayErrors >= c.consecutiveGatewayErrors) reason = 'consecutive_gateway_errors';
    else if (c.consecutive5xx > 0 && e.consecutive5xx >= c.consecutive5xx) reason = 'consecutive_5xx';
    if (reason === null) return;
    // Counted afresh after each attempt, ejected or not, so a refused ejection is tried again later.
    e.consecutive5xx = e.consecutiveGatewayErrors = e.consecutiveConnectFailures = 0;
    this.eject(e, reason);
  }

  /** The most endpoints out at once: `maxEjectionPercent` of them, rounded down, but at least one. */
  private get maxEjected(): number {
    const p = this.config.maxEjectionPercent;
    return p === 0 ? 0 : Math.max(1, Math.floor((this.endpoints.size * p) / 100));
  }

  /** Ejects `e` unless too many are out already; true when ejected. */
  eject(e: EndpointHealth, reason: EjectionReason): boolean {
    if (e.ejectedUntil !== 0) return false;
    if (this.ejectedCount >= this.maxEjected) {
      this.hooks.ejection(reason, false);
      return false;
    }
    e.ejections++;
    const ms = Math.min(this.config.baseEjectionTimeMs * e.ejections, this.config.maxEjectionTimeMs);
    e.ejectedUntil = this.now() + ms;
    e.ejectionReason = reason;
    e.ejectTimer = setTimeout(() => this.restore(e), ms);
    e.ejectTimer.unref();
    this.hooks.ejection(reason, true);
    this.hooks.changed();
    return true;
  }

  /** Brings `e` back once its ejection is over. */
  private restore(e: EndpointHealth): void {
    e.ejectTimer = null;
    if (e.ejectedUntil === 0) return;
    e.ejectedUntil = 0;
    e.requests = e.successes = 0;
    this.hooks.changed();
  }

  /** Every interval: success-rate ejection, then one past ejection forgotten per endpoint that is in. */
  tick(): void {
    const sr = this.config.successRate;
    if (sr !== null) {
      const rates: Array<[EndpointHealth, number]> = [];
      for (const e of this.endpoints) if (e.ejectedUntil === 0 && e.requests >= sr.requestVolume) rates.push([e, e.successes / e.requests]);
      if (rates.length >= sr.minimumHosts && rates.length > 0) {
        const mean = rates.reduce((s, [, r]) => s + r, 0) / rates.length;
        const stdev = Math.sqrt(rates.reduce((s, [, r]) => s + (r - mean) ** 2, 0) / rates.length);
        const limit = mean - (sr.stdevFactor / 1000) * stdev;
        for (const [e, r] of rates) if (r < limit) this.eject(e, 'success_rate');
      }
    }
    for (const e of this.endpoints) {
      if (e.ejectedUntil === 0) {
        if (e.ejections > 0) e.ejections--;
        e.requests = e.successes = 0;
      }
    }
  }

  /** Ends `e`'s ejection timer (it left the cluster). */
  forget(e: EndpointHealth): void {
    if (e.ejectTimer !== null) clearTimeout(e.ejectTimer);
    e.ejectTimer = null;
    e.ejectedUntil = 0;
  }

  close(): void {
    clearInterval(this.ticker);
    for (const e of this.endpoints) this.forget(e);
  }
}
