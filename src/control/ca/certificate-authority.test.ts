import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { unpem } from '../../core/identity/der.js';
import { spkiPin } from '../../core/identity/pin.js';
import { createCsr, generateKey } from '../../core/identity/x509.js';
import { CertificateAuthority } from './certificate-authority.js';
import { ControlPlaneCertificate } from './control-plane-certificate.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-ca-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const openssl = (...args: string[]): { code: number; out: string } => {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
};
const HOUR = 3600_000;
const csr = (id: string | null = null): string => createCsr(generateKey(), id);

test('a generated root: key 0600, kept across restarts, issues leaves openssl verifies', () => {
  const caDir = join(dir, 'own');
  const ca = new CertificateAuthority({ dir: caDir, trustDomain: 'cluster.local' });
  assert.equal(statSync(join(caDir, 'root-1.key')).mode & 0o777, 0o600);
  const again = new CertificateAuthority({ dir: caDir, trustDomain: 'cluster.local' });
  assert.deepEqual(again.bundle(), ca.bundle(), 'the same root after a restart');
  const { chain, cert } = again.issue(csr(), 'example.org', 'shop', 'web', HOUR);
  assert.equal(cert.identity, 'spiffe://example.org/ns/shop/sa/web');
  writeFileSync(join(dir, 'leaf.pem'), chain);
  const v = openssl('verify', '-CAfile', join(caDir, 'root-1.pem'), join(dir, 'leaf.pem'));
  assert.equal(v.code, 0, v.out);
  const leaf = new X509Certificate(chain);
  assert.ok(Math.abs(Date.parse(leaf.validTo) - (Date.now() + HOUR)) < 2000, 'the lifetime asked for');
  assert.throws(() => ca.issue(csr('spiffe://example.org/ns/shop/sa/admin'), 'example.org', 'shop', 'web', HOUR), /csr asks for spiffe:\/\/example.org\/ns\/shop\/sa\/admin, but the identity granted is spiffe:\/\/example.org\/ns\/shop\/sa\/web/);
});

test('a root rotates in three steps: added to the bundle, signing, old one retired', () => {
  const ca = new CertificateAuthority({ dir: join(dir, 'rotating'), trustDomain: 'cluster.local' });
  const first = ca.signingRoot();
  assert.equal(ca.rotationPhase(), null);
  assert.equal(ca.rotateStep(), 'added');
  assert.equal(ca.bundle().length, 2);
  assert.equal(ca.rotationPhase(), 'added');
  assert.ok(new X509Certificate(ca.issue(csr(), 'cluster.local', 'a', 'b', HOUR).chain).checkIssued(first), 'the old root still signs until the switch');
  assert.equal(ca.rotateStep(), 'switched');
  assert.equal(ca.rotationPhase(), 'switched');
  const second = ca.signingRoot();
  assert.notEqual(second.serialNumber, first.serialNumber);
  assert.ok(new X509Certificate(ca.issue(csr(), 'cluster.local', 'a', 'b', HOUR).chain).checkIssued(second));
  assert.equal(ca.rotateStep(), 'retired');
  assert.deepEqual(ca.bundle().map((p) => new X509Certificate(p).serialNumber), [second.serialNumber]);
  assert.equal(ca.rotationPhase(), null);
  const reopened = new CertificateAuthority({ dir: join(dir, 'rotating'), trustDomain: 'cluster.local' });
  assert.equal(reopened.signingRoot().serialNumber, second.serialNumber, 'the rotation survives a restart');
});

