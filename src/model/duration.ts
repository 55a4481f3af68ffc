/** Gateway API durations (GEP-2257), shared by Weft's own kinds. */

const DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Milliseconds of a duration such as `1m30s` or `250ms` (`0s` = 0, "none"); throws on anything else. */
export function parseDuration(s: string): number {
  if (!DURATION.test(s)) throw new Error(`invalid duration ${JSON.stringify(s)}: must be like "10s", "1m30s" or "250ms"`);
  let ms = 0;
  // `ms` is tried before `m` so that "5ms" is not read as five minutes followed by a stray "s".
  for (const [, n, unit] of s.matchAll(/([0-9]+)(ms|h|m|s)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return ms;
}
