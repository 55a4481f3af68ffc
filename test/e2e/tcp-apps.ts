// Shared pieces of the TCP e2e tests: apps that count the connections they accept, a bounded TCP
// exchange, and certificates from a control plane's own root for hand-made mTLS callers.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createCsr, generateKey, issueLeafCertificate, keyToPem, readCsr } from '../../src/core/identity/x509.js';
import type { RunningControl } from './harness.js';

/** The SPIFFE ID of service account `sa` in the default namespace. */
export const ID = (sa: string): string => `spiffe://cluster.local/ns/default/sa/${sa}`;

/** The value of one counter series (0 when absent). */
export function counter(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** A TCP app that counts the connections it accepts: `echo`, `report` (the byte count once the caller half-closes), or `rst` (resets on the first byte). */
export async function startTcpApp(kind: 'echo' | 'report' | 'rst'): Promise<{ port: number; accepts: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    app.accepts++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (kind === 'echo') return void s.pipe(s);
    if (kind === 'rst') return void s.once('data', () => s.resetAndDestroy());
    let n = 0;
    s.on('data', (c: Buffer) => (n += c.length));
    s.on('end', () => s.end(`got ${n} bytes`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const app = {
    port: (server.address() as AddressInfo).port,
    accepts: 0,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  return app;
}

export interface TcpResult {
  data: Buffer;
  ended: boolean;
  error: string | null;
  timedOut: boolean;
}

/** Connects, sends `payload`, half-closes (unless `keepOpen`), and collects everything until the connection closes (at most `ms`). */
export function tcpExchange(port: number, payload: Buffer | string, ms = 5000, keepOpen = false): Promise<TcpResult> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const parts: Buffer[] = [];
    let ended = false;
    let error: string | null = null;
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data: Buffer.concat(parts), ended, error, timedOut: true });
    }, ms);
    s.on('connect', () => (keepOpen ? s.write(payload) : s.end(payload)));
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => (ended = true));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(parts), ended, error, timedOut: false });
    });
  });
}

/** A certificate for `sa` from the control plane's own root, for a hand-made mTLS caller. */
export function issue(cp: RunningControl, sa: string): { cert: string; key: string } {
  const caDir = join(cp.dataDir, 'ca');
  const key = generateKey();
  const now = Date.now();
  const leaf = issueLeafCertificate({
    publicKey: readCsr(createCsr(key, 'x')).publicKey,
    spiffeId: ID(sa),
    issuerCert: new X509Certificate(readFileSync(join(caDir, 'root-1.pem'), 'utf8')),
    issuerKey: createPrivateKey(readFileSync(join(caDir, 'root-1.key'), 'utf8')),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
  });
  return { cert: leaf.pem, key: keyToPem(key) };
}

/**
 * Through a tunnel to an `echo` app (`echoPort`) 4 MiB come back intact and the end is passed back;
 * to a `report` app (`reportPort`) the caller's half-close arrives, so it answers with the byte count.
 */
export async function assertRoundTrip(echoPort: number, reportPort: number): Promise<void> {
  const big = randomBytes(4 * 1024 * 1024);
  const r = await tcpExchange(echoPort, big, 20_000);
  assert.equal(r.error, null);
  assert.equal(r.ended, true);
  assert.equal(r.data.length, big.length);
  assert.ok(r.data.equals(big), '4 MiB came back intact');
  const h = await tcpExchange(reportPort, 'x'.repeat(100_000), 5000);
  assert.equal(h.data.toString(), 'got 100000 bytes');
  assert.equal(h.ended, true);
}
