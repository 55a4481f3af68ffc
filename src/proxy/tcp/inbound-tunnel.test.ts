import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { InboundConfig } from '../../model/snapshot.js';
import { buildAuthorizer } from '../authz/authorize.js';
import { parseRequestHead } from '../http1/parse.js';
import type { ConnectTunnel } from '../http1/server.js';
import { InboundTunnels, acceptTunnel, type TunnelOutcome } from './inbound-tunnel.js';

const CLIENT = 'spiffe://cluster.local/ns/default/sa/client';

function tunnels(over: Partial<InboundConfig> = {}): InboundTunnels {
  const inbound: InboundConfig = {
    appAddress: '127.0.0.1',
    ports: { sql: 5432, report: 5433 },
    defaultPort: null,
    appProtocols: {},
    mtlsMode: 'STRICT',
    authorization: { policies: [] },
    ...over,
  };
  return new InboundTunnels(inbound, buildAuthorizer(inbound.authorization));
}

/** The verdict on a CONNECT head, as `port N` or `CODE: message`. */
function decide(t: InboundTunnels, target: string, extra = '', identity: string | null = CLIENT): string {
  const v = t.decide(parseRequestHead(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}${extra}`), identity);
  return 'error' in v ? `${v.error.code}: ${v.error.message}` : `port ${v.port}${v.policy === '' ? '' : ` by ${v.policy}`}`;
}

test('a tunnel goes only to one of the workload\'s own app ports on its own address', () => {
  const t = tunnels();
  assert.equal(decide(t, '127.0.0.1:5432'), 'port 5432');
  assert.equal(decide(t, '127.0.0.1:5433'), 'port 5433');
  for (const target of ['127.0.0.1:22', 'example.com:80', 'localhost:5432', '127.0.0.2:5432', '[::1]:5432', '127.0.0.1:15000']) {
    assert.match(decide(t, target), /^NO_ROUTE: CONNECT .* only to its own workload's app ports$/, target);
  }
  const v6 = tunnels({ appAddress: '::1' });
  assert.equal(decide(v6, '[::1]:5432'), 'port 5432');
  assert.match(decide(v6, '127.0.0.1:5432'), /^NO_ROUTE/);
  assert.equal(decide(tunnels({ appAddress: 'DB.local' }), 'db.LOCAL:5432'), 'port 5432', 'host names compare case-insensitively');
});

test('a malformed CONNECT is a 400: not host:port, a port out of range, or content', () => {
  const t = tunnels();
  for (const target of ['/', '127.0.0.1', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:65536', 'http://127.0.0.1:5432', 'a@127.0.0.1:5432', '[::1:5432']) {
    assert.match(decide(t, target), /^BAD_REQUEST: CONNECT target .* is not host:port$/, target);
  }
  assert.equal(decide(t, '127.0.0.1:5432', '\r\ncontent-length: 3'), 'BAD_REQUEST: a CONNECT request carries no content');
  assert.equal(decide(t, '127.0.0.1:5432', '\r\ntransfer-encoding: chunked'), 'BAD_REQUEST: a CONNECT request carries no content');
  assert.equal(decide(t, '127.0.0.1:5432', '\r\ncontent-length: 0'), 'port 5432');
});

test('authorization decides with the caller\'s identity and the app port; method and path rules do not apply to TCP', () => {
  const t = tunnels({
    authorization: {
      policies: [
        { name: 'default/clients', action: 'ALLOW', appPorts: [5432, 5433], rules: [{ from: [{ identities: [CLIENT], namespaces: null }], to: [{ appPorts: [5432], methods: null, paths: null }], when: [] }] },
        // Needs an HTTP method: never matches a connection.
        { name: 'default/web', action: 'ALLOW', appPorts: [5432, 5433], rules: [{ from: null, to: [{ appPorts: null, methods: ['GET'], paths: null }], when: [] }] },
      ],
    },
  });
  assert.equal(decide(t, '127.0.0.1:5432'), 'port 5432 by default/clients');
  assert.equal(decide(t, '127.0.0.1:5433'), `DENIED: ${CLIENT} may not connect to app port 5433 here: denied no ALLOW policy matched`);
  assert.equal(
    decide(t, '127.0.0.1:5432', '\r\nweft-service: db.default:9000', 'spiffe://cluster.local/ns/default/sa/other'),
    'DENIED: spiffe://cluster.local/ns/default/sa/other may not connect to db.default:9000 (app port 5432) here: denied no ALLOW policy matched',
  );
  assert.match(decide(t, '127.0.0.1:5432', '', null), /^DENIED: a caller without identity may not/);
  assert.match(decide(t, '127.0.0.1:5433', '\r\nweft-service: <script>'), /may not connect to app port 5433 here/, 'an odd service name is not echoed');

  const denied = tunnels({
    authorization: { policies: [{ name: 'default/no', action: 'DENY', appPorts: [5432], rules: [{ from: null, to: [{ appPorts: null, methods: null, paths: ['/admin/*'] }], when: [] }] }] },
  });
  assert.equal(decide(denied, '127.0.0.1:5432'), `DENIED: ${CLIENT} may not connect to app port 5432 here: denied by AuthorizationPolicy default/no`, 'a DENY\'s path condition is ignored for TCP: it denies more, not less');
  assert.equal(decide(denied, '127.0.0.1:5433'), 'port 5433');
});

test('an allowed tunnel reports the source its caller\'s proxy named, believed only with an identity of its namespace; the head never reaches the app', async () => {
  const received: string[] = [];
  const app = createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    s.on('end', () => {
      received.push(got);
      s.end('ok');
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  const t = tunnels({ ports: { sql: appPort } });
  /** One CONNECT with these extra head lines from `identity`: the outcome reported, and what the caller read. */
  const tunnel = (extra: string, identity: string | null): Promise<{ outcome: TunnelOutcome; answer: string }> =>
    new Promise((resolve) => {
      let outcome: TunnelOutcome | null = null;
      const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
        const head = parseRequestHead(`CONNECT 127.0.0.1:${appPort} HTTP/1.1\r\nhost: 127.0.0.1:${appPort}${extra}`);
        const handed = { socket, head, rest: Buffer.from('early'), peerIdentity: identity, from: null } as unknown as ConnectTunnel;
        acceptTunnel(handed, t, (o) => (outcome = o), () => server.close());
      });
      server.listen(0, '127.0.0.1', () => {
        const caller = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true });
        let answer = '';
        caller.on('data', (c: Buffer) => {
          answer += c.toString('latin1');
          if (answer === 'HTTP/1.1 200 OK\r\n\r\n') caller.end(' late');
        });
        caller.on('close', () => resolve({ outcome: outcome!, answer }));
      });
    });
  try {
    const from = (...values: string[]): string => values.map((v) => `\r\nweft-source-service: ${v}`).join('');
    const mtls = 'spiffe://cluster.local/ns/default/sa/web';
    const cases: Array<[string, string | null, string]> = [
      [from('web.default'), mtls, 'web.default'],
      [from('web.default'), null, ''],
      [from('web.billing'), mtls, ''],
      [from('evil.default', 'api.default'), mtls, 'api.default'],
      ['', mtls, ''],
    ];
    for (const [extra, identity, source] of cases) {
      const { outcome, answer } = await tunnel(extra, identity);
      assert.equal(answer, 'HTTP/1.1 200 OK\r\n\r\nok', `${extra} from ${identity}`);
      assert.equal(outcome.result, 'allowed');
      assert.equal(outcome.source, source, `${extra} from ${identity}`);
    }
    assert.deepEqual(received, Array(cases.length).fill('early late'), 'the app got only the bytes behind the head');
  } finally {
    await new Promise((r) => app.close(r));
  }
});
