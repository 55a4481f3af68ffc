/**
 * HAProxy in HTTP mode: one thread, idle upstream connections reused by any request.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { launch } from '../lib/processes.js';
import { freePort } from '../lib/ports.js';
import { servedBy } from '../lib/http-probe.js';
import type { BenchRow } from './types.js';

export const haproxyRow: BenchRow = {
  name: 'haproxy',
  description: 'HAProxy, mode http, nbthread 1, http-reuse always, keep-alive both sides',
  requires: ['haproxy'],
  start: async (ctx) => {
    const port = await freePort();
    const conf = path.join(ctx.tmpDir, 'haproxy.cfg');
    writeFileSync(
      conf,
      `global
  nbthread 1
  # haproxy sizes its fd limit from maxconn; keep it under a typical 20k ulimit.
  maxconn 4096
  pidfile ${path.join(ctx.tmpDir, 'haproxy.pid')}

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend bench
  bind 127.0.0.1:${port}
  default_backend upstream

backend upstream
  server upstream1 127.0.0.1:${ctx.upstreamPort} maxconn 1000
`,
    );
    // -db: stay in the foreground, no master/worker split, so the pid we spawn is the proxy.
    const proc = launch('haproxy', 'haproxy', ['-db', '-f', conf], { core: ctx.proxyCore });
    return servedBy(proc, port);
  },
};
