/**
 * nginx as a reverse proxy: one worker, keep-alive pool to the upstream.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { launch } from '../lib/processes.js';
import { freePort } from '../lib/ports.js';
import { servedBy } from '../lib/http-probe.js';
import { nginxHttpPreamble, nginxPreamble } from '../upstream.js';
import type { BenchRow } from './types.js';

export const nginxRow: BenchRow = {
  name: 'nginx',
  description: 'nginx reverse proxy, worker_processes 1, upstream keepalive 64, HTTP/1.1 to upstream',
  requires: ['nginx'],
  start: async (ctx) => {
    const port = await freePort();
    const conf = path.join(ctx.tmpDir, 'nginx.conf');
    writeFileSync(
      conf,
      `${nginxPreamble(ctx.tmpDir)}
http {
${nginxHttpPreamble(ctx.tmpDir)}
  upstream backend {
    server 127.0.0.1:${ctx.upstreamPort};
    keepalive 64;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
  }
  server {
    listen 127.0.0.1:${port} default_server backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`,
    );
    const proc = launch('nginx', 'nginx', ['-p', ctx.tmpDir, '-c', conf, '-e', path.join(ctx.tmpDir, 'error.log')], {
      core: ctx.proxyCore,
    });
    return servedBy(proc, port);
  },
};
