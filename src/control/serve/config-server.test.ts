import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, test } from 'node:test';
import { createCsr, generateKey } from '../../core/identity/x509.js';
import type { ControlMessage, HelloMessage, RegisteredWorkload } from '../../model/index.js';
import { CertificateAuthority } from '../ca/certificate-authority.js';
import { JoinTokens } from '../ca/join-tokens.js';
import { ResourceIndex } from '../resource-index.js';
import { WorkloadRegistry } from '../sources/workload-registry.js';
import { FileStore } from '../store/file-store.js';
import { ConfigServer, type StreamAuthMode } from './config-server.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-config-server-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One end of a config stream: what the server wrote, as messages, and whether it closed its side. */
class FakeStream extends Duplex {
  readonly messages: ControlMessage[] = [];
  private text = '';
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    if (this.text.startsWith('HTTP/1.1 101')) this.text = this.text.slice(this.text.indexOf('\r\n\r\n') + 4);
    let nl: number;
    while ((nl = this.text.indexOf('\n')) !== -1) {
      this.messages.push(JSON.parse(this.text.slice(0, nl)) as ControlMessage);
      this.text = this.text.slice(nl + 1);
    }
    cb();
  }
  of<T extends ControlMessage['t']>(t: T): Array<Extract<ControlMessage, { t: T }>> {
    return this.messages.filter((m): m is Extract<ControlMessage, { t: T }> => m.t === t);
  }
  say(msg: object): void {
    this.emit('data', Buffer.from(JSON.stringify(msg) + '\n'));
  }
}

/** A control plane's config server with its store, registry, CA and tokens, in a fresh folder. */
function setup(mode: StreamAuthMode): {
  server: ConfigServer;
  index: ResourceIndex;
  tokens: JoinTokens;
  ca: CertificateAuthority;
  logs: string[];
  close: () => void;
} {
  const d = mkdtempSync(join(dir, `${mode}-`));
  const store = FileStore.open(join(d, 'store'));
  const index = new ResourceIndex(store);
  const registry = new WorkloadRegistry(index, 60_000);
  const ca = new CertificateAuthority({ dir: join(d, 'ca'), trustDomain: 'cluster.local' });
  const tokens = new JoinTokens(store);
  const logs: string[] = [];
  const server = new ConfigServer(index, registry, { heartbeatMs: 60_000, log: (m) => logs.push(m), identity: { ca, tokens }, streamAuth: mode });
  return {
    server,
    index,
    tokens,
    ca,
    logs,
    close: () => {
      server.close();
      registry.close();
      store.close();
    },
  };
}

const registration = (serviceAccount: string): RegisteredWorkload => ({
  address: '127.0.0.1',
  ports: { http: 8080 },
  labels: { app: 'web' },
  serviceAccount,
  inboundPort: 15006,
});

const hello = (over: Partial<HelloMessage> = {}): HelloMessage => ({
  t: 'hello',
  workload: 'web-1',
  namespace: 'shop',
  register: registration('web'),
  have: {},
  haveEndpoints: {},
  ...over,
});

/** A plaintext stream, or one over mutual TLS with this client certificate (PEM), as the TLS layer would hand it over. */
function open(server: ConfigServer, h: HelloMessage, cert: string | null = null): FakeStream {
  const socket = new FakeStream();
  const tls = cert === null ? { encrypted: undefined } : { encrypted: true, authorized: true, getPeerX509Certificate: () => new X509Certificate(cert) };
  const req = { socket: { remoteAddress: '127.0.0.1', remotePort: 40000, ...tls } } as unknown as IncomingMessage;
  server.accept(req, socket, Buffer.from(JSON.stringify(h) + '\n'));
  return socket;
}

const settle = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A certificate the CA issued for shop/<sa>, recorded as descending from `tokenId`. */
async function certificate(ca: CertificateAuthority, tokens: JoinTokens, tokenId: string, sa: string): Promise<string> {
  const issued = ca.issue(createCsr(generateKey(), null), 'cluster.local', 'shop', sa, 3600_000);
  await tokens.recordIssued(issued.cert.serial, tokenId, issued.cert.notAfter);
  return issued.chain;
}

const registered = (index: ResourceIndex, name = 'web-1'): boolean => index.get(`Workload/shop/${name}`) !== undefined;

