/**
 * The peer of the issue 8 targets run: two nginx proxies with mutual TLS between them, in the same
 * positions as Weft's two sidecars. The client nginx takes plaintext HTTP/1.1 and forwards over a
 * keep-alive pool of TLS 1.3 connections that present a client certificate; the server nginx
 * requires and verifies it and forwards to the upstream over plaintext keep-alive. One worker each,
 * both pinned to the proxy core. No metrics, tracing or policy: this is the floor of "two proxies
 * and mTLS" on this machine (kernel, loopback TCP, context switches, TLS), measured in the same run.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../lib/ports.js';
import { launch } from '../lib/processes.js';
import type { RunningRow } from '../rows/types.js';
import { pairRow } from './pair.js';
import { nginxHttpPreamble, nginxPreamble } from '../upstream.js';

/**
 * A P-256 CA and two leaf certificates made with the `openssl` command, in `dir`: `ca.crt`,
 * `server.crt`/`.key` (DNS `peer-server`) and `client.crt`/`.key` (a SPIFFE URI).
 */
export function makeCertificates(dir: string): void {
  const run = (args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${(r.stderr || r.stdout || '').trim().split('\n').pop()}`);
  };
  const key = (name: string): void => run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  key('ca');
  run(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=bench-ca', '-days', '2', '-out', 'ca.crt']);
  for (const [name, san] of [['server', 'DNS:peer-server'], ['client', 'URI:spiffe://bench/ns/default/sa/client']] as const) {
    key(name);
    run(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-out', `${name}.csr`]);
    writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
  }
}

/** Starts the pair; load goes to `port` (the client nginx), `pids` is [client, server]. */
export async function startNginxMtlsPair(dir: string, upstreamPort: number, core: number | null): Promise<RunningRow> {
  makeCertificates(dir);
  const file = (name: string): string => path.join(dir, name);
  const serverPort = await freePort();
  const clientPort = await freePort();
  const serverDir = file('server-nginx');
  const clientDir = file('client-nginx');
  for (const d of [serverDir, clientDir]) spawnSync('mkdir', ['-p', d]);
  writeFileSync(
    path.join(serverDir, 'nginx.conf'),
    `${nginxPreamble(serverDir)}
http {
${nginxHttpPreamble(serverDir)}
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${serverPort} ssl backlog=4096;
    ssl_protocols TLSv1.3;
    ssl_certificate ${file('server.crt')};
    ssl_certificate_key ${file('server.key')};
    ssl_client_certificate ${file('ca.crt')};
    ssl_verify_client on;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  writeFileSync(
    path.join(clientDir, 'nginx.conf'),
    `${nginxPreamble(clientDir)}
http {
${nginxHttpPreamble(clientDir)}
  upstream peer { server 127.0.0.1:${serverPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${clientPort} default_server backlog=4096;
    location / {
      proxy_pass https://peer;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate ${file('client.crt')};
      proxy_ssl_certificate_key ${file('client.key')};
      proxy_ssl_trusted_certificate ${file('ca.crt')};
      proxy_ssl_verify on;
      proxy_ssl_name peer-server;
      proxy_ssl_session_reuse on;
    }
  }
}
`,
  );
  const start = (name: string, d: string) => launch(name, 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-e', path.join(d, 'error.log')], { core });
  const server = start('nginx mTLS server side', serverDir);
  const client = start('nginx mTLS client side', clientDir);
  return pairRow(client, server, clientPort);
}
