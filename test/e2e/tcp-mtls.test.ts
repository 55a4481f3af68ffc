// TCP services through the destination's proxy: a caller's `--upstream` port tunnels (HTTP/1.1
// CONNECT, so the callers run `--peer-transport http1`; peer-transport.test.ts covers CONNECT streams
// under the default h2) over mutual TLS to the workload's inbound listener, which authorizes the connection by
// the caller's SPIFFE ID and port before the app ever sees it, and relays only to its own app ports.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { ID, assertRoundTrip, counter, issue, startTcpApp, tcpExchange } from './tcp-apps.js';
import { eventually, rawExchange, runWeft, startControl, startProxyWith, type RunningControl, type RunningProxy, joinToken as token, applyYaml as apply, proxyMetrics as metrics } from './harness.js';


const SERVICE = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: db }
spec:
  selector: { app: db }
  ports: [{ name: sql, port: 9000, protocol: TCP }, { name: report, port: 9001, protocol: TCP }]
`;





/** A raw TLS exchange with a client certificate: writes `bytes`, half-closes, reads until the peer closes (at most `ms`). */
function tlsExchange(port: number, id: { cert: string; key: string }, bytes: string, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const options: ConnectionOptions & { allowHalfOpen: boolean } = { host: '127.0.0.1', port, cert: id.cert, key: id.key, rejectUnauthorized: false, allowHalfOpen: true };
    const s = tlsConnect(options);
    const timer = setTimeout(() => s.destroy(), ms);
    s.on('secureConnect', () => s.end(bytes));
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}






describe('TCP through the destination proxy over mutual TLS', () => {
  let cp: RunningControl;
  let sql: Awaited<ReturnType<typeof startTcpApp>>;
  let report: Awaited<ReturnType<typeof startTcpApp>>;
  let bystander: Awaited<ReturnType<typeof startTcpApp>>;
  let server: RunningProxy;
  let client: RunningProxy;
  let intruder: RunningProxy;
  const proxies: RunningProxy[] = [];
  const port = (p: RunningProxy, servicePort: 9000 | 9001): number => p.upstreams[`db.default:${servicePort}`]!;

  /** The caller's connection is cut with nothing from the app, and the app saw no connection at all. */
  async function refusedAtAccept(caller: RunningProxy, servicePort: 9000 | 9001): Promise<void> {
    const app = servicePort === 9000 ? sql : report;
    const before = app.accepts;
    const r = await tcpExchange(port(caller, servicePort), 'let me in', 4000);
    assert.equal(r.timedOut, false, 'closed, not left hanging');
    assert.equal(r.data.length, 0, `no byte from the app: ${r.data.toString()}`);
    // Give a wrongly opened app connection time to show up before counting.
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(app.accepts, before, 'the app never saw the connection');
  }

  before(async () => {
    cp = await startControl();
    sql = await startTcpApp('echo');
    report = await startTcpApp('report');
    bystander = await startTcpApp('echo');
    await apply(cp, SERVICE);
    const upstreams = ['--upstream', 'db:9000=0', '--upstream', 'db:9001=0'];
    server = await startProxyWith(['--control-plane', cp.url, '--workload', 'db-1', '--app-port', `sql=${sql.port}`, '--app-port', `report=${report.port}`, '--label', 'app=db', '--service-account', 'db', '--token', await token(cp, 'db'), '-q']);
    proxies.push(server);
    // A workload that claims to be `sa/other` but whose proxy port is db-1's: a caller must refuse it.
    await apply(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: liar }
spec: { selector: { app: liar }, ports: [{ name: sql, port: 7000, protocol: TCP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: liar-1, labels: { app: liar } }
spec: { address: 127.0.0.1, ports: { sql: ${sql.port} }, serviceAccount: other, proxy: { inboundPort: ${server.inbound} } }
`,
    );
    client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--register', '--service-account', 'client', '--token', await token(cp, 'client'), '--peer-transport', 'http1', ...upstreams, '--upstream', 'liar:7000=0', '-q']);
    proxies.push(client);
    intruder = await startProxyWith(['--control-plane', cp.url, '--workload', 'intruder', '--register', '--service-account', 'intruder', '--token', await token(cp, 'intruder'), '--peer-transport', 'http1', ...upstreams, '-q']);
    proxies.push(intruder);
    for (const p of [client, intruder]) {
      await eventually(async () => (await tcpExchange(port(p, 9000), 'ping', 2000)).data.toString() === 'ping', 15_000, 'TCP through the mesh');
    }
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await Promise.all([sql?.close(), report?.close(), bystander?.close()]);
    await cp?.stop();
  });

  test('bytes round-trip through the tunnel: 4 MiB intact, and a half-close carried end to end', async () => {
    await assertRoundTrip(port(client, 9000), port(client, 9001));
  });

  test('the traffic is mutual TLS with the exact peer identity, and a plaintext CONNECT to a STRICT inbound is refused', async () => {
    const s = await metrics(server);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="allowed",policy=""}') >= 3, s);
    assert.ok(counter(s, 'weft_inbound_connections_total{security="mtls"}') >= 3);
    const c = await metrics(client);
    assert.ok(counter(c, 'weft_outbound_tcp_connections_total{destination_service="db.default:9000",transport="mtls",error_code=""}') >= 2, c);
    assert.equal(counter(c, 'weft_outbound_tcp_connections_total{destination_service="db.default:9000",transport="direct",error_code=""}'), 0, 'never straight to the app');

    // The caller checks the destination proxy's SPIFFE ID against the endpoint's, exactly.
    let before = sql.accepts;
    const lied = await tcpExchange(client.upstreams['liar.default:7000']!, 'secret', 4000);
    assert.equal(lied.data.length, 0);
    assert.equal(lied.timedOut, false);
    assert.equal(sql.accepts, before);
    assert.equal(counter(await metrics(client), 'weft_outbound_tcp_connections_total{destination_service="liar.default:7000",transport="mtls",error_code="UPSTREAM_TLS_FAILURE"}'), 1);

    before = sql.accepts;
    const plain = await rawExchange(server.inbound, `CONNECT 127.0.0.1:${sql.port} HTTP/1.1\r\nHost: 127.0.0.1:${sql.port}\r\n\r\nhello`);
    assert.match(plain.text, /^HTTP\/1\.1 403 /);
    assert.match(plain.text, /weft-error: MTLS_REQUIRED\r\n/);
    assert.ok(plain.closed);
    assert.equal(sql.accepts, before);
  });

  test('the inbound relays only to its own app ports: no open relay, malformed CONNECTs get 400', async () => {
    const probe = issue(cp, 'probe');
    const before = { sql: sql.accepts, bystander: bystander.accepts };
    const ask = (target: string, extra = ''): Promise<string> => tlsExchange(server.inbound, probe, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${extra}\r\n`);
    for (const target of [`127.0.0.1:${bystander.port}`, 'example.com:80', `localhost:${sql.port}`, `127.0.0.2:${sql.port}`, `127.0.0.1:${server.admin}`]) {
      const text = await ask(target);
      assert.match(text, /^HTTP\/1\.1 404 /, `${target}: ${text}`);
      assert.match(text, /weft-error: NO_ROUTE\r\n/);
      assert.match(text, /only to its own workload's app ports/);
    }
    for (const [target, extra] of [['/etc/passwd', ''], ['127.0.0.1', ''], [`127.0.0.1:${sql.port}`, 'content-length: 5\r\n'], [`127.0.0.1:99999`, '']] as const) {
      const text = await ask(target, extra);
      assert.match(text, /^HTTP\/1\.1 400 /, `${target}: ${text}`);
      assert.match(text, /weft-error: BAD_REQUEST\r\n/);
    }
    assert.equal(bystander.accepts, before.bystander, 'the other server on loopback was never dialled');
    assert.equal(sql.accepts, before.sql);

    // Bytes sent right behind the CONNECT head belong to the tunnel, not to HTTP.
    const t = `127.0.0.1:${sql.port}`;
    const through = await tlsExchange(server.inbound, probe, `CONNECT ${t} HTTP/1.1\r\nHost: ${t}\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(through, 'HTTP/1.1 200 OK\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(sql.accepts, before.sql + 1);
    const s = await metrics(server);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="no_route",policy=""}') >= 5);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="bad_request",policy=""}') >= 4, s);
  });

  test('AuthorizationPolicy: allow by identity and port, default deny, DENY wins; refused at accept', async () => {
    await apply(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: db-clients }
spec:
  targetRefs: [{ kind: Service, name: db }]
  rules:
  - from: [{ identities: ["${ID('client')}"] }]
    to: [{ ports: [9000] }]
  # Needs an HTTP method: never matches a TCP connection (as in Istio), so it lets the intruder in nowhere.
  - from: [{ identities: ["${ID('intruder')}"] }]
    to: [{ methods: [GET] }]
`,
    );
    await eventually(async () => (await tcpExchange(port(intruder, 9000), 'x', 2000)).data.length === 0, 10_000, 'the ALLOW policy in force');
    assert.equal((await tcpExchange(port(client, 9000), 'allowed')).data.toString(), 'allowed');
    await refusedAtAccept(intruder, 9000);
    // The policy covers every port of db; `to.ports` lets the client reach only 9000.
    await refusedAtAccept(client, 9001);
    await refusedAtAccept(intruder, 9001);
    let s = await metrics(server);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="allowed",policy="default/db-clients"}') >= 1, s);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="denied",policy=""}') >= 3, s);
    const c = await metrics(client);
    assert.ok(counter(c, 'weft_outbound_tcp_connections_total{destination_service="db.default:9001",transport="mtls",error_code="DENIED"}') >= 1, c);

    // A DENY wins over the ALLOW; its HTTP-only `paths` condition does not narrow it for TCP.
    await apply(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-client }
spec:
  targetRefs: [{ kind: Service, name: db }]
  action: DENY
  rules:
  - from: [{ identities: ["${ID('client')}"] }]
    to: [{ ports: [9000], paths: ["/admin/*"] }]
`,
    );
    await eventually(async () => (await tcpExchange(port(client, 9000), 'x', 2000)).data.length === 0, 10_000, 'the DENY policy in force');
    await refusedAtAccept(client, 9000);
    s = await metrics(server);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="denied",policy="default/no-client"}') >= 1, s);

    // With both policies gone every caller gets through again.
    assert.equal((await runWeft(['delete', 'authz', 'no-client'], cp.url)).code, 0);
    assert.equal((await runWeft(['delete', 'authz', 'db-clients'], cp.url)).code, 0);
    await eventually(async () => (await tcpExchange(port(intruder, 9001), 'abc', 2000)).data.toString() === 'got 3 bytes', 10_000, 'allow-all again');
  });

  test('with mTLS DISABLED the tunnel is plaintext CONNECT, still through the destination proxy', async () => {
    await apply(cp, 'apiVersion: weft.dev/v1alpha1\nkind: Mesh\nmetadata: { name: mesh }\nspec: { mtls: { mode: DISABLED } }\n');
    const plaintext = 'weft_outbound_tcp_connections_total{destination_service="db.default:9000",transport="plaintext",error_code=""}';
    await eventually(async () => {
      await tcpExchange(port(client, 9000), 'p', 2000);
      return counter(await metrics(client), plaintext) > 0;
    }, 10_000, 'a plaintext tunnel');
    assert.equal((await tcpExchange(port(client, 9000), 'plain')).data.toString(), 'plain');
    const s = await metrics(server);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="plaintext",result="allowed",policy=""}') >= 1, s);
  });
});
