/**
 * Mutual TLS handshake rate per core — `npm run bench:tls`.
 *
 * 1. The crypto ceiling on this CPU: `openssl speed ecdsap256 ecdhp256 ecdhx25519` and the same
 *    operations through node:crypto, both pinned to core 0, and from them the least CPU a server
 *    spends on one mutual TLS 1.3 handshake with ECDSA P-256 certificates (ECDHE key generation and
 *    derivation, one ECDSA signature for its CertificateVerify, two ECDSA verifications: the
 *    client's CertificateVerify and the signature on the client's certificate).
 * 2. Handshakes: a server pinned alone to core 0, ECDSA P-256 X.509-SVIDs, client certificates
 *    required; the clients (this process, 32 connections at a time, each connection new) pinned to
 *    core 1, for `--duration` seconds per row. "Per second per core" is handshakes ÷ the server's CPU
 *    seconds (/proc), so it does not depend on how fast the clients are. Rows: Weft's inbound
 *    shape (src/proxy/proxy.ts) with the TLS options Weft uses, then one option changed at a time,
 *    a TCP-only and a server-auth-only row (what the handshake's parts cost), `openssl s_server` with
 *    the same certificates and clients, and the resumed (session ticket) case.
 * Goal (issue 4): ≥ 2,000 full ECDSA handshakes per second per core.
 *
 *   npm run bench:tls                         # every row, 5 s each (~1.5 minutes)
 *   npm run bench:tls -- --duration 3 --only weft,openssl
 *   BENCH_TLS_PROF=/tmp/prof npm run bench:tls -- --only weft    # --cpu-prof of the Node server
 *   BENCH_TLS_PERF=/tmp/perf npm run bench:tls -- --only weft    # perf record -g of the server
 * Writes bench/results/tls-handshakes-<stamp>.md and .json (`--out DIR` or BENCH_OUT elsewhere).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { constants, X509Certificate, diffieHellman, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect, createSecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { createCsr, createRootCertificate, generateKey, issueLeafCertificate, keyToPem, readCsr } from '../src/core/identity/x509.js';
import { freePort } from './lib/ports.js';
import { coreBusyPercent, coreTimes, cpuMs, processTree } from './lib/proc.js';
import type { HandshakeServerConfig } from './tls-handshake-server.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const REPO_ROOT = path.resolve(HERE, '..', '..');
const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag);
  return i === -1 ? undefined : process.argv[i + 1];
};
const DURATION_S = Number(argValue('--duration') ?? 5);
const ONLY = argValue('--only')?.split(',').map((s) => s.trim()) ?? null;
const CONCURRENCY = 32;
const SERVER_CORE = '0';
const CLIENT_CORE = '1';

// ---------------------------------------------------------------------------------------------
// 1. The crypto ceiling

interface CryptoRates {
  /** Operations per second. */
  ecdsaSign: number;
  ecdsaVerify: number;
  p256Keygen: number;
  p256Derive: number;
  x25519Keygen: number;
  x25519Derive: number;
}

/** Runs in a child pinned to the server core: node:crypto's rates for the handshake's operations. */
function nodeCryptoRates(): CryptoRates {
  const rate = (fn: () => unknown): number => {
    for (let i = 0; i < 200; i++) fn();
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < 700) {
      for (let i = 0; i < 50; i++) fn();
      n += 50;
    }
    return n / ((performance.now() - t0) / 1000);
  };
  const p = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const peerP = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const x = generateKeyPairSync('x25519');
  const peerX = generateKeyPairSync('x25519');
  const data = randomBytes(130); // a CertificateVerify's signed content is 64 + 34 + 32 bytes
  const sig = sign('sha256', data, p.privateKey);
  return {
    ecdsaSign: rate(() => sign('sha256', data, p.privateKey)),
    ecdsaVerify: rate(() => verify('sha256', data, p.publicKey, sig)),
    p256Keygen: rate(() => generateKeyPairSync('ec', { namedCurve: 'P-256' })),
    p256Derive: rate(() => diffieHellman({ privateKey: p.privateKey, publicKey: peerP.publicKey })),
    x25519Keygen: rate(() => generateKeyPairSync('x25519')),
    x25519Derive: rate(() => diffieHellman({ privateKey: x.privateKey, publicKey: peerX.publicKey })),
  };
}