test('required: streams without a valid credential are refused, told why, counted, shown, and register nothing', async () => {
  const { server, index, tokens, ca, logs, close } = setup('required');
  try {
    const revoked = await tokens.create('shop', 'web', 3600_000);
    await tokens.revoke(revoked.info.id);
    const expired = await tokens.create('shop', 'web', 1);
    const other = await tokens.create('other', 'web', 3600_000);
    const good = await tokens.create('shop', 'web', 3600_000);
    await settle(5);
    const cases: Array<{ name: string; reason: string; stream: () => Promise<FakeStream>; says: RegExp }> = [
      { name: 'no credential', reason: 'no_credential', stream: async () => open(server, hello()), says: /no credential: neither a join token nor a client certificate; start the proxy with --token/ },
      { name: 'malformed token', reason: 'bad_token', stream: async () => open(server, hello({ token: 'nope' })), says: /token: not a Weft join token/ },
      { name: 'unknown token', reason: 'bad_token', stream: async () => open(server, hello({ token: `weft-000000000000.${'a'.repeat(32)}` })), says: /token 000000000000: unknown/ },
      { name: 'revoked token', reason: 'revoked', stream: async () => open(server, hello({ token: revoked.token })), says: new RegExp(`token ${revoked.info.id}: revoked`) },
      { name: 'expired token', reason: 'expired_token', stream: async () => open(server, hello({ token: expired.token })), says: /expired at/ },
      { name: 'token of another namespace', reason: 'identity_mismatch', stream: async () => open(server, hello({ token: other.token })), says: /is for namespace other, not shop/ },
      { name: 'token of another service account than registered', reason: 'identity_mismatch', stream: async () => open(server, hello({ token: good.token, register: registration('admin') })), says: /is for service account web, but the proxy registers admin/ },
      {
        name: 'certificate registering another service account',
        reason: 'identity_mismatch',
        stream: async () => open(server, hello({ register: registration('admin') }), await certificate(ca, tokens, good.info.id, 'web')),
        says: /certificate \w+ is for service account web, but the proxy registers admin/,
      },
      { name: 'certificate from a revoked token', reason: 'revoked', stream: async () => open(server, hello(), await certificate(ca, tokens, revoked.info.id, 'web')), says: new RegExp(`token ${revoked.info.id}: revoked`) },
      {
        name: 'certificate this control plane has no record of',
        reason: 'bad_certificate',
        stream: async () => open(server, hello(), ca.issue(createCsr(generateKey(), null), 'cluster.local', 'shop', 'web', 3600_000).chain),
        says: /has no record of issuing it/,
      },
    ];
    let n = 0;
    for (const c of cases) {
      const before = server.stats.streamsRefused[c.reason as 'no_credential'];
      const s = await c.stream();
      await settle();
      n++;
      assert.deepEqual(s.messages.map((m) => m.t), ['notice'], `${c.name}: only the refusal, no welcome, no update`);
      const notice = s.of('notice')[0]!.message;
      assert.match(notice, /^config stream refused: /, c.name);
      assert.match(notice, c.says, c.name);
      assert.match(notice, /--stream-auth required/, c.name);
      assert.equal(s.writableEnded, true, `${c.name}: the stream is closed`);
      assert.equal(server.stats.streamsRefused[c.reason as 'no_credential'], before + 1, `${c.name}: counted as ${c.reason}`);
      assert.equal(registered(index), false, `${c.name}: nothing registered`);
      assert.equal(server.connected, 0, c.name);
      const status = server.statuses().find((p) => p.id === 'shop/web-1');
      assert.ok(status !== undefined, `${c.name}: proxy-status lists it`);
      assert.equal(status.connected, false);
      assert.match(status.identityError ?? '', c.says, `${c.name}: proxy-status says why`);
      assert.equal(status.authenticatedBy, null);
      // The same message after the hello is not read: a refused stream cannot try again on the same socket.
      s.say(hello({ token: good.token }));
      await settle(5);
      assert.equal(s.messages.length, 1, `${c.name}: nothing read after the refusal`);
    }
    const total = Object.values(server.stats.streamsRefused).reduce((a, b) => a + b, 0);
    assert.equal(total, n);
    assert.equal(logs.filter((l) => / stream refused \(/.test(l)).length, n, 'logged once per connect');
  } finally {
    close();
  }
});

test('required: a good token, then its certificate, get configuration and register; a registration must stay the granted identity', async () => {
  const { server, index, tokens, ca, close } = setup('required');
  try {
    const good = await tokens.create('shop', 'web', 3600_000);
    const s = open(server, hello({ token: good.token, csr: createCsr(generateKey(), null) }));
    await settle(80);
    assert.equal(s.messages[0]?.t, 'welcome');
    assert.equal(s.of('update').length, 4, 'every config type');
    assert.equal(s.of('identity').length, 1, 'a certificate');
    assert.equal(registered(index), true);
    assert.equal(server.statuses()[0]!.authenticatedBy, 'token');
    // A registration on the live stream for another service account is refused; for its own, taken.
    s.say({ t: 'register', register: { ...registration('admin'), ports: { http: 9090 } } });
    await settle();
    assert.match(s.of('notice').at(-1)?.message ?? '', /registration refused: register.serviceAccount: the stream's identity is service account web \(by token\), not admin/);
    assert.equal((index.get('Workload/shop/web-1')!.resource.spec as { ports: Record<string, number> }).ports.http, 8080, 'unchanged');
    s.say({ t: 'register', register: { ...registration('web'), ports: { http: 9090 } } });
    await settle();
    assert.equal((index.get('Workload/shop/web-1')!.resource.spec as { ports: Record<string, number> }).ports.http, 9090);
    s.destroy();
    await settle(5);
    // The reconnect over mTLS with the certificate the token got.
    const chain = s.of('identity')[0]!.chain;
    const m = open(server, hello({ register: registration('web') }), chain);
    await settle(50);
    assert.equal(m.messages[0]?.t, 'welcome');
    assert.equal(server.statuses()[0]!.authenticatedBy, 'certificate');
    assert.equal(server.statuses()[0]!.transport, 'mtls');
    // A stranger claiming the same proxy is refused without disturbing the live stream.
    const stranger = open(server, hello());
    await settle(5);
    assert.equal(stranger.writableEnded, true);
    assert.equal(m.writableEnded, false, 'the live stream stays');
    assert.equal(server.connected, 1);
    assert.equal(server.statuses()[0]!.identityError, null, "the live proxy's status is not defaced");
    // Revoking the token closes the stream and withdraws the registration.
    await tokens.revoke(good.info.id);
    server.tokenRevoked(good.info.id);
    await settle();
    assert.match(m.of('notice').at(-1)?.message ?? '', /config stream closed: token \w+: revoked/);
    assert.equal(m.writableEnded, true);
    assert.equal(registered(index), false, 'registration released');
    void ca;
  } finally {
    close();
  }
});

test('optional: every stream gets configuration; a missing credential is logged once per proxy, a refused one is an identity error', async () => {
  const { server, index, tokens, ca, logs, close } = setup('optional');
  try {
    const revoked = await tokens.create('shop', 'web', 3600_000);
    await tokens.revoke(revoked.info.id);
    const good = await tokens.create('shop', 'web', 3600_000);
    const cert = await certificate(ca, tokens, good.info.id, 'web');
    const cases: Array<{ name: string; stream: () => FakeStream; by: 'token' | 'certificate' | null; error: RegExp | null }> = [
      { name: 'no credential', stream: () => open(server, hello()), by: null, error: null },
      { name: 'no credential, again', stream: () => open(server, hello()), by: null, error: null },
      { name: 'bad token', stream: () => open(server, hello({ token: 'nope' })), by: null, error: /not a Weft join token/ },
      { name: 'revoked token', stream: () => open(server, hello({ token: revoked.token })), by: null, error: /revoked/ },
      { name: 'good token', stream: () => open(server, hello({ token: good.token })), by: 'token', error: null },
      { name: 'good certificate', stream: () => open(server, hello(), cert), by: 'certificate', error: null },
    ];
    for (const c of cases) {
      const s = c.stream();
      await settle(80);
      assert.equal(s.messages[0]?.t, 'welcome', c.name);
      assert.equal(s.of('update').length, 4, `${c.name}: every config type`);
      assert.equal(registered(index), true, `${c.name}: registered`);
      const status = server.statuses()[0]!;
      assert.equal(status.authenticatedBy, c.by, c.name);
      if (c.error === null) assert.equal(status.identityError, null, c.name);
      else assert.match(status.identityError ?? '', c.error, c.name);
      s.destroy();
      await settle(5);
    }
    assert.equal(logs.filter((l) => /without a credential .* gets configuration: --stream-auth optional/.test(l)).length, 1, 'once per proxy');
    assert.deepEqual(Object.values(server.stats.streamsRefused), [0, 0, 0, 0, 0, 0], 'nothing refused');
    // A stream with an identity registers only that identity in optional mode too: the token is for web.
    const s = open(server, hello({ token: good.token }));
    await settle(50);
    s.say({ t: 'register', register: registration('admin') });
    await settle();
    assert.match(s.of('notice').at(-1)?.message ?? '', /registration refused: register.serviceAccount: the stream's identity is service account web \(by token\), not admin/);
    assert.equal((index.get('Workload/shop/web-1')!.resource.spec as { serviceAccount: string }).serviceAccount, 'web');
    s.destroy();
  } finally {
    close();
  }
});

test('required needs the identity machinery', () => {
  const d = mkdtempSync(join(dir, 'noid-'));
  const store = FileStore.open(d);
  const index = new ResourceIndex(store);
  const registry = new WorkloadRegistry(index, 60_000);
  try {
    assert.throws(() => new ConfigServer(index, registry, { heartbeatMs: 60_000, log: () => {}, identity: null, streamAuth: 'required' }), /streamAuth: required needs the CA/);
  } finally {
    registry.close();
    store.close();
  }
});
