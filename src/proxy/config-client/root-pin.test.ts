import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createServer } from 'node:tls';
import { spkiPin } from '../../core/identity/pin.js';
import { controlPlaneId, spiffeId } from '../../core/identity/spiffe.js';
import { createRootCertificate, generateKey, issueLeafCertificate, keyFromPem, keyToPem } from '../../core/identity/x509.js';
import { PinMismatchError, checkPinnedChain, isLoopbackHost, pinnedJoinTls, presentedChain } from './root-pin.js';

const HOUR = 3600_000;
const now = Date.now();

function root(name = 'Weft root 1', from = now - HOUR, to = now + 24 * HOUR): { cert: X509Certificate; key: KeyObject } {
  const key = generateKey();
  // Every root here has the same subject, so only signatures tell them apart (as a forger would arrange).
  return { key, cert: new X509Certificate(createRootCertificate({ key, trustDomain: 'cluster.local', commonName: name, notBefore: new Date(from), notAfter: new Date(to) })) };
}

function leaf(issuer: { cert: X509Certificate; key: KeyObject }, id = controlPlaneId('example.org'), from = now - HOUR, to = now + HOUR): { cert: X509Certificate; key: KeyObject } {
  const key = generateKey();
  const { pem } = issueLeafCertificate({ publicKey: createPublicKey(key), spiffeId: id, issuerCert: issuer.cert, issuerKey: issuer.key, notBefore: new Date(from), notAfter: new Date(to) });
  return { key, cert: new X509Certificate(pem) };
}

const mismatch = (fn: () => unknown, re: RegExp): void => assert.throws(fn, (err: Error) => err instanceof PinMismatchError && re.test(err.message), re.source);

test('a chain whose root matches a pin, with the control plane as leaf, is accepted', () => {
  const r = root();
  const other = root();
  const l = leaf(r);
  const got = checkPinnedChain([l.cert, r.cert], [spkiPin(other.cert), spkiPin(r.cert).toUpperCase().replace('SHA256', 'sha256')], null, now);
  assert.equal(got.pin, spkiPin(r.cert));
  assert.ok(got.anchor.raw.equals(r.cert.raw));
  assert.equal(got.trustDomain, 'example.org', 'the trust domain the control plane names');
  assert.equal(checkPinnedChain([l.cert, r.cert], [spkiPin(r.cert)], 'example.org', now).trustDomain, 'example.org');
});

test('a wrong pin is refused, naming the pin expected and the pins presented', () => {
  const r = root();
  const l = leaf(r);
  const wrong = `sha256:${'ab'.repeat(32)}`;
  mismatch(() => checkPinnedChain([l.cert, r.cert], [wrong], null, now), new RegExp(`matches --ca-cert-hash ${wrong}; its chain: ${spkiPin(l.cert)} \\(spiffe://example.org/ns/weft-system/sa/weft-control\\), ${spkiPin(r.cert)} \\(`));
  // The leaf's own key is no pin for the root: only CA certificates after the leaf count.
  mismatch(() => checkPinnedChain([l.cert, r.cert], [spkiPin(l.cert)], null, now), /no CA certificate the server presented matches/);
  mismatch(() => checkPinnedChain([], [spkiPin(r.cert)], null, now), /presented no certificate/);
});

test('a pinned root in the chain that the leaf does not chain to is refused', () => {
  const genuine = root();
  const forger = root(); // same subject name as the genuine root, another key
  const forged = leaf(forger);
  assert.equal(forged.cert.issuer, genuine.cert.subject, 'the forged leaf names the genuine root as its issuer');
  mismatch(() => checkPinnedChain([forged.cert, genuine.cert], [spkiPin(genuine.cert)], null, now), new RegExp(`does not chain to the pinned ${spkiPin(genuine.cert)}`));
  // Nor with the forger's root presented in between: it is no pin, and the genuine root did not sign it.
  mismatch(() => checkPinnedChain([forged.cert, forger.cert, genuine.cert], [spkiPin(genuine.cert)], null, now), /does not chain to the pinned/);
});

