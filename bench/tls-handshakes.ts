/**
 * Full mTLS handshake rate — `npm run bench:tls`.
 *
 * A TLS 1.3 server with an ECDSA P-256 X.509-SVID that requires a client certificate (as a proxy's
 * inbound), pinned alone to core 0; clients on core 1 open connections with their own SVID, 32 at a
 * time, each connection new (no session resumption: full handshakes), for `--duration` seconds.
 * Reports handshakes per second and the server's CPU per handshake, i.e. full handshakes per second
 * per core; then the same with session resumption, the case of a pooled mesh reconnecting. The peer:
 * `openssl s_server` (the system's OpenSSL) with the same certificates, driven by the same clients.
 * Goal (issue 4): ≥ 2,000 full ECDSA handshakes per second per core.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect, createSecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { createCsr, createRootCertificate, generateKey, issueLeafCertificate, keyToPem, readCsr } from '../src/core/identity/x509.js';
import { freePort } from './lib/ports.js';
import { cpuMs } from './lib/proc.js';

/** Resolves once something accepts TCP connections on the port (bounded: 10 s). */
async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const arg = (flag: string, def: number): number => {
  const i = process.argv.indexOf(flag);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const DURATION_S = arg('--duration', 5);
const CONCURRENCY = 32;

function svid(rootKey: ReturnType<typeof generateKey>, root: X509Certificate, sa: string): { key: string; cert: string } {
  const key = generateKey();
  const now = Date.now();
  const leaf = issueLeafCertificate({ publicKey: readCsr(createCsr(key, null)).publicKey, spiffeId: `spiffe://cluster.local/ns/default/sa/${sa}`, issuerCert: root, issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
  return { key: keyToPem(key), cert: leaf.pem };
}

async function run(kind: 'node' | 'openssl', resume: boolean): Promise<{ rate: number; serverCpuMs: number; perCore: number; handshakes: number; resumed: number }> {
  const rootKey = generateKey();
  const now = Date.now();
  const rootPem = createRootCertificate({ key: rootKey, trustDomain: 'cluster.local', commonName: 'bench root', notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
  const root = new X509Certificate(rootPem);
  const server = svid(rootKey, root, 'server');
  const client = svid(rootKey, root, 'client');
  let child: ChildProcess;
  let port: number;
  if (kind === 'node') {
    child = spawn('taskset', ['-c', '0', process.execPath, ...(process.env.BENCH_TLS_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_TLS_PROF] : []), path.join(HERE, 'tls-handshake-server.js')], { stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin!.end(JSON.stringify({ ...server, ca: [rootPem], tickets: resume }));
    port = await new Promise<number>((resolve) => child.stdout!.once('data', (c: Buffer) => resolve((JSON.parse(c.toString()) as { port: number }).port)));
  } else {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-tls-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const f = (name: string, text: string): string => {
      writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    port = await freePort();
    child = spawn('taskset', ['-c', '0', 'openssl', 's_server', '-accept', `127.0.0.1:${port}`, '-cert', f('s.pem', server.cert), '-key', f('s.key', server.key), '-CAfile', f('r.pem', rootPem), '-Verify', '1', '-tls1_3', '-quiet', '-naccept', '1000000', ...(resume ? [] : ['-no_ticket'])], { stdio: ['pipe', 'ignore', 'ignore'] });
    await waitForPort(port);
  }
  const clientContext = createSecureContext({ ...client, ca: [rootPem], minVersion: 'TLSv1.3' });
  let session: Buffer | undefined;
  let handshakes = 0;
  let resumed = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port, secureContext: clientContext, session: resume ? session : undefined, checkServerIdentity: () => undefined });
      // A full handshake is done at secureConnect; a resumable one once its ticket arrived.
      s.on('session', (t: Buffer) => {
        session = t;
        if (resume) s.end();
      });
      s.once('secureConnect', () => {
        handshakes++;
        if (s.isSessionReused()) resumed++;
        if (!resume || s.isSessionReused()) s.end();
      });
      s.on('error', () => {});
      s.resume(); // read (and drop) whatever the server sends, so the stream can end
      s.on('close', () => resolve());
    });
  // Warm up, then measure.
  for (let i = 0; i < 50; i++) await one();
  handshakes = 0;
  resumed = 0;
  const cpu0 = cpuMs([child.pid!]);
  const t0 = performance.now();
  const end = t0 + DURATION_S * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const serverCpuMs = cpuMs([child.pid!]) - cpu0;
  child.kill(process.env.BENCH_TLS_PROF ? 'SIGINT' : 'SIGKILL');
  return { rate: handshakes / elapsed, serverCpuMs, perCore: handshakes / (serverCpuMs / 1000), handshakes, resumed };
}

async function main(): Promise<void> {
  console.log(`mTLS handshakes, TLS 1.3, ECDSA P-256 SVIDs, client certificates required; server on core 0, ${CONCURRENCY} clients on core 1, ${DURATION_S} s each`);
  const rows = [];
  for (const resume of [false, true]) {
    for (const kind of ['node', 'openssl'] as const) {
      const r = await run(kind, resume);
      rows.push(`| ${kind === 'node' ? 'Weft (Node tls)' : 'openssl s_server'} | ${resume ? 'resumed (session tickets)' : 'full'} | ${Math.round(r.rate)} | ${(r.serverCpuMs / r.handshakes).toFixed(3)} | ${Math.round(r.perCore)} | ${r.resumed} of ${r.handshakes} |`);
    }
  }
  console.log(['', '| server | handshake | per second | server CPU ms each | per second per core | resumed |', '|---|---|---:|---:|---:|---:|', ...rows].join('\n'));
}

main().catch((err: Error) => {
  console.error(`bench:tls failed: ${err.message}`);
  process.exit(1);
});
