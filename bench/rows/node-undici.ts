/**
 * Peer: a plain Node http server + undici Pool proxy (bench/peers/node-undici-proxy.ts).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { launch } from '../lib/processes.js';
import { freePort } from '../lib/ports.js';
import { servedBy } from '../lib/http-probe.js';
import type { BenchRow } from './types.js';

export const nodeUndiciRow: BenchRow = {
  name: 'node+undici',
  description: 'node:http server + undici Pool (keep-alive), ~40 lines: the cost of Node itself',
  requires: [],
  start: async (ctx) => {
    const script = path.join(ctx.repoRoot, 'dist', 'bench', 'peers', 'node-undici-proxy.js');
    if (!existsSync(script)) throw new Error(`${path.relative(ctx.repoRoot, script)} not found (run npm run build)`);
    const port = await freePort();
    const proc = launch(
      'node+undici',
      process.execPath,
      [script, '--port', String(port), '--upstream', `127.0.0.1:${ctx.upstreamPort}`],
      { core: ctx.proxyCore, cwd: ctx.repoRoot },
    );
    return servedBy(proc, port);
  },
};
