/**
 * The upstream every row forwards to: a dedicated nginx answering `200 hello world\n` with
 * keep-alive, pinned to the load core. It is much faster than any proxy under test, so it is not
 * the bottleneck (the results report how busy its core was, to check).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { launch } from './lib/processes.js';
import { freePort } from './lib/ports.js';
import { servedBy } from './lib/http-probe.js';
import type { RunningRow } from './rows/types.js';

/** nginx main-context lines shared by the upstream and the nginx proxy row. */
export function nginxPreamble(dir: string): string {
  return `daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 8192; multi_accept on; }
`;
}

/** Temp paths inside `dir` so nginx never touches /var. */
export function nginxHttpPreamble(dir: string): string {
  return `  access_log off;
  client_body_temp_path ${path.join(dir, 'client_body')};
  proxy_temp_path ${path.join(dir, 'proxy')};
  fastcgi_temp_path ${path.join(dir, 'fastcgi')};
  uwsgi_temp_path ${path.join(dir, 'uwsgi')};
  scgi_temp_path ${path.join(dir, 'scgi')};
  keepalive_timeout 75s;
  keepalive_requests 10000000;
`;
}

/**
 * The upstream nginx: `/` answers `hello world`; `locations` adds more `location` blocks (e.g. an
 * exact path with a bigger body).
 */
export async function startUpstream(dir: string, core: number | null, locations = '', name = 'upstream nginx'): Promise<RunningRow> {
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${nginxPreamble(dir)}
http {
${nginxHttpPreamble(dir)}
  server {
    listen 127.0.0.1:${port} default_server backlog=4096;
    default_type text/plain;
${locations}    location / { return 200 "hello world\\n"; }
  }
}
`,
  );
  const proc = launch(name, 'nginx', ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')], { core });
  return servedBy(proc, port);
}
