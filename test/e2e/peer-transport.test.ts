// `--peer-transport h2`: everything between two proxies on one mutual-TLS connection, multiplexed —
// HTTP/1.1 requests as HTTP/2 streams, TCP tunnels as HTTP/2 CONNECT streams (RFC 9113 8.5) — with
// the HTTP/1.1 semantics the callers and apps see unchanged, and the inbound deciding CONNECT
// streams exactly as HTTP/1.1 tunnels (own app ports only, AuthorizationPolicy before the app is
// dialled). Upgrades stay on HTTP/1.1 connections.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, createServer as createHttpServer, request, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2Connect, type ClientHttp2Session, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { ID, assertRoundTrip, counter, issue, startTcpApp, tcpExchange } from './tcp-apps.js';
import { applyYaml as apply, eventually, joinToken as token, proxyMetrics as metrics, runWeft, startControl, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';


const SERVICES = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: web }
spec: { selector: { app: srv }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: db }
spec:
  selector: { app: srv }
  ports: [{ name: sql, port: 9000, protocol: TCP }, { name: report, port: 9001, protocol: TCP }, { name: rst, port: 9002, protocol: TCP }]
`;


const MTLS_CONNECTIONS = 'weft_inbound_connections_total{security="mtls"}';

/** Whether a proxy that joined with a token holds the certificate of its mTLS config stream (its second). */
async function renewed(p: RunningProxy): Promise<boolean> {
  return (await (await fetch(`http://127.0.0.1:${p.admin}/config_dump`)).json()).identity?.renewals >= 1;
}

/** What the HTTP app saw of one request. */
interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: Record<string, string>;
}

/**
 * An HTTP/1.1 app: `/echo` answers JSON of what it received (with a hop-by-hop field of its own),
 * `/stream` a chunked body with a trailer, `/no-content` 204, `/not-modified` 304, `/slow?ms=N`
 * after a while (counting how many are in flight at once); `Expect: 100-continue` gets a
 * `100 Continue` from the app itself; an `Upgrade: echo` request switches to an echo of bytes.
 */
async function startHttpApp(): Promise<{ port: number; seen: SeenRequest[]; continues: number; maxInFlight: number; upgrades: number; close(): Promise<void> }> {
  let inFlight = 0;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const s: SeenRequest = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(parts).toString(), trailers: req.trailers as Record<string, string> };
      app.seen.push(s);
      const url = new URL(req.url!, 'http://x');
      if (url.pathname === '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('one,');
        setTimeout(() => {
          res.addTrailers({ 'x-checksum': 'sum-1' });
          res.end('two');
        }, 20);
        return;
      }
      if (url.pathname === '/no-content') {
        res.writeHead(204, { 'x-was': 'no-content' });
        res.end();
        return;
      }
      if (url.pathname === '/not-modified') {
        res.writeHead(304, { etag: '"v1"' });
        res.end();
        return;
      }
      const json = JSON.stringify(s);
      const reply = (): void => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), connection: 'x-private', 'x-private': 'hop', 'x-upstream': 'app' });
        res.end(json);
      };
      if (url.pathname === '/slow') {
        inFlight++;
        app.maxInFlight = Math.max(app.maxInFlight, inFlight);
        setTimeout(() => {
          inFlight--;
          reply();
        }, Number(url.searchParams.get('ms') ?? 100));
        return;
      }
      reply();
    });
  };
  const server = createHttpServer(handle);
  server.on('checkContinue', (req, res) => {
    app.continues++;
    res.writeContinue();
    handle(req, res);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    app.upgrades++;
    socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const app = {
    port: (server.address() as AddressInfo).port,
    seen: [] as SeenRequest[],
    continues: 0,
    maxInFlight: 0,
    upgrades: 0,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return app;
}




interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: Record<string, string>;
}

/** One HTTP/1.1 request to the client proxy's outbound port for `web`. */
function http(port: number, opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string | string[]; trailers?: Record<string, string>; agent?: Agent }): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/echo', headers: { host: 'web', ...opts.headers }, agent: opts.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, trailers: res.trailers as Record<string, string> }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (Array.isArray(opts.body)) {
      // No Content-Length: chunked, unknown length, written in pieces.
      for (const piece of opts.body) req.write(piece);
    } else if (opts.body !== undefined) {
      req.write(opts.body);
    }
    if (opts.trailers !== undefined) req.addTrailers(opts.trailers);
    req.end();
  });
}