/** `openssl speed` on the server core; keygen is not measured by it: taken as one sign (P-256) or one derive (X25519), both upper bounds. */
function opensslCryptoRates(): CryptoRates | null {
  const r = spawnSync('taskset', ['-c', SERVER_CORE, 'openssl', 'speed', '-seconds', '1', 'ecdsap256', 'ecdhp256', 'ecdhx25519'], { encoding: 'utf8', timeout: 60_000 });
  const out = `${r.stdout ?? ''}`;
  const ecdsa = /ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(out);
  const p256 = /ecdh \(nistp256\)\s+\S+\s+([\d.]+)/.exec(out);
  const x = /ecdh \(X25519\)\s+\S+\s+([\d.]+)/.exec(out);
  if (!ecdsa || !p256 || !x) return null;
  return {
    ecdsaSign: Number(ecdsa[1]),
    ecdsaVerify: Number(ecdsa[2]),
    p256Keygen: Number(ecdsa[1]),
    p256Derive: Number(p256[1]),
    x25519Keygen: Number(x[1]),
    x25519Derive: Number(x[1]),
  };
}

/** Microseconds of crypto a server spends at least on one mutual handshake. */
function serverCryptoUs(r: CryptoRates, kx: 'X25519' | 'P-256'): number {
  const us = (perSec: number): number => 1e6 / perSec;
  const ecdhe = kx === 'X25519' ? us(r.x25519Keygen) + us(r.x25519Derive) : us(r.p256Keygen) + us(r.p256Derive);
  return ecdhe + us(r.ecdsaSign) + 2 * us(r.ecdsaVerify);
}

// ---------------------------------------------------------------------------------------------
// 2. Handshakes

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

interface Pki {
  rootPem: string;
  server: { key: string; cert: string };
  client: { key: string; cert: string };
}

