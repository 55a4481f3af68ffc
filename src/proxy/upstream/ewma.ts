/**
 * Peak-EWMA latency estimates (Finagle, Linkerd): per endpoint, a moving average of response
 * latency that jumps to a new peak at once and decays back slowly, so a slowing endpoint is
 * avoided quickly and tried again gradually.
 */

/** Linkerd's default: the estimate of an endpoint that has answered nothing yet, in milliseconds. */
export const DEFAULT_RTT_MS = 30;
/** A failed try (no response: connect failure, reset, timeout) counts as at least this latency. */
export const FAILURE_PENALTY_MS = 1000;

/** The latency estimate of one endpoint. Times are `performance.now()` milliseconds. */
export class PeakEwma {
  private estimate: number;
  private stamp: number;

  constructor(initialMs = DEFAULT_RTT_MS, now = performance.now()) {
    this.estimate = initialMs;
    this.stamp = now;
  }

  /**
   * Records one latency: a higher one replaces the estimate (the peak), a lower one is averaged in
   * with a weight that grows with the time since the last update (time constant `decayMs`).
   */
  observe(rttMs: number, now: number, decayMs: number): void {
    if (rttMs > this.estimate) this.estimate = rttMs;
    else {
      const decay = Math.exp(-Math.max(0, now - this.stamp) / decayMs);
      this.estimate = this.estimate * decay + rttMs * (1 - decay);
    }
    this.stamp = now;
  }

  /**
   * The estimate now. Unobserved, it decays towards zero with time constant `decayMs` (as tower's
   * PeakEwma does), so an endpoint that was penalised, or is new, is tried again after a while.
   */
  current(now: number, decayMs: number): number {
    const elapsed = now - this.stamp;
    if (elapsed > 0) {
      this.estimate *= Math.exp(-elapsed / decayMs);
      this.stamp = now;
    }
    return this.estimate;
  }
}

const estimates = new WeakMap<object, PeakEwma>();

/**
 * The estimate of the endpoint reached through `pool`: pools outlive configuration pushes (see
 * PoolRegistry), so the estimate does too, and ends with the pool.
 */
export function latencyOf(pool: object): PeakEwma {
  let e = estimates.get(pool);
  if (e === undefined) estimates.set(pool, (e = new PeakEwma()));
  return e;
}