test('through a presented intermediate to the pinned root; a pinned intermediate is refused (made with openssl)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-pin-'));
  try {
    const p = (n: string): string => join(dir, n);
    const openssl = (...args: string[]): void => {
      const r = spawnSync('openssl', args, { encoding: 'utf8' });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    };
    writeFileSync(p('ext.cnf'), '[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('root.key'), '-out', p('root.pem'), '-subj', '/O=Corp/CN=Corp Root', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('int.key'), '-out', p('int.csr'), '-subj', '/O=Corp/CN=Mesh Intermediate');
    openssl('x509', '-req', '-in', p('int.csr'), '-CA', p('root.pem'), '-CAkey', p('root.key'), '-CAcreateserial', '-out', p('int.pem'), '-days', '1', '-extfile', p('ext.cnf'), '-extensions', 'v3_ca');
    const rootCert = new X509Certificate(readFileSync(p('root.pem')));
    const intermediate = { cert: new X509Certificate(readFileSync(p('int.pem'))), key: keyFromPem(readFileSync(p('int.key'), 'utf8')) };
    const l = leaf(intermediate);
    // openssl's certificates start at the second they were made, after this file's `now`.
    const later = Date.now();
    assert.equal(checkPinnedChain([l.cert, intermediate.cert, rootCert], [spkiPin(rootCert)], null, later).pin, spkiPin(rootCert));
    mismatch(() => checkPinnedChain([l.cert, intermediate.cert, rootCert], [spkiPin(intermediate.cert)], null, later), /CN=Mesh Intermediate\) is not a root \(not self-signed\): pin the root/);
    // Without the intermediate the leaf does not reach the root.
    mismatch(() => checkPinnedChain([l.cert, rootCert], [spkiPin(rootCert)], null, later), /does not chain to the pinned/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a leaf that is not the control plane is refused, whatever its chain', () => {
  const r = root();
  const pin = [spkiPin(r.cert)];
  mismatch(() => checkPinnedChain([leaf(r, spiffeId('example.org', 'default', 'web')).cert, r.cert], pin, null, now), /certificate is spiffe:\/\/example.org\/ns\/default\/sa\/web, not the control plane's spiffe:\/\/<trust-domain>\/ns\/weft-system\/sa\/weft-control/);
  mismatch(() => checkPinnedChain([leaf(r).cert, r.cert], pin, 'other.org', now), /certificate is spiffe:\/\/example.org\/ns\/weft-system\/sa\/weft-control, not the control plane's spiffe:\/\/other.org\/ns\/weft-system\/sa\/weft-control/);
});

test('an expired leaf, a leaf not yet valid and an expired pinned root are refused', () => {
  const r = root();
  const pin = [spkiPin(r.cert)];
  mismatch(() => checkPinnedChain([leaf(r, undefined, now - 2 * HOUR, now - HOUR).cert, r.cert], pin, null, now), /the server's certificate sha256:[0-9a-f]{64} \(spiffe:[^)]+\) expired at /);
  mismatch(() => checkPinnedChain([leaf(r, undefined, now + HOUR, now + 2 * HOUR).cert, r.cert], pin, null, now), /is not valid before /);
  const old = root('Weft root 1', now - 3 * HOUR, now - HOUR);
  mismatch(() => checkPinnedChain([leaf(old).cert, old.cert], [spkiPin(old.cert)], null, now), /pinned root sha256:[0-9a-f]{64} \(.*\) expired at /);
  // The same chain was fine while it was valid.
  assert.equal(checkPinnedChain([leaf(old, undefined, now - 3 * HOUR, now - 2 * HOUR).cert, old.cert], [spkiPin(old.cert)], null, now - 2.5 * HOUR).pin, spkiPin(old.cert));
});

test('over a real TLS 1.3 handshake: the presented chain is read, then the join trusts only the pinned root', async () => {
  const r = root();
  const l = leaf(r);
  let bytes = 0;
  const server = createServer({ key: keyToPem(l.key), cert: l.cert.toString() + r.cert.toString(), minVersion: 'TLSv1.3' }, (s) => {
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const chain = await presentedChain('127.0.0.1', port, undefined, 2000);
    assert.deepEqual(chain.map((c) => spkiPin(c)), [spkiPin(l.cert), spkiPin(r.cert)]);
    const url = new URL(`https://127.0.0.1:${port}/api/v1/stream`);
    const { tls, anchor } = await pinnedJoinTls(url, [spkiPin(r.cert)], null, 2000);
    assert.equal(tls.ca, r.cert.toString());
    assert.equal(tls.cert, undefined, 'no client certificate on the join');
    assert.equal(anchor.trustDomain, 'example.org');
    assert.equal(tls.checkServerIdentity!('127.0.0.1', { subjectaltname: `URI:${controlPlaneId('example.org')}` } as never), undefined);
    assert.match(String(tls.checkServerIdentity!('127.0.0.1', { subjectaltname: `URI:${controlPlaneId('other.org')}` } as never)), /expected spiffe:\/\/example.org/);
    await assert.rejects(pinnedJoinTls(url, [`sha256:${'00'.repeat(32)}`], null, 2000), PinMismatchError);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(bytes, 0, 'the checks send no application byte');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test('loopback hosts', () => {
  for (const u of ['http://127.0.0.1:1', 'http://localhost:1', 'http://[::1]:1', 'http://127.1.2.3']) assert.equal(isLoopbackHost(new URL(u)), true, u);
  for (const u of ['http://10.0.0.1:1', 'http://cp.example:1', 'http://[::2]:1']) assert.equal(isLoopbackHost(new URL(u)), false, u);
});
