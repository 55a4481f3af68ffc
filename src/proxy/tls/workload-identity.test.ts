import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createRootCertificate, generateKey, issueLeafCertificate, readCsr } from '../../core/identity/x509.js';
import { WorkloadIdentity } from './workload-identity.js';

const HOUR = 3600_000;
const now = Date.now();
const rootKey = generateKey();
const rootPem = createRootCertificate({ key: rootKey, trustDomain: 'cluster.local', commonName: 'test root', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
const root = new X509Certificate(rootPem);
const ID = 'spiffe://cluster.local/ns/default/sa/web';

function sign(csr: string): string {
  return issueLeafCertificate({ publicKey: readCsr(csr).publicKey, spiffeId: ID, issuerCert: root, issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + HOUR) }).pem;
}

test('installing the same chain and roots again changes nothing; a renewal or a new root changes the contexts', () => {
  const id = new WorkloadIdentity();
  let changes = 0;
  id.onChange = () => changes++;
  const chain = sign(id.newCsr(ID));
  const serial = id.install(chain, [rootPem]);
  const first = id.clientContext;
  const at = id.renewAt(0.5);
  assert.equal(changes, 1);
  // The control plane re-sends the identity on each new config stream: connections made under it must stay.
  assert.equal(id.install(chain, [rootPem]), serial);
  assert.equal(id.clientContext, first, 'same context object: peer connections are kept');
  assert.equal(changes, 1);
  assert.equal(id.renewAt(0.5), at, 'the renewal time is not pushed back');
  // Another root in the bundle: new contexts.
  const otherRoot = createRootCertificate({ key: generateKey(), trustDomain: 'cluster.local', commonName: 'next root', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
  id.install(chain, [rootPem, otherRoot]);
  assert.notEqual(id.clientContext, first);
  assert.equal(changes, 2);
  // A renewed leaf: new contexts again.
  const before = id.clientContext;
  const renewed = id.install(sign(id.newCsr(ID)), [rootPem, otherRoot]);
  assert.notEqual(renewed, serial);
  assert.notEqual(id.clientContext, before);
  assert.equal(changes, 3);
});
