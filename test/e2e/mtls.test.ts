// Identity and mutual TLS with real processes: a control plane with its CA, proxies that join with
// tokens, and tools nobody here wrote (openssl, curl) on the wire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, createRootCertificate, generateKey, issueLeafCertificate, keyToPem, readCsr } from '../../src/core/identity/x509.js';
import { apiFetch, eventually, runWeft, startControl, startEcho, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';

const SERVICE = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
`;

async function getJson(url: string): Promise<any> {
  const res = await apiFetch(url);
  return res.json();
}

function viaProxy(port: number, host: string): Promise<{ status: number; error: string | undefined; upstream: string | undefined; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: `http://${host}/`, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, error: res.headers['weft-error'] as string | undefined, upstream: res.headers['x-upstream'] as string | undefined, body }));
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message, upstream: undefined, body: '' }));
    req.end();
  });
}

async function token(cp: RunningControl, sa: string): Promise<string> {
  const r = await runWeft(['token', 'create', '--namespace', 'default', '--service-account', sa, '--ttl', '1h'], cp.url);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** An echo app behind a sidecar with identity `echo`, and a client sidecar with identity `client`. */
async function startPair(cp: RunningControl, extraServer: string[] = []) {
  const app = await startEcho('echo-app');
  const server = await startProxyWith(['--control-plane', cp.url, '--workload', 'echo-1', '--app-port', `http=${app.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', await token(cp, 'echo'), ...extraServer]);
  const client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--register', '--label', 'app=client', '--service-account', 'client', '--token', await token(cp, 'client')]);
  await eventually(async () => {
    const items = (await getJson(`${cp.url}/api/v1/certificates`)).items as any[];
    return items.length === 2 && items.every((i) => i.installed === true);
  }, 10_000, 'both proxies hold certificates');
  return {
    app,
    server,
    client,
    async close() {
      await Promise.all([client.stop(), server.stop()]);
      await app.close();
    },
  };
}

const tmp = mkdtempSync(join(tmpdir(), 'weft-mtls-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};

/** Runs a tool without blocking this process (the echo app answers from here), bounded to 15 s. */
function run(cmd: string, args: string[], input = ''): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out });
    });
    p.stdin.end(input);
  });
}

// What curl says when the server drops it at (TLS 1.2) or right after (TLS 1.3: the client learns of
// the refusal only once it sends, over HTTP/1.1 or HTTP/2 as ALPN chose) the handshake: never an answer.
const REFUSED_BY_PEER = new Set([18, 35, 52, 55, 56]);

test('proxies speak mutual TLS with SPIFFE identities; openssl and curl see what the CA issued and what STRICT refuses', async () => {
  const cp = await startControl();
  let pair: Awaited<ReturnType<typeof startPair>> | null = null;
  try {
    assert.equal((await runWeft(['apply', '-f', '-'], cp.url, SERVICE)).code, 0);
    pair = await startPair(cp);
    const inbound = pair.server.inbound!;

    // Traffic flows over mTLS; the server side counted an mTLS connection.
    await eventually(async () => (await viaProxy(pair!.client.outbound!, 'echo')).status === 200, 5000, 'echo through two proxies');
    const metrics = await (await fetch(`http://127.0.0.1:${pair.server.admin}/metrics`)).text();
    assert.match(metrics, /weft_inbound_connections_total\{security="mtls"\} [1-9]/);
    assert.match(metrics, /weft_certificate_expiry_seconds \d+/);

    // The CA's root key is private; the certificate the server presents chains to the root.
    const caDir = join(cp.dataDir, 'ca');
    assert.equal(statSync(join(caDir, 'root-1.key')).mode & 0o777, 0o600);
    const rootPem = join(caDir, 'root-1.pem');
    const shown = await run('openssl', ['s_client', '-connect', `127.0.0.1:${inbound}`, '-showcerts'], '');
    const served = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(shown.out);
    assert.ok(served, shown.out);
    const leafFile = file('served.pem', served[0] + '\n');
    const text = await run('openssl', ['x509', '-in', leafFile, '-noout', '-text']);
    assert.equal(text.code, 0, text.out);
    const sans = /X509v3 Subject Alternative Name: critical\s*\n\s*(.*)\n/.exec(text.out);
    assert.equal(sans?.[1]?.trim(), 'URI:spiffe://cluster.local/ns/default/sa/echo', 'exactly one URI SAN, the workload identity');
    assert.match(text.out, /CA:FALSE/);
    assert.match(text.out, /X509v3 Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    const verify = await run('openssl', ['verify', '-CAfile', rootPem, leafFile]);
    assert.equal(verify.code, 0, verify.out);
    // The proxy never shows its key: /config_dump has the identity, not the key.
    const dump = await (await fetch(`http://127.0.0.1:${pair.server.admin}/config_dump`)).text();
    assert.match(dump, /"spiffeId": ?"spiffe:\/\/cluster.local\/ns\/default\/sa\/echo"/);
    assert.doesNotMatch(dump, /PRIVATE KEY/);

    // curl: plaintext gets 403 MTLS_REQUIRED; TLS without a client certificate, with one from
    // another CA, or with an expired one from the right CA, is refused in the handshake.
    const plain = await run('curl', ['-s', '-i', `http://127.0.0.1:${inbound}/`]);
    assert.match(plain.out, /^HTTP\/1.1 403/);
    assert.match(plain.out, /weft-error: MTLS_REQUIRED/);
    const noCert = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', rootPem, '-k', `https://127.0.0.1:${inbound}/`]);
    assert.ok(REFUSED_BY_PEER.has(noCert.code) && noCert.out === '000', `no client certificate must fail the TLS handshake (curl exit 18, 35, 52, 55 or 56), got exit ${noCert.code}: ${noCert.out}`);
    const otherKey = generateKey();
    const now = Date.now();
    const otherRoot = createRootCertificate({ key: otherKey, trustDomain: 'cluster.local', commonName: 'impostor', notBefore: new Date(now - 3600_000), notAfter: new Date(now + 3600_000) });
    const impostorKey = generateKey();
    const impostor = issueLeafCertificate({ publicKey: readCsr(createCsr(impostorKey, 'spiffe://cluster.local/ns/default/sa/client')).publicKey, spiffeId: 'spiffe://cluster.local/ns/default/sa/client', issuerCert: new X509Certificate(otherRoot), issuerKey: otherKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
    const foreign = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-k', '--cert', file('impostor.pem', impostor.pem), '--key', file('impostor.key', keyToPem(impostorKey)), `https://127.0.0.1:${inbound}/`]);
    assert.ok(REFUSED_BY_PEER.has(foreign.code) && foreign.out === '000', `certificate from another CA must fail the TLS handshake (curl exit 18, 35, 52, 55 or 56), got exit ${foreign.code}: ${foreign.out}`);
    const realRootKey = createPrivateKey(readFileSync(join(caDir, 'root-1.key'), 'utf8'));
    const expiredKey = generateKey();
    const expired = issueLeafCertificate({ publicKey: readCsr(createCsr(expiredKey, 'x')).publicKey, spiffeId: 'spiffe://cluster.local/ns/default/sa/client', issuerCert: new X509Certificate(readFileSync(rootPem, 'utf8')), issuerKey: realRootKey, notBefore: new Date(now - 7200_000), notAfter: new Date(now - 3600_000) });
    const old = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-k', '--cert', file('expired.pem', expired.pem), '--key', file('expired.key', keyToPem(expiredKey)), `https://127.0.0.1:${inbound}/`]);
    assert.ok(REFUSED_BY_PEER.has(old.code) && old.out === '000', `expired certificate must fail the TLS handshake (curl exit 18, 35, 52, 55 or 56), got exit ${old.code}: ${old.out}`);
    // The same tool with a valid certificate of the right CA gets through: the refusals above are about the certificates.
    const goodKey = generateKey();
    const good = issueLeafCertificate({ publicKey: readCsr(createCsr(goodKey, 'x')).publicKey, spiffeId: 'spiffe://cluster.local/ns/default/sa/client', issuerCert: new X509Certificate(readFileSync(rootPem, 'utf8')), issuerKey: realRootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
    const ok = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-k', '--cert', file('good.pem', good.pem), '--key', file('good.key', keyToPem(goodKey)), `https://127.0.0.1:${inbound}/`]);
    assert.equal(ok.out, '200', ok.out);
    const refused = await (await fetch(`http://127.0.0.1:${pair.server.admin}/metrics`)).text();
    assert.match(refused, /weft_inbound_connections_total\{security="refused",reason="plaintext"\} 1/);
    assert.match(refused, /weft_inbound_connections_total\{security="refused",reason="expired"\} 1/);

    // The client side checks the server's identity: a Workload that should be `sa/other` but is
    // really the echo sidecar is refused with UPSTREAM_TLS_FAILURE.
    const liar = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: liar }
spec: { selector: { app: liar }, ports: [{ name: http, port: 80 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: liar-1, labels: { app: liar } }
spec: { address: 127.0.0.1, ports: { http: ${pair.app.port} }, serviceAccount: other, proxy: { inboundPort: ${inbound} } }
`;
    assert.equal((await runWeft(['apply', '-f', '-'], cp.url, liar)).code, 0);
    await eventually(async () => (await viaProxy(pair!.client.outbound!, 'liar')).status !== 404, 5000, 'liar routed');
    const lied = await viaProxy(pair.client.outbound!, 'liar');
    assert.equal(lied.status, 503);
    assert.equal(lied.error, 'UPSTREAM_TLS_FAILURE');
    assert.match(lied.body, /spiffe:\/\/cluster.local\/ns\/default\/sa\/echo, not spiffe:\/\/cluster.local\/ns\/default\/sa\/other/);

    // What the CLI shows.
    const certs = await runWeft(['get', 'certificates'], cp.url);
    assert.equal(certs.code, 0, certs.stderr);
    assert.match(certs.stdout, /default\/echo-1\s+spiffe:\/\/cluster.local\/ns\/default\/sa\/echo\s+[0-9A-F]+\s+\d+h\d+m\s+yes/);
    const status = await runWeft(['proxy-status'], cp.url);
    assert.match(status.stdout, /default\/client .* \/ns\/default\/sa\/client/);
    const check = await runWeft(['check'], cp.url);
    assert.match(check.stdout, /2 proxy certificate\(s\) valid and installed/);
    const tight = await runWeft(['check', '--root-expiry-threshold', '87600h'], cp.url);
    assert.equal(tight.code, 1, 'a root that expires within the threshold fails the check');
    assert.match(tight.stdout, /trusted root\(s\) expire within 3650 days[\s\S]*weft ca rotate/);
  } finally {
    await pair?.close();
    await cp.stop();
  }
});

test('join tokens: a wrong or revoked token gets no certificate, and says why', async () => {
  const cp = await startControl();
  const proxies: RunningProxy[] = [];
  try {
    const bogus = await startProxyWith(['--control-plane', cp.url, '--workload', 'x', '--register', '--token', 'weft-000000000000.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']);
    proxies.push(bogus);
    const wrongSa = await startProxyWith(['--control-plane', cp.url, '--workload', 'y', '--register', '--service-account', 'admin', '--token', await token(cp, 'client')]);
    proxies.push(wrongSa);
    await eventually(async () => (await getJson(`${cp.url}/api/v1/certificates`)).items.length === 2, 5000, 'both refusals recorded');
    const items = (await getJson(`${cp.url}/api/v1/certificates`)).items as any[];
    assert.deepEqual(items.map((i) => [i.proxy, i.error]).sort(), [
      ['default/x', 'token 000000000000: unknown'],
      ['default/y', `token ${items.find((i) => i.proxy === 'default/y').error.split(' ')[1]} is for service account client, but the proxy registers admin`],
    ]);
    const check = await runWeft(['check'], cp.url);
    assert.equal(check.code, 1);
    assert.match(check.stdout, /default\/x: no certificate: token 000000000000: unknown/);

    // A good token, then revoked: the list shows it, and the proxy's renewals stop.
    const t = await token(cp, 'client');
    const good = await startProxyWith(['--control-plane', cp.url, '--workload', 'z', '--register', '--service-account', 'client', '--token', t]);
    proxies.push(good);
    await eventually(async () => ((await getJson(`${cp.url}/api/v1/certificates`)).items as any[]).some((i) => i.proxy === 'default/z' && i.installed), 5000, 'z certified');
    const id = t.slice(5, 17);
    assert.equal((await runWeft(['token', 'revoke', id], cp.url)).code, 0);
    const list = await runWeft(['token', 'list'], cp.url);
    assert.match(list.stdout, new RegExp(`${id}\\s+default\\s+client\\s+\\S+\\s+yes`));
    await eventually(async () => ((await getJson(`${cp.url}/api/v1/certificates`)).items as any[]).some((i) => i.proxy === 'default/z' && i.error === `token ${id}: revoked`), 5000, 'revocation recorded');
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await cp.stop();
  }
});
