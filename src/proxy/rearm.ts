/**
 * A timer kept for an object's life and re-armed per use: refreshing a Timeout in place allocates
 * nothing, where `clearTimeout` and a new `setTimeout` make a Timeout (and its async id) each time.
 */

/**
 * `timer` (armed for `armedMs`, or null) made to call `fn` `ms` from now: refreshed in place when
 * its duration is `ms`, else replaced by a new one. The caller keeps `ms` as the new `armedMs`.
 */
export function rearm(timer: NodeJS.Timeout | null, armedMs: number, ms: number, fn: () => void): NodeJS.Timeout {
  if (timer !== null) {
    if (armedMs === ms) return timer.refresh();
    clearTimeout(timer);
  }
  return setTimeout(fn, ms);
}
