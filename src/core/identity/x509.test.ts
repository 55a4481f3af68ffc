import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { spiffeId } from './spiffe.js';
import { CertificateError, createCsr, createRootCertificate, generateKey, issueLeafCertificate, readCsr, uriSans } from './x509.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-x509-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const openssl = (...args: string[]): { code: number; out: string } => {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
};

const HOUR = 3600_000;
const now = Date.now();
const rootKey = generateKey();
const rootPem = createRootCertificate({ key: rootKey, trustDomain: 'example.org', commonName: 'Weft root 1', notBefore: new Date(now - HOUR), notAfter: new Date(now + 24 * HOUR) });
const root = new X509Certificate(rootPem);
const id = spiffeId('example.org', 'shop', 'reviews');

describe('X.509-SVIDs, checked by openssl', () => {
  const leafKey = generateKey();
  const csr = createCsr(leafKey, id);
  const req = readCsr(csr);
  const leaf = issueLeafCertificate({ publicKey: req.publicKey, spiffeId: id, issuerCert: root, issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + HOUR) });

  test('the CSR verifies with openssl, carries the SPIFFE ID, and reads back with its key', () => {
    const r = openssl('req', '-in', file('leaf.csr', csr), '-noout', '-verify', '-text');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /verify OK|Certificate request self-signature verify OK/);
    assert.match(r.out, new RegExp(`URI:${id.replace(/\//g, '\\/')}`));
    assert.deepEqual(req.uris, [id]);
    assert.equal(req.publicKey.export({ type: 'spki', format: 'pem' }), createPublicKey(leafKey).export({ type: 'spki', format: 'pem' }));
  });

  test('the leaf has exactly one URI SAN, CA:FALSE, digitalSignature, and chains to the root', () => {
    const leafFile = file('leaf.pem', leaf.pem);
    const text = openssl('x509', '-in', leafFile, '-noout', '-text');
    assert.equal(text.code, 0, text.out);
    const san = /X509v3 Subject Alternative Name: (critical)?\s*\n\s*(.*)\n/.exec(text.out);
    assert.ok(san, text.out);
    assert.equal(san[1], 'critical', 'an empty subject needs a critical SAN');
    assert.equal(san[2]!.trim(), `URI:${id}`);
    assert.match(text.out, /X509v3 Basic Constraints: critical\s*\n\s*CA:FALSE/);
    assert.match(text.out, /X509v3 Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    assert.match(text.out, /TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.match(text.out, /Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256/);
    assert.match(text.out, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(text.out, new RegExp(`Serial Number:\\s*\\n?\\s*${leaf.serial.match(/../g)!.join(':')}`, 'i'));
    const verify = openssl('verify', '-CAfile', file('root.pem', rootPem), leafFile);
    assert.equal(verify.code, 0, verify.out);
    assert.match(verify.out, /: OK/);
    const cert = new X509Certificate(leaf.pem);
    assert.deepEqual(uriSans(cert), [id]);
    assert.equal(cert.ca, false);
    assert.ok(cert.verify(root.publicKey));
    assert.ok(cert.checkIssued(root));
  });

  test('the root is a CA for its trust domain, and another root does not verify the leaf', () => {
    const text = openssl('x509', '-in', file('root2.pem', rootPem), '-noout', '-text');
    assert.match(text.out, /CA:TRUE/);
    assert.match(text.out, /Certificate Sign, CRL Sign/);
    assert.match(text.out, /URI:spiffe:\/\/example.org/);
    const otherKey = generateKey();
    const other = createRootCertificate({ key: otherKey, trustDomain: 'example.org', commonName: 'other', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
    const verify = openssl('verify', '-CAfile', file('other.pem', other), file('leaf2.pem', leaf.pem));
    assert.notEqual(verify.code, 0, verify.out);
  });

  test('an RSA root (a user-provided CA) issues leaves that chain to it', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaRoot = createRootCertificate({ key: privateKey, trustDomain: 'example.org', commonName: 'rsa root', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
    const issued = issueLeafCertificate({ publicKey: req.publicKey, spiffeId: id, issuerCert: new X509Certificate(rsaRoot), issuerKey: privateKey, notBefore: new Date(now), notAfter: new Date(now + HOUR) });
    const verify = openssl('verify', '-CAfile', file('rsa-root.pem', rsaRoot), file('rsa-leaf.pem', issued.pem));
    assert.equal(verify.code, 0, verify.out);
  });
});

describe('bad requests are refused with the reason', () => {
  test('not PEM, not DER, a tampered signature, a P-384 key', () => {
    assert.throws(() => readCsr('hello'), (e: Error) => e instanceof CertificateError && /one PEM block "CERTIFICATE REQUEST"/.test(e.message));
    assert.throws(() => readCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAEC\n-----END CERTIFICATE REQUEST-----\n'), /csr: /);
    const csr = createCsr(generateKey(), id);
    const der = Buffer.from(csr.split('\n').filter((l) => !l.startsWith('-----')).join(''), 'base64');
    der[der.length - 5] ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    assert.throws(() => readCsr(tampered), /csr: /);
    const p384 = execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', join(dir, 'p384.key'), '-subj', '/CN=x'], { encoding: 'utf8' });
    assert.throws(() => readCsr(p384), /must be ECDSA P-256, not ec secp384r1/);
  });
});
