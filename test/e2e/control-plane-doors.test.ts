// The control plane's own doors, with real processes: the API's admin token, proxies that join with a
// token and then talk to the control plane over mutual TLS, and what each side refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { createServer as createTcpServer, connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, createRootCertificate, generateKey, issueLeafCertificate, keyFromPem, keyToPem, readCsr } from '../../src/core/identity/x509.js';
import { apiFetch, eventually, runWeft, startControl, startEcho, startProxyWith, weftBin, type RunningControl } from './harness.js';

const tmp = mkdtempSync(join(tmpdir(), 'weft-doors-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const SERVICE = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
`;

/** Runs a program to completion (bounded to 15 s) with the given environment changes. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, input = ''): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out, err });
    });
    p.stdin.end(input);
  });
}

async function proxyStatus(cp: RunningControl, id: string): Promise<any> {
  const { items } = (await (await apiFetch(`${cp.url}/api/v1/proxies`)).json()) as { items: any[] };
  return items.find((p) => p.id === id) ?? null;
}

async function token(cp: RunningControl, sa: string, ttl: string): Promise<{ token: string; id: string }> {
  const r = await runWeft(['token', 'create', '--namespace', 'default', '--service-account', sa, '--ttl', ttl], cp.url);
  assert.equal(r.code, 0, r.stderr);
  const list = await runWeft(['token', 'list', '-o', 'json'], cp.url);
  const items = JSON.parse(list.stdout).items as Array<{ id: string }>;
  const id = r.stdout.trim().slice(5, 17);
  assert.ok(items.some((t) => t.id === id), `token ${id} listed`);
  return { token: r.stdout.trim(), id };
}

/** Opens a config stream over TLS with the given client certificate and says hello; resolves with what the control plane answered within `ms`. */
function tlsStream(port: number, tls: { key: string; cert: string }, hello: object, ms = 1500): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/api/v1/stream', headers: { connection: 'Upgrade', upgrade: 'weft-config/1' }, rejectUnauthorized: false, agent: false, ...tls });
    req.on('error', reject);
    req.on('response', (res) => reject(new Error(`no upgrade: HTTP ${res.statusCode}`)));
    req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
      let text = head.toString();
      socket.on('data', (c: Buffer) => (text += c.toString()));
      socket.on('error', () => {});
      socket.write(JSON.stringify(hello) + '\n');
      setTimeout(() => {
        socket.destroy();
        resolve(text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)));
      }, ms);
    });
    req.end();
  });
}

test('the API needs the admin token: made on first start, kept 0600, shown once, found by the local CLI', async () => {
  let cp = await startControl();
  try {
    const file = join(cp.dataDir, 'admin-token');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(cp.adminToken, /^weft-admin\.[A-Za-z0-9_-]{43}$/);
    assert.equal(cp.stderr().split(cp.adminToken).length - 1, 1, 'the token is printed once on first start');

    const bare = await fetch(`${cp.url}/api/v1/resources`);
    assert.equal(bare.status, 401);
    assert.equal(bare.headers.get('www-authenticate'), 'Bearer realm="weft"');
    assert.equal(((await bare.json()) as any).error.code, 'UNAUTHENTICATED');
    const wrong = await fetch(`${cp.url}/api/v1/tokens`, { method: 'POST', body: '{}', headers: { authorization: 'Bearer weft-admin.' + 'A'.repeat(43) } });
    assert.equal(wrong.status, 401, 'a wrong token creates nothing');
    assert.equal((await fetch(`${cp.url}/api/v1/health`)).status, 200, 'health needs no token');
    assert.equal((await fetch(`${cp.url}/metrics`)).status, 200, 'metrics need no token');
    assert.equal((await cp.api('/api/v1/resources')).status, 200);
    // The API port speaks HTTPS too (same token rules).
    const https = await run('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${cp.listening.apiPort}/api/v1/resources`]);
    assert.equal(https.out, '401', https.err);

    // The CLI finds the token `weft control` saved for its URL; a wrong one, or none, is refused with a reason.
    assert.equal((await runWeft(['apply', '-f', '-'], cp.url, SERVICE)).code, 0);
    const bad = await run(process.execPath, [weftBin, 'get', 'services'], { WEFT_SERVER: cp.url, WEFT_ADMIN_TOKEN: 'weft-admin.' + 'B'.repeat(43) });
    assert.equal(bad.code, 1);
    assert.match(bad.err, /WEFT_ADMIN_TOKEN is not this control plane's/);
    const none = await run(process.execPath, [weftBin, 'get', 'services'], { WEFT_SERVER: cp.url, XDG_CONFIG_HOME: mkdtempSync(join(tmp, 'empty-')) });
    assert.equal(none.code, 1);
    assert.match(none.err, /no admin token for http:\/\/127\.0\.0\.1:\d+: set WEFT_ADMIN_TOKEN/);
    const rotate = await run(process.execPath, [weftBin, 'ca', 'rotate'], { WEFT_SERVER: cp.url, WEFT_ADMIN_TOKEN: 'weft-admin.' + 'B'.repeat(43) });
    assert.equal(rotate.code, 1);
    assert.match(rotate.err, /HTTP 401/);

    // The control plane's own identity cannot be handed out.
    const reserved = await runWeft(['token', 'create', '--namespace', 'weft-system', '--service-account', 'weft-control'], cp.url);
    assert.equal(reserved.code, 1);
    assert.match(reserved.stderr, /weft-system is reserved/);

    // A restart keeps the token and does not print it again.
    const { dataDir, adminToken } = cp;
    await cp.stop();
    cp = await startControl(dataDir);
    assert.equal(cp.adminToken, adminToken);
    assert.doesNotMatch(cp.stderr(), new RegExp(adminToken.replace('.', '\\.')));
    assert.equal((await runWeft(['get', 'services', '-o', 'json'], cp.url)).code, 0);
  } finally {
    await cp.stop();
  }
});

