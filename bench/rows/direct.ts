/**
 * Baseline: the client talks to the upstream itself, no proxy in between.
 */
import type { BenchRow } from './types.js';

export const directRow: BenchRow = {
  name: 'direct',
  description: 'client → upstream nginx, no proxy (lower bound for latency, upper bound for req/s)',
  requires: [],
  start: async (ctx) => ({ port: ctx.upstreamPort, pids: [], stop: async () => {} }),
};