/** An HTTP/2 CONNECT on a hand-made mTLS session: the answer's head, and what came back for `send` (END_STREAM after it). */
function h2Connect_(session: ClientHttp2Session, authority: string, send: string, extra: Record<string, string> = {}): Promise<{ status: number; headers: H2Headers; body: string }> {
  return new Promise((resolve, reject) => {
    const st = session.request({ ':method': 'CONNECT', ':authority': authority, ...extra }, { endStream: false });
    let headers: H2Headers = {};
    let body = '';
    const timer = setTimeout(() => {
      st.close();
      reject(new Error(`CONNECT ${authority}: no end within 4 s (${body})`));
    }, 4000);
    st.on('response', (h) => {
      headers = h;
      if (Number(h[':status']) === 200) st.end(send);
    });
    st.setEncoding('utf8');
    st.on('data', (c: string) => (body += c));
    st.on('error', () => {});
    st.on('close', () => {
      clearTimeout(timer);
      resolve({ status: Number(headers[':status'] ?? 0), headers, body });
    });
    st.on('end', () => {
      if (!st.closed && Number(headers[':status']) !== 200) st.close();
    });
  });
}

describe('--peer-transport h2: one multiplexed mTLS connection between proxies', () => {
  let cp: RunningControl;
  let web: Awaited<ReturnType<typeof startHttpApp>>;
  let sql: Awaited<ReturnType<typeof startTcpApp>>;
  let report: Awaited<ReturnType<typeof startTcpApp>>;
  let rst: Awaited<ReturnType<typeof startTcpApp>>;
  let bystander: Awaited<ReturnType<typeof startTcpApp>>;
  let server: RunningProxy;
  let client: RunningProxy;
  const proxies: RunningProxy[] = [];
  const upstreams = ['--upstream', 'db:9000=0', '--upstream', 'db:9001=0', '--upstream', 'db:9002=0'];
  const tcpPort = (p: RunningProxy, servicePort: number): number => p.upstreams[`db.default:${servicePort}`]!;

  before(async () => {
    cp = await startControl();
    [web, sql, report, rst, bystander] = await Promise.all([startHttpApp(), startTcpApp('echo'), startTcpApp('report'), startTcpApp('rst'), startTcpApp('echo')]);
    await apply(cp, SERVICES);
    server = await startProxyWith([
      '--control-plane', cp.url, '--workload', 'srv-1', '--label', 'app=srv', '--service-account', 'srv', '--token', await token(cp, 'srv'), '-q',
      '--app-port', `http=${web.port}`, '--app-port', `sql=${sql.port}`, '--app-port', `report=${report.port}`, '--app-port', `rst=${rst.port}`,
    ]);
    proxies.push(server);
    client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--register', '--service-account', 'client', '--token', await token(cp, 'client'), '--peer-transport', 'h2', ...upstreams, '-q']);
    proxies.push(client);
    // A proxy that joined with a token reconnects over mTLS and gets its certificate anew on that
    // stream; a session opened under the first one would be replaced (as after any renewal), so the
    // counts of connections below start once both hold their second certificate.
    await eventually(async () => (await renewed(server)) && (await renewed(client)), 15_000, 'both proxies on their mTLS-stream certificate');
    await eventually(async () => (await http(client.outbound, { path: '/echo' }).catch(() => null))?.status === 200, 15_000, 'HTTP through the mesh');
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await Promise.all([web?.close(), sql?.close(), report?.close(), rst?.close(), bystander?.close()]);
    await cp?.stop();
  });

  test('HTTP/1.1 semantics hold over the HTTP/2 hop: bodies both ways, chunked with trailers, HEAD, 204, 304, ids and hop-by-hop fields', async () => {
    // A body of known length, and the fields the inbound reads and removes.
    const posted = await http(client.outbound, { method: 'POST', path: '/echo?q=1', body: 'x'.repeat(100_000), headers: { 'content-type': 'text/plain', 'content-length': '100000', 'x-request-id': 'req-42', connection: 'x-secret', 'x-secret': 'no' } });
    assert.equal(posted.status, 200);
    assert.equal(posted.headers['x-upstream'], 'app');
    assert.equal(posted.headers['x-private'], undefined, 'the app\'s hop-by-hop field stays on its hop');
    const seen = JSON.parse(posted.body) as SeenRequest;
    assert.equal(seen.method, 'POST');
    assert.equal(seen.url, '/echo?q=1');
    assert.equal(seen.body.length, 100_000);
    assert.equal(seen.headers['content-length'], '100000');
    assert.equal(seen.headers['x-request-id'], 'req-42', 'the caller\'s request id is kept');
    assert.equal(seen.headers['x-secret'], undefined, 'fields named by Connection never cross');
    assert.equal(seen.headers['weft-app-port'], undefined, 'the inbound removes the app port field');
    assert.equal(seen.headers.host, 'web');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1, 127.0.0.1');
    assert.match(String(seen.headers['x-request-id']), /.+/);

    // Unknown length (chunked) with trailers, both ways.
    const chunked = await http(client.outbound, { method: 'PUT', path: '/echo', body: ['part one, ', 'part two'], trailers: { 'x-digest': 'd1' } });
    const c = JSON.parse(chunked.body) as SeenRequest;
    assert.equal(c.body, 'part one, part two');
    assert.equal(c.headers['transfer-encoding'], 'chunked');
    assert.deepEqual(c.trailers, { 'x-digest': 'd1' });
    const streamed = await http(client.outbound, { path: '/stream' });
    assert.equal(streamed.body, 'one,two');
    assert.equal(streamed.headers['transfer-encoding'], 'chunked');
    assert.deepEqual(streamed.trailers, { 'x-checksum': 'sum-1' });

    // HEAD keeps the length a GET would have, without a body; 204 and 304 have none either.
    const get = await http(client.outbound, { path: '/echo?same' });
    const head = await http(client.outbound, { method: 'HEAD', path: '/echo?same' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(get.body) + 1), 'HEAD: the length of the GET (whose echo says "GET" not "HEAD")');
    const none = await http(client.outbound, { path: '/no-content' });
    assert.equal(none.status, 204);
    assert.equal(none.headers['x-was'], 'no-content');
    assert.equal(none.body, '');
    const same = await http(client.outbound, { path: '/not-modified', headers: { 'if-none-match': '"v1"' } });
    assert.equal(same.status, 304);
    assert.equal(same.headers.etag, '"v1"');

    // Expect: 100-continue: the app's 100 Continue crosses the HTTP/2 hop, and only then is the body sent.
    const before = web.continues;
    const text = await new Promise<string>((resolve) => {
      const s = connect(client.outbound, '127.0.0.1');
      let got = '';
      let sent = false;
      const timer = setTimeout(() => s.destroy(), 4000);
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (!sent && got.startsWith('HTTP/1.1 100 ')) {
          sent = true;
          s.write('hello');
        }
        if (/\r\n\r\n\{.*\}$/s.test(got)) s.end();
      });
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(timer);
        resolve(got);
      });
      s.write('POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    });
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, text);
    assert.match(text, /"body":"hello"/);
    assert.equal(web.continues, before + 1, 'the app itself answered the expectation');

    const s = await metrics(server);
    assert.equal(counter(s, MTLS_CONNECTIONS), 1, `one mTLS connection between the proxies:\n${s}`);
  });

  test('many concurrent HTTP/1.1 requests ride one TLS connection between the proxies', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 40 });
    try {
      const results = await Promise.all(Array.from({ length: 120 }, (_, i) => http(client.outbound, { path: `/slow?ms=150&i=${i}`, agent, ...(i % 3 === 0 ? { method: 'POST', body: `body-${i}` } : {}) })));
      assert.ok(results.every((r) => r.status === 200), results.map((r) => r.status).join(','));
      for (let i = 0; i < results.length; i += 3) assert.equal((JSON.parse(results[i]!.body) as SeenRequest).body, `body-${i}`);
    } finally {
      agent.destroy();
    }
    assert.ok(web.maxInFlight >= 20, `requests were in flight together at the app (${web.maxInFlight})`);
    const s = await metrics(server);
    assert.equal(counter(s, MTLS_CONNECTIONS), 1, `still one mTLS connection:\n${s}`);
    const inbound200 = [...s.matchAll(/^weft_requests_total\{direction="inbound",[^}]*destination_service="web\.default",[^}]*route="inbound",response_code="200",grpc_status="",error_code="",mtls="true"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    assert.ok(inbound200 >= 120, s);
  });

  test('TCP tunnels are CONNECT streams on the same connection: 4 MiB intact, half-close carried, a reset passed on', async () => {
    // The report app answers only once it sees the caller's half-close (END_STREAM, then FIN).
    await assertRoundTrip(tcpPort(client, 9000), tcpPort(client, 9001));

    // Several tunnels and requests at once, on the one session.
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => tcpExchange(tcpPort(client, 9000), `tunnel-${i}`)));
    assert.deepEqual(many.map((m) => m.data.toString()), Array.from({ length: 10 }, (_, i) => `tunnel-${i}`));

    // The app resets its connection: RST_STREAM between the proxies, a reset for the caller.
    const cut = await tcpExchange(tcpPort(client, 9002), 'boom', 5000, true);
    assert.equal(cut.timedOut, false);
    assert.equal(cut.error, 'ECONNRESET');
    assert.equal(cut.ended, false);

    // The app's HTTPS_PROXY: CONNECT on the outbound listener rides the same session.
    const viaConnect = await new Promise<string>((resolve) => {
      const sock = connect(client.outbound, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => sock.destroy(), 4000);
      sock.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.endsWith('over connect')) sock.end();
      });
      sock.on('error', () => {});
      sock.on('close', () => {
        clearTimeout(timer);
        resolve(got);
      });
      sock.write('CONNECT db:9000 HTTP/1.1\r\nHost: db:9000\r\n\r\nover connect');
    });
    assert.equal(viaConnect, 'HTTP/1.1 200 Connection Established\r\n\r\nover connect');

    const s = await metrics(server);
    assert.equal(counter(s, MTLS_CONNECTIONS), 1, `HTTP and TCP on one mTLS connection:\n${s}`);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="allowed",policy=""}') >= 14, s);
    const c = await metrics(client);
    assert.ok(counter(c, 'weft_outbound_tcp_connections_total{destination_service="db.default:9000",transport="mtls",error_code=""}') >= 11, c);
  });

  test('the inbound takes HTTP/2 CONNECT only to its own app ports (no open relay); malformed ones get 400', async () => {
    const probe = issue(cp, 'probe');
    const session = h2Connect(`https://127.0.0.1:${server.inbound}`, { cert: probe.cert, key: probe.key, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    session.on('error', () => {});
    try {
      const before = { sql: sql.accepts, bystander: bystander.accepts };
      for (const target of [`127.0.0.1:${bystander.port}`, 'example.com:80', `localhost:${sql.port}`, `127.0.0.2:${sql.port}`, `127.0.0.1:${server.admin}`]) {
        const r = await h2Connect_(session, target, '');
        assert.equal(r.status, 404, `${target}: ${r.body}`);
        assert.equal(r.headers['weft-error'], 'NO_ROUTE');
        assert.match(r.body, /only to its own workload's app ports/);
      }
      for (const [target, extra] of [['127.0.0.1', {}], [`127.0.0.1:${sql.port}`, { 'content-length': '5' }], ['127.0.0.1:99999', {}]] as const) {
        const r = await h2Connect_(session, target, '', extra);
        assert.equal(r.status, 400, `${target}: ${r.body}`);
        assert.equal(r.headers['weft-error'], 'BAD_REQUEST');
      }
      assert.equal(bystander.accepts, before.bystander, 'the other server on loopback was never dialled');
      assert.equal(sql.accepts, before.sql);
      const ok = await h2Connect_(session, `127.0.0.1:${sql.port}`, 'GET / HTTP/1.1\r\n\r\n');
      assert.equal(ok.status, 200);
      assert.equal(ok.body, 'GET / HTTP/1.1\r\n\r\n', 'bytes of the stream are the tunnel\'s, never HTTP');
      assert.equal(sql.accepts, before.sql + 1);
    } finally {
      session.close();
    }
    const s = await metrics(server);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="no_route",policy=""}') >= 5, s);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="bad_request",policy=""}') >= 3, s);
  });

  test('AuthorizationPolicy refuses CONNECT streams by identity and port before the app sees a connection', async () => {
    const intruder = await startProxyWith(['--control-plane', cp.url, '--workload', 'intruder', '--register', '--service-account', 'intruder', '--token', await token(cp, 'intruder'), '--peer-transport', 'h2', ...upstreams, '-q']);
    proxies.push(intruder);
    await eventually(() => renewed(intruder), 15_000, 'the intruder on its mTLS-stream certificate');
    const connections = counter(await metrics(server), MTLS_CONNECTIONS);
    await eventually(async () => (await tcpExchange(tcpPort(intruder, 9000), 'ping', 2000)).data.toString() === 'ping', 15_000, 'the intruder reaches db before any policy');
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
`,
    );
    await eventually(async () => (await tcpExchange(tcpPort(intruder, 9000), 'x', 2000)).data.length === 0, 10_000, 'the ALLOW policy in force');
    assert.equal((await tcpExchange(tcpPort(client, 9000), 'allowed')).data.toString(), 'allowed');
    for (const [caller, servicePort, app] of [[intruder, 9000, sql], [client, 9001, report], [intruder, 9001, report]] as const) {
      const before = app.accepts;
      const r = await tcpExchange(tcpPort(caller, servicePort), 'let me in', 4000);
      assert.equal(r.timedOut, false, 'closed, not left hanging');
      assert.equal(r.data.length, 0);
      assert.equal(r.error, 'ECONNRESET', 'a refused tunnel resets the caller');
      await new Promise((res) => setTimeout(res, 50));
      assert.equal(app.accepts, before, 'the app never saw the connection');
    }
    // A CONNECT from the intruder's app to its sidecar gets the destination's refusal as an answer.
    const before = report.accepts;
    const refused = await new Promise<string>((resolve) => {
      const sock = connect(intruder.outbound, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => sock.destroy(), 4000);
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('error', () => {});
      sock.on('close', () => {
        clearTimeout(timer);
        resolve(got);
      });
      sock.write('CONNECT db:9001 HTTP/1.1\r\nHost: db:9001\r\n\r\n');
    });
    assert.match(refused, /^HTTP\/1\.1 403 /, refused);
    assert.match(refused, /weft-error: DENIED\r\n/);
    assert.match(refused, /spiffe:\/\/cluster.local\/ns\/default\/sa\/intruder may not connect to db.default:9001/);
    assert.equal(report.accepts, before);

    const s = await metrics(server);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="denied",policy=""}') >= 4, s);
    assert.ok(counter(s, 'weft_inbound_tcp_connections_total{security="mtls",result="allowed",policy="default/db-clients"}') >= 1, s);
    const c = await metrics(client);
    assert.ok(counter(c, 'weft_outbound_tcp_connections_total{destination_service="db.default:9001",transport="mtls",error_code="DENIED"}') >= 1, c);
    assert.equal(counter(s, MTLS_CONNECTIONS), connections + 1, 'the intruder\'s tunnels, allowed and refused, all on one connection');
    assert.equal((await runWeft(['delete', 'authz', 'db-clients'], cp.url)).code, 0);
  });

  test('an upgrade (WebSocket and the like) goes on an HTTP/1.1 connection, and HTTP keeps its session', async () => {
    const before = counter(await metrics(server), MTLS_CONNECTIONS);
    const text = await new Promise<string>((resolve) => {
      const s = connect(client.outbound, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => s.destroy(), 4000);
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\n') && !got.includes('ping')) s.write('ping');
        if (got.endsWith('ping')) s.end();
      });
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(timer);
        resolve(got);
      });
      s.write('GET /ws HTTP/1.1\r\nHost: web\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n');
    });
    assert.match(text, /^HTTP\/1\.1 101 /, text);
    assert.match(text, /upgrade: echo\r\n/i);
    assert.ok(text.endsWith('ping'), text);
    assert.equal(web.upgrades, 1);
    const s = await metrics(server);
    assert.equal(counter(s, MTLS_CONNECTIONS), before + 1, 'the upgrade took an HTTP/1.1 connection of its own');
    // Requests still go on the HTTP/2 session.
    assert.equal((await http(client.outbound, { path: '/echo?after' })).status, 200);
    assert.equal(counter(await metrics(server), MTLS_CONNECTIONS), before + 1);
  });
});