function makePki(): Pki {
  const rootKey = generateKey();
  const now = Date.now();
  const rootPem = createRootCertificate({ key: rootKey, trustDomain: 'cluster.local', commonName: 'bench root', notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
  const root = new X509Certificate(rootPem);
  const svid = (sa: string): { key: string; cert: string } => {
    const key = generateKey();
    const leaf = issueLeafCertificate({ publicKey: readCsr(createCsr(key, null)).publicKey, spiffeId: `spiffe://cluster.local/ns/default/sa/${sa}`, issuerCert: root, issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
    return { key: keyToPem(key), cert: leaf.pem };
  };
  return { rootPem, server: svid('server'), client: svid('client') };
}

interface Variant {
  id: string;
  server: 'node' | 'openssl';
  label: string;
  shape?: HandshakeServerConfig['shape'];
  readPeer?: HandshakeServerConfig['readPeer'];
  /** Options of the Node server's tls.Server. */
  tls?: TlsOptions;
  /** Options of the clients' SecureContext (e.g. the same key-exchange group). */
  client?: SecureContextOptions;
  opensslArgs?: string[];
  /** Flags of the Node server process. */
  nodeFlags?: string[];
  resume: boolean;
}

const VARIANTS: Variant[] = [
  { id: 'weft', server: 'node', shape: 'weft', resume: false, label: "Weft's inbound as it is (defaults: X25519 key exchange, 2 TLS 1.3 tickets sent)" },
  { id: 'peer-legacy', server: 'node', shape: 'weft', readPeer: 'legacy', resume: false, label: "Weft's inbound, SPIFFE ID from getPeerCertificate().subjectaltname instead of getPeerX509Certificate()" },
  { id: 'no-peer-read', server: 'node', shape: 'weft', readPeer: 'none', resume: false, label: "Weft's inbound without getPeerX509Certificate() (the SPIFFE ID not read)" },
  { id: 'no-handoff', server: 'node', shape: 'weft-direct', resume: false, label: "Weft's tls.Server and checks listening itself: no first-byte sniff, no emit('connection') hand-off" },
  { id: 'tls', server: 'node', shape: 'tls', resume: false, label: 'bare tls.createServer, rejectUnauthorized: true' },
  { id: 'p256', server: 'node', shape: 'weft', resume: false, tls: { ecdhCurve: 'P-256' }, client: { ecdhCurve: 'P-256' }, label: "Weft's inbound, ecdhCurve: 'P-256' (both sides)" },
  { id: 'x25519', server: 'node', shape: 'weft', resume: false, tls: { ecdhCurve: 'X25519' }, client: { ecdhCurve: 'X25519' }, label: "Weft's inbound, ecdhCurve: 'X25519' (both sides, explicit)" },
  { id: 'noticket', server: 'node', shape: 'weft', resume: false, tls: { secureOptions: constants.SSL_OP_NO_TICKET }, label: "Weft's inbound, secureOptions: SSL_OP_NO_TICKET (stateful tickets)" },
  {
    id: 'suites',
    server: 'node',
    shape: 'weft',
    resume: false,
    tls: { sigalgs: 'ecdsa_secp256r1_sha256', ciphers: 'TLS_AES_128_GCM_SHA256', honorCipherOrder: true },
    label: "Weft's inbound, sigalgs ecdsa_secp256r1_sha256, TLS_AES_128_GCM_SHA256, honorCipherOrder",
  },
  { id: 'semi-space', server: 'node', shape: 'weft', resume: false, nodeFlags: ['--max-semi-space-size=64'], label: "Weft's inbound, node --max-semi-space-size=64 (fewer scavenges)" },
  { id: 'server-auth', server: 'node', shape: 'weft', resume: false, tls: { requestCert: false }, label: 'Weft\'s inbound without client certificates (server auth only: not mTLS, for the breakdown)' },
  { id: 'tcp', server: 'node', shape: 'tcp', resume: false, label: 'no TLS: Node accepts, writes 1 byte, closes (the floor)' },
  { id: 'openssl', server: 'openssl', resume: false, opensslArgs: ['-no_ticket'], label: 'openssl s_server -no_ticket (one connection at a time)' },
  { id: 'openssl-p256', server: 'openssl', resume: false, opensslArgs: ['-no_ticket', '-groups', 'P-256'], client: { ecdhCurve: 'P-256' }, label: 'openssl s_server -no_ticket -groups P-256' },
  { id: 'weft-resumed', server: 'node', shape: 'weft', resume: true, label: "Weft's inbound, resumed (session tickets)" },
  { id: 'noticket-resumed', server: 'node', shape: 'weft', resume: true, tls: { secureOptions: constants.SSL_OP_NO_TICKET }, label: "Weft's inbound with SSL_OP_NO_TICKET, clients offering their last session" },
  { id: 'openssl-resumed', server: 'openssl', resume: true, label: 'openssl s_server, resumed (session tickets)' },
];

interface RowResult {
  id: string;
  label: string;
  resume: boolean;
  handshakes: number;
  resumed: number;
  ratePerSec: number;
  serverCpuMs: number;
  serverCpuMsEach: number;
  perSecPerCore: number;
  serverCoreBusyPct: number;
  clientCpuMsEach: number;
  keyExchange: string;
}

async function runVariant(v: Variant, pki: Pki, tmp: string): Promise<RowResult> {
  const prof = process.env.BENCH_TLS_PROF;
  const perfDir = process.env.BENCH_TLS_PERF;
  const wrap = (argv: string[]): string[] => ['-c', SERVER_CORE, ...(perfDir ? ['perf', 'record', '-F', '999', '-g', '-o', path.join(perfDir, `${v.id}.data`), '--'] : []), ...argv];
  let child: ChildProcess;
  let port: number;
  if (v.server === 'node') {
    const nodeArgs = [...(v.nodeFlags ?? []), ...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof, '--cpu-prof-name', `${v.id}.cpuprofile`] : []), ...(perfDir ? ['--perf-basic-prof'] : [])];
    child = spawn('taskset', wrap([process.execPath, ...nodeArgs, path.join(HERE, 'tls-handshake-server.js')]), { stdio: ['pipe', 'pipe', 'inherit'] });
    const cfg: HandshakeServerConfig = { shape: v.shape ?? 'weft', ...(v.readPeer ? { readPeer: v.readPeer } : {}), ...pki.server, ca: [pki.rootPem], ...(v.tls ? { tls: v.tls } : {}) };
    child.stdin!.end(JSON.stringify(cfg));
    port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (c: Buffer) => resolve((JSON.parse(c.toString()) as { port: number }).port));
      child.once('exit', (code) => reject(new Error(`server exited (${code})`)));
    });
  } else {
    const f = (name: string, text: string): string => {
      writeFileSync(path.join(tmp, name), text);
      return path.join(tmp, name);
    };
    port = await freePort();
    const args = ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', f('s.pem', pki.server.cert), '-key', f('s.key', pki.server.key), '-CAfile', f('r.pem', pki.rootPem), '-Verify', '1', '-tls1_3', '-quiet', '-naccept', '1000000', ...(v.opensslArgs ?? [])];
    child = spawn('taskset', wrap(['openssl', ...args]), { stdio: ['pipe', 'ignore', 'ignore'] });
    await waitForPort(port);
  }
  const serverPids = (): number[] => processTree([child.pid!]);

  const clientContext = createSecureContext({ ...pki.client, ca: [pki.rootPem], minVersion: 'TLSv1.3', ...v.client });
  let session: Buffer | undefined;
  let handshakes = 0;
  let resumed = 0;
  let keyExchange = '';
  const oneTls = (): Promise<void> =>
    new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port, secureContext: clientContext, session: v.resume ? session : undefined, checkServerIdentity: () => undefined });
      // A full handshake is done at secureConnect; a resumable one once its ticket arrived.
      s.on('session', (t: Buffer) => {
        session = t;
        if (v.resume) s.end();
      });
      s.once('secureConnect', () => {
        handshakes++;
        if (keyExchange === '') keyExchange = (s.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? '?';
        if (s.isSessionReused()) resumed++;
        if (!v.resume || s.isSessionReused()) s.end();
      });
      s.on('error', () => {});
      s.resume(); // read (and drop) whatever the server sends, so the stream can end
      s.on('close', () => resolve());
    });
  const oneTcp = (): Promise<void> =>
    new Promise((resolve) => {
      const s = tcpConnect({ host: '127.0.0.1', port, noDelay: true }, () => {
        handshakes++;
      });
      s.on('error', () => {});
      s.resume();
      s.on('end', () => s.end());
      s.on('close', () => resolve());
    });
  const one = v.shape === 'tcp' ? oneTcp : oneTls;
  // Warm up, then measure.
  for (let i = 0; i < 50; i++) await one();
  handshakes = 0;
  resumed = 0;
  const pids = serverPids();
  const cpu0 = cpuMs(pids);
  const cores0 = coreTimes();
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + DURATION_S * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const serverCpuMs = cpuMs(pids) - cpu0;
  const client = process.cpuUsage(client0);
  const busy = coreBusyPercent(cores0, coreTimes(), Number(SERVER_CORE));
  // SIGINT lets a profiled Node server write its profile (and perf finish its file).
  if (prof || perfDir) {
    for (const pid of pids.reverse()) {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        /* gone */
      }
    }
    await new Promise((r) => child.once('exit', r));
  } else child.kill('SIGKILL');
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  return {
    id: v.id,
    label: v.label,
    resume: v.resume,
    handshakes,
    resumed,
    ratePerSec: handshakes / elapsed,
    serverCpuMs,
    serverCpuMsEach: serverCpuMs / handshakes,
    perSecPerCore: handshakes / (serverCpuMs / 1000),
    serverCoreBusyPct: busy,
    clientCpuMsEach: (client.user + client.system) / 1000 / handshakes,
    keyExchange: v.shape === 'tcp' ? '—' : keyExchange,
  };
}

function stamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

async function main(): Promise<void> {
  if (process.argv.includes('--crypto-child')) {
    process.stdout.write(JSON.stringify(nodeCryptoRates()));
    return;
  }
  // The clients run here: keep this process (all its threads) on the client core.
  spawnSync('taskset', ['-a', '-p', '-c', CLIENT_CORE, String(process.pid)], { stdio: 'ignore' });
  const started = new Date();
  const load0 = os.loadavg()[0] ?? 0;
  const variants = ONLY ? VARIANTS.filter((v) => ONLY.includes(v.id)) : VARIANTS;
  if (ONLY && variants.length !== ONLY.length) throw new Error(`unknown row; rows: ${VARIANTS.map((v) => v.id).join(', ')}`);
  if (process.env.BENCH_TLS_PROF) mkdirSync(process.env.BENCH_TLS_PROF, { recursive: true });
  if (process.env.BENCH_TLS_PERF) mkdirSync(process.env.BENCH_TLS_PERF, { recursive: true });
  const log = (line: string): void => void process.stderr.write(`[bench:tls] ${line}\n`);

  log('crypto ceiling (openssl speed, node:crypto) on core 0');
  const ossl = opensslCryptoRates();
  const nodeRun = spawnSync('taskset', ['-c', SERVER_CORE, process.execPath, fileURLToPath(import.meta.url), '--crypto-child'], { encoding: 'utf8', timeout: 60_000 });
  const nodeRates = JSON.parse(nodeRun.stdout) as CryptoRates;

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-tls-'));
  const results: RowResult[] = [];
  try {
    const pki = makePki();
    for (const v of variants) {
      log(`${v.id}: ${v.label}`);
      const r = await runVariant(v, pki, tmp);
      log(`${v.id}: ${Math.round(r.ratePerSec)}/s, ${r.serverCpuMsEach.toFixed(3)} ms server CPU each → ${Math.round(r.perSecPerCore)}/s/core`);
      results.push(r);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const load1 = os.loadavg()[0] ?? 0;

  const us = (perSec: number): string => (1e6 / perSec).toFixed(1);
  const cryptoRow = (name: string, r: CryptoRates | null): string =>
    r === null
      ? `| ${name} | — | — | — | — | — | — | — | — |`
      : `| ${name} | ${us(r.ecdsaSign)} | ${us(r.ecdsaVerify)} | ${us(r.p256Keygen)} | ${us(r.p256Derive)} | ${us(r.x25519Keygen)} | ${us(r.x25519Derive)} | ${serverCryptoUs(r, 'X25519').toFixed(0)} µs → ${Math.round(1e6 / serverCryptoUs(r, 'X25519'))}/s | ${serverCryptoUs(r, 'P-256').toFixed(0)} µs → ${Math.round(1e6 / serverCryptoUs(r, 'P-256'))}/s |`;
  const full = results.find((r) => r.id === 'weft');
  const table = [
    '| row | server | handshakes/s | key exchange | server CPU ms each | **per second per core** | vs `weft` | server core busy % | client CPU ms each | resumed |',
    '|---|---|---:|---|---:|---:|---:|---:|---:|---:|',
    ...results.map(
      (r) =>
        `| ${r.id} | ${r.label} | ${Math.round(r.ratePerSec)} | ${r.keyExchange} | ${r.serverCpuMsEach.toFixed(3)} | **${Math.round(r.perSecPerCore)}** | ${full && !r.resume ? `${(r.perSecPerCore / full.perSecPerCore).toFixed(2)}×` : '—'} | ${r.serverCoreBusyPct.toFixed(0)} | ${r.clientCpuMsEach.toFixed(3)} | ${r.resumed} of ${r.handshakes} |`,
    ),
  ].join('\n');
  const md = `# mTLS handshakes — ${started.toISOString()}

- Command: \`npm run bench:tls${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`
- Machine: ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'}, ${os.type()} ${os.release()}; load average ${load0.toFixed(2)} at start, ${load1.toFixed(2)} at the end
- Node ${process.version}, its OpenSSL ${process.versions.openssl}; system OpenSSL: ${spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout.trim()}
- Server pinned to core ${SERVER_CORE}; the clients (one Node process, ${CONCURRENCY} connections at a time, each new) on core ${CLIENT_CORE}; ${DURATION_S} s per row. TLS 1.3, ECDSA P-256 X.509-SVIDs, client certificates required (except \`server-auth\`, \`tcp\`).

## Crypto ceiling (core ${SERVER_CORE}), µs per operation

| source | ECDSA P-256 sign | verify | P-256 keygen | P-256 derive | X25519 keygen | X25519 derive | server's least crypto per mutual handshake, X25519 | the same, P-256 ECDHE |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
${cryptoRow('openssl speed (system OpenSSL)', ossl)}
${cryptoRow('node:crypto (KeyObjects)', nodeRates)}

The least crypto = ECDHE keygen + derive + 1 ECDSA sign (CertificateVerify) + 2 ECDSA verify (the client's CertificateVerify, its certificate's signature). \`openssl speed\` does not time keygen: taken as one sign (P-256) or one derive (X25519), upper bounds.

## Handshakes

${table}
`;
  process.stdout.write(`\n${md}`);
  const outDir = path.resolve(argValue('--out') ?? process.env.BENCH_OUT ?? path.join(REPO_ROOT, 'bench', 'results'));
  mkdirSync(outDir, { recursive: true });
  const base = path.join(outDir, `tls-handshakes-${stamp(started)}`);
  writeFileSync(`${base}.md`, md);
  writeFileSync(`${base}.json`, `${JSON.stringify({ date: started.toISOString(), argv: process.argv.slice(2), loadAverage: [load0, load1], node: process.version, openssl: process.versions.openssl, crypto: { openssl: ossl, node: nodeRates }, rows: results }, null, 2)}\n`);
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), base)}.md and .json\n`);
}

main().catch((err: Error) => {
  console.error(`bench:tls failed: ${err.message}`);
  process.exit(1);
});
