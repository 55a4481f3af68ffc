/**
 * Local rate limiting: one token bucket per key in each proxy. A bucket holds up to `burst`
 * tokens, gains `requests` tokens every `perMs` (continuously), and each request takes one. Buckets
 * are created full on a key's first request; the number of keys is bounded so that a header with
 * unbounded values cannot grow the proxy's memory.
 */

/** One bucket: its tokens at `at` (ms, monotonic). */
interface Bucket {
  tokens: number;
  at: number;
}

/** A bucket's verdict: 0 when allowed, else the milliseconds until a token is there. */
export type Wait = number;

/** Token buckets of one policy, by key. */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  /** Tokens gained per millisecond. */
  private readonly rate: number;

  constructor(
    readonly requests: number,
    readonly perMs: number,
    readonly burst: number,
    private readonly maxKeys = 10_000,
  ) {
    this.rate = requests / perMs;
  }

  /** Takes a token from `key`'s bucket at time `now` (ms): 0 when there was one, else how long until there is. */
  take(key: string, now: number): Wait {
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) this.evict(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.rate);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
  }

  /** Keys held. */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * Makes room: first drops buckets that have refilled (forgetting them changes nothing), then, if
   * none had, the oldest tenth (in first-use order) — a reset that favours those callers, bounded.
   */
  private evict(now: number): void {
    const full = this.perMs * (this.burst / this.requests);
    for (const [k, b] of this.buckets) if (now - b.at >= full) this.buckets.delete(k);
    if (this.buckets.size < this.maxKeys) return;
    let drop = Math.max(1, Math.floor(this.maxKeys / 10));
    for (const k of this.buckets.keys()) {
      this.buckets.delete(k);
      if (--drop === 0) break;
    }
  }
}