test('a proxy joins with its token, then talks to the control plane over mTLS; after the token expired it still reconnects and renews, until the token is revoked', async () => {
  let cp = await startControl();
  const port = cp.listening.apiPort;
  const app = await startEcho('echo-app');
  let proxy: Awaited<ReturnType<typeof startProxyWith>> | null = null;
  try {
    assert.equal((await runWeft(['apply', '-f', '-'], cp.url, SERVICE)).code, 0);
    const tok = await token(cp, 'echo', '4s');
    const created = Date.now();
    proxy = await startProxyWith(['--control-plane', cp.url, '--workload', 'echo-1', '--app-port', `http=${app.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', tok.token]);
    await eventually(async () => {
      const p = await proxyStatus(cp, 'default/echo-1');
      return p?.connected && p.transport === 'mtls' && p.authenticatedBy === 'certificate' && p.certificate?.installed === true;
    }, 10_000, 'the proxy on an mTLS stream, authenticated by its certificate');
    assert.match(proxy.stderr(), /moving the config stream to mTLS/);
    const table = await runWeft(['proxy-status'], cp.url);
    assert.match(table.stdout, /STREAM[\s\S]*default\/echo-1\s+yes\s+mtls/);

    // openssl sees the control plane's certificate: its reserved SPIFFE identity, chained to the mesh root.
    const shown = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-showcerts']);
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(shown.out);
    assert.ok(pem, shown.out + shown.err);
    const served = new X509Certificate(pem[0]);
    assert.equal(served.subjectAltName, 'URI:spiffe://cluster.local/ns/weft-system/sa/weft-control');
    const servedFile = join(tmp, 'control.pem');
    writeFileSync(servedFile, pem[0] + '\n');
    const verify = await run('openssl', ['verify', '-CAfile', join(cp.dataDir, 'ca', 'root-1.pem'), servedFile]);
    assert.equal(verify.code, 0, verify.out + verify.err);

    // The token expires; the control plane restarts; the proxy comes back over mTLS and gets a new certificate all the same.
    const serial = (await proxyStatus(cp, 'default/echo-1')).certificate.serial;
    await new Promise((r) => setTimeout(r, Math.max(0, created + 4500 - Date.now())));
    const expired = await runWeft(['token', 'list', '-o', 'json'], cp.url);
    assert.ok(Date.parse(JSON.parse(expired.stdout).items.find((t: any) => t.id === tok.id).expiresAt) < Date.now(), 'the token has expired');
    await cp.stop();
    cp = await startControl(cp.dataDir, ['--api-port', String(port)]);
    await eventually(async () => {
      const p = await proxyStatus(cp, 'default/echo-1');
      return p?.connected && p.transport === 'mtls' && p.certificate?.installed === true && p.certificate.serial !== serial && p.identityError === null;
    }, 15_000, 'reconnected over mTLS with a renewed certificate, the token long expired');

    // Revoking the token stops renewals on the open stream and on every mTLS reconnect after it.
    assert.equal((await runWeft(['token', 'revoke', tok.id], cp.url)).code, 0);
    await eventually(async () => (await proxyStatus(cp, 'default/echo-1'))?.identityError === `token ${tok.id}: revoked`, 5000, 'revocation reaches the open stream');
    await cp.stop();
    cp = await startControl(cp.dataDir, ['--api-port', String(port)]);
    await eventually(async () => {
      const p = await proxyStatus(cp, 'default/echo-1');
      return p?.connected && p.transport === 'mtls' && p.certificate === null && p.identityError === `token ${tok.id}: revoked`;
    }, 15_000, 'a revoked token refuses the mTLS reconnect a certificate');
  } finally {
    await proxy?.stop();
    await app.close();
    await cp.stop();
  }
});

test('the config stream refuses certificates it cannot vouch for: another CA, another namespace, one it never issued', async () => {
  const cp = await startControl();
  try {
    const port = cp.listening.apiPort;
    const hello = (namespace: string) => ({ t: 'hello', workload: 'w', namespace, register: null, have: {}, haveEndpoints: {} });
    const leafFrom = (issuerCert: string, issuerKey: string, id: string) => {
      const key = generateKey();
      const now = Date.now();
      const { pem } = issueLeafCertificate({ publicKey: readCsr(createCsr(key, null)).publicKey, spiffeId: id, issuerCert: new X509Certificate(issuerCert), issuerKey: keyFromPem(issuerKey), notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
      return { key: keyToPem(key), cert: pem };
    };
    const identityError = (msgs: any[]): string => msgs.find((m) => m.t === 'identity-error')?.error ?? `none in ${JSON.stringify(msgs).slice(0, 300)}`;

    const otherKey = generateKey();
    const otherRoot = createRootCertificate({ key: otherKey, trustDomain: 'cluster.local', commonName: 'Not the mesh', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000) });
    const foreign = await tlsStream(port, leafFrom(otherRoot, keyToPem(otherKey), 'spiffe://cluster.local/ns/default/sa/w'), hello('default'));
    assert.match(identityError(foreign), /^client certificate [0-9A-F]+ refused: /);

    // The mesh's own root, read from the data dir as an attacker with that file would: still refused
    // where the certificate does not match the claim, or was never issued by the control plane.
    const root = readFileSync(join(cp.dataDir, 'ca', 'root-1.pem'), 'utf8');
    const rootKey = readFileSync(join(cp.dataDir, 'ca', 'root-1.key'), 'utf8');
    const elsewhere = await tlsStream(port, leafFrom(root, rootKey, 'spiffe://cluster.local/ns/shop/sa/w'), hello('default'));
    assert.match(identityError(elsewhere), /^certificate [0-9A-F]+ is for namespace shop, not default$/);
    const unknown = await tlsStream(port, leafFrom(root, rootKey, 'spiffe://cluster.local/ns/default/sa/w'), hello('default'));
    assert.match(identityError(unknown), /no record of issuing it; join again with a token$/);
    // None of them got a certificate.
    for (const msgs of [foreign, elsewhere, unknown]) assert.ok(!msgs.some((m) => m.t === 'identity'));
  } finally {
    await cp.stop();
  }
});

test('a proxy checks the control plane is the control plane: a server with another identity from the same root gets nothing', async () => {
  const cp = await startControl();
  // A forwarder the proxy talks through: first to the control plane, then to an impostor.
  let target = cp.listening.apiPort;
  const conns = new Set<Socket>();
  const forwarder = createTcpServer((s) => {
    const up = connect(target, '127.0.0.1');
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.pipe(up).pipe(s);
    s.on('error', () => up.destroy());
    up.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => forwarder.listen(0, '127.0.0.1', r));
  const root = readFileSync(join(cp.dataDir, 'ca', 'root-1.pem'), 'utf8');
  const key = generateKey();
  const now = Date.now();
  const rootKey = keyFromPem(readFileSync(join(cp.dataDir, 'ca', 'root-1.key'), 'utf8'));
  const { pem } = issueLeafCertificate({ publicKey: readCsr(createCsr(key, null)).publicKey, spiffeId: 'spiffe://cluster.local/ns/default/sa/impostor', issuerCert: new X509Certificate(root), issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });
  let impostorRequests = 0;
  const impostor = createHttpsServer({ key: keyToPem(key), cert: pem, requestCert: true, rejectUnauthorized: false }, (_req, res) => {
    impostorRequests++;
    res.end();
  });
  impostor.on('upgrade', (_req, socket: Socket) => {
    impostorRequests++;
    socket.destroy();
  });
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
  const app = await startEcho('echo-app');
  let proxy: Awaited<ReturnType<typeof startProxyWith>> | null = null;
  try {
    assert.equal((await runWeft(['apply', '-f', '-'], cp.url, SERVICE)).code, 0);
    const tok = await token(cp, 'echo', '1h');
    const via = `http://127.0.0.1:${(forwarder.address() as AddressInfo).port}`;
    proxy = await startProxyWith(['--control-plane', via, '--workload', 'echo-1', '--app-port', `http=${app.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', tok.token]);
    await eventually(async () => (await proxyStatus(cp, 'default/echo-1'))?.transport === 'mtls', 10_000, 'the proxy on mTLS');
    target = (impostor.address() as AddressInfo).port;
    for (const s of conns) s.destroy();
    await eventually(() => /the mTLS stream failed \(.*peer is spiffe:\/\/cluster\.local\/ns\/default\/sa\/impostor, expected spiffe:\/\/cluster\.local\/ns\/weft-system\/sa\/weft-control/.test(proxy!.stderr()), 10_000, 'the proxy refused the impostor');
    assert.equal(impostorRequests, 0, 'the impostor never saw a request');
  } finally {
    await proxy?.stop();
    await app.close();
    await cp.stop();
    for (const s of conns) s.destroy();
    forwarder.close();
    impostor.close();
  }
});