test('a user-provided intermediate (made with openssl) signs; leaves chain through it to the given root', () => {
  const p = (n: string): string => join(dir, n);
  writeFileSync(p('ext.cnf'), '[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  assert.equal(openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('root.key'), '-out', p('root.pem'), '-subj', '/O=Corp/CN=Corp Root', '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign').code, 0);
  assert.equal(openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('int.key'), '-out', p('int.csr'), '-subj', '/O=Corp/CN=Mesh Intermediate').code, 0);
  const signed = openssl('x509', '-req', '-in', p('int.csr'), '-CA', p('root.pem'), '-CAkey', p('root.key'), '-CAcreateserial', '-out', p('int.pem'), '-days', '10', '-extfile', p('ext.cnf'), '-extensions', 'v3_ca');
  assert.equal(signed.code, 0, signed.out);
  assert.throws(() => new CertificateAuthority({ dir: join(dir, 'p1'), trustDomain: 'cluster.local', provided: { certFile: p('int.pem'), keyFile: p('int.key'), bundleFile: null } }), /is an intermediate: give the roots it chains to as the bundle/);
  assert.throws(() => new CertificateAuthority({ dir: join(dir, 'p2'), trustDomain: 'cluster.local', provided: { certFile: p('int.pem'), keyFile: p('root.key'), bundleFile: p('root.pem') } }), /the key does not belong to/);
  const ca = new CertificateAuthority({ dir: join(dir, 'p3'), trustDomain: 'cluster.local', provided: { certFile: p('int.pem'), keyFile: p('int.key'), bundleFile: p('root.pem') } });
  const { chain } = ca.issue(csr(), 'cluster.local', 'default', 'web', HOUR);
  assert.equal((chain.match(/BEGIN CERTIFICATE/g) ?? []).length, 2, 'leaf then intermediate');
  writeFileSync(p('chain.pem'), chain);
  const v = openssl('verify', '-CAfile', p('root.pem'), '-untrusted', p('chain.pem'), p('chain.pem'));
  assert.equal(v.code, 0, v.out);
  assert.equal(new X509Certificate(ca.bundle()[0]!).subject, 'O=Corp\nCN=Corp Root');
  assert.throws(() => ca.rotateStep(), /provided by the user/);
  assert.ok(readFileSync(p('int.pem'), 'utf8').length > 0);
});

test('pins: the presented root first, the next one during a rotation; the control plane presents its root', () => {
  const ca = new CertificateAuthority({ dir: join(dir, 'pins'), trustDomain: 'cluster.local' });
  const pin = (c: X509Certificate): string => spkiPin(c);
  const first = ca.signingRoot();
  assert.deepEqual(ca.pins().map((p) => [p.pin, p.role]), [[pin(first), 'presented']]);
  assert.match(ca.pins()[0]!.pin, /^sha256:[0-9a-f]{64}$/);
  // The pin is what openssl computes from the root's public key (the command docs/identity.md gives).
  const sh = spawnSync('sh', ['-c', `openssl x509 -in '${join(dir, 'pins', 'root-1.pem')}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex`], { encoding: 'utf8' });
  assert.equal(sh.status, 0, sh.stderr);
  assert.equal(`sha256:${sh.stdout.trim().split(/\s+/).pop()}`, pin(first));
  const served = (): X509Certificate[] => unpem(new ControlPlaneCertificate(ca, () => 'example.org', () => HOUR).options().cert, 'CERTIFICATE').map((d) => new X509Certificate(d));
  const chain = served();
  assert.equal(chain.length, 2, 'leaf, then the root it chains to');
  assert.ok(chain[1]!.raw.equals(first.raw) && chain[0]!.verify(first.publicKey));
  ca.rotateStep(); // added
  const roles = ca.pins();
  assert.deepEqual(roles.map((p) => p.role), ['presented', 'next']);
  assert.equal(roles[0]!.pin, pin(first));
  ca.rotateStep(); // switched
  const second = ca.signingRoot();
  assert.deepEqual(ca.pins().map((p) => [p.pin, p.role]), [[pin(second), 'presented'], [pin(first), 'previous']]);
  assert.ok(served()[1]!.raw.equals(second.raw), 'after the switch the new root is presented');
  ca.rotateStep(); // retired
  assert.deepEqual(ca.pins().map((p) => [p.pin, p.role]), [[pin(second), 'presented']]);
});
