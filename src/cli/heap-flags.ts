/**
 * V8 heap settings of `weft proxy` (and so of the sidecars `weft up` starts), applied in-process
 * before the proxy's modules load. Measured in docs/performance.md ("Issue 8 targets").
 */
import v8 from 'node:v8';

/**
 * Keeps V8's young generation at its initial size (two 1 MiB semi-spaces) instead of letting it
 * grow to 2 × 16 MiB under load. A proxy's per-request garbage dies young and little survives a
 * scavenge, so the small nursery costs a few more, cheap, scavenges and saves ≈ 15 MiB of RSS.
 * `--max-semi-space-size` cannot be changed once the heap exists; the growth factor can. A semi-space
 * flag given by the user (on the command line or in NODE_OPTIONS) wins: then nothing is set.
 */
export function applyProxyHeapFlags(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => /semi[-_]space/.test(a));
  if (!given) v8.setFlagsFromString('--semi-space-growth-factor=1');
  // The old generation's next collection comes once it is 1.2× what survived the last one, not V8's
  // default (up to 4× on small heaps): with the small nursery more short-lived objects are promoted,
  // and on a multiplexed peer session they piled up as 10 MiB of old-space garbage (+7 MiB of RSS at
  // 1,000 req/s with 1,000 idle connections). No CPU cost measured. NODE_OPTIONS refuses this flag.
  v8.setFlagsFromString('--heap-growing-percent=20');
  // More V8 flags for measurements (flags NODE_OPTIONS refuses), e.g. WEFT_EXPERIMENT_V8_FLAGS=--heap-growing-percent=50.
  const extra = process.env.WEFT_EXPERIMENT_V8_FLAGS;
  if (extra) v8.setFlagsFromString(extra);
}
