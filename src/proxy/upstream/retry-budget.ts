/**
 * A retry budget per cluster (Finagle's and Linkerd's): every request deposits `percent`/100 of a
 * retry, deposits fade away over about ten seconds, and `minRetriesPerSecond` retries are allowed
 * whatever the volume. A retry withdraws one token; none left means the retry is not sent, so
 * retries can add at most `percent` % (plus the minimum) to the load on a failing destination.
 */
import { DEFAULT_RETRY_BUDGET } from '../../model/compile.js';
import type { RetryBudget } from '../../model/snapshot.js';

/** How long a deposit lasts (time constant of the decay), as Linkerd's 10 s TTL. */
const TTL_MS = 10_000;

export class RetryBudgetBucket {
  private readonly ratio: number;
  private readonly minPerSecond: number;
  private readonly now: () => number;
  /** Tokens deposited by requests, decaying. */
  private deposits = 0;
  /** Tokens of the per-second minimum, refilled continuously, capped at one second's worth. */
  private reserve: number;
  private last: number;

  constructor(budget: RetryBudget = DEFAULT_RETRY_BUDGET, now: () => number = () => performance.now()) {
    this.ratio = budget.percent / 100;
    this.minPerSecond = budget.minRetriesPerSecond;
    this.now = now;
    this.reserve = this.minPerSecond;
    this.last = now();
  }

  private advance(): void {
    const t = this.now();
    const dt = t - this.last;
    if (dt <= 0) return;
    this.last = t;
    this.deposits *= Math.exp(-dt / TTL_MS);
    this.reserve = Math.min(this.minPerSecond, this.reserve + (this.minPerSecond * dt) / 1000);
  }

  /** A request (not a retry) was sent. */
  deposit(): void {
    if (this.ratio === 0) return;
    this.advance();
    this.deposits += this.ratio;
  }

  /** Takes one retry from the budget; false when there is none left. */
  withdraw(): boolean {
    this.advance();
    if (this.reserve >= 1) {
      this.reserve -= 1;
      return true;
    }
    if (this.deposits >= 1 - 1e-9) {
      this.deposits = Math.max(0, this.deposits - 1);
      return true;
    }
    return false;
  }
}
