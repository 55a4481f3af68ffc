// WebSocket (an HTTP/1.1 Upgrade) through two proxies, routed and authorized like any request and
// then carried as bytes over the mTLS connection between them; and CONNECT on the outbound listener
// (an app's HTTPS_PROXY) to mesh Service ports, TCP or HTTP, as opaque TCP through the destination's
// proxy — never anywhere else.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, request, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { eventually, rawExchange, startControl, startEcho, startProxyWith, type RunningControl, type RunningProxy, joinToken as token, applyYaml as apply, proxyMetrics as metrics } from './harness.js';

const ID = (sa: string): string => `spiffe://cluster.local/ns/default/sa/${sa}`;

const SERVICES = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: chat }
spec: { selector: { app: backend }, ports: [{ name: ws, port: 80 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: plain }
spec: { selector: { app: backend }, ports: [{ name: plain, port: 80 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: secure }
spec: { selector: { app: backend }, ports: [{ name: https, port: 8443, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: secure-tcp }
spec: { selector: { app: backend }, ports: [{ name: https, port: 9443, protocol: TCP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: tcp-echo }
spec: { selector: { app: backend }, ports: [{ name: echo, port: 9000, protocol: TCP }] }
`;




/** The sum of every series of `name` whose labels include all of `labels`. */
function total(text: string, name: string, labels: string[]): number {
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.lastIndexOf('} ');
    if (labels.every((l) => line.slice(0, close).includes(l))) n += Number(line.slice(close + 2));
  }
  return n;
}

async function listen(server: Server | HttpServer | HttpsServer): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** Closes a server and every connection it still holds. */
function closeAll(server: Server | HttpServer | HttpsServer, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((r) => server.close(() => r()));
}

function track(server: Server | HttpServer | HttpsServer, sockets: Set<Socket>): void {
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
}

/** The chat app: a `ws` server that greets, then echoes every message as it came (text or binary); plain GETs answered too. */
async function startChat(): Promise<{ port: number; handshakes: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const http = createHttpServer((req, res) => res.end(`chat says hello to ${req.url}`));
  const sockets = new Set<Socket>();
  track(http, sockets);
  const wss = new WebSocketServer({ server: http, maxPayload: 8 * 1024 * 1024 });
  const handshakes: IncomingHttpHeaders[] = [];
  wss.on('connection', (ws, req) => {
    handshakes.push(req.headers);
    ws.on('error', () => {});
    ws.send('welcome');
    ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  });
  const port = await listen(http);
  return {
    port,
    handshakes,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
      await closeAll(http, sockets);
    },
  };
}

/** A TCP echo that counts the connections it accepts. */
async function startCountingEcho(): Promise<{ port: number; accepts: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer({ allowHalfOpen: true }, (s) => {
    app.accepts++;
    s.on('error', () => {});
    s.pipe(s);
  });
  track(server, sockets);
  const app = { port: await listen(server), accepts: 0, close: () => closeAll(server, sockets) };
  return app;
}

/** A self-signed certificate for the names `secure` and `secure-tcp`, made by openssl. */
function selfSigned(): Promise<{ cert: string; key: string; certFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-e2e-tls-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256', '-days', '1', '-subj', '/CN=secure', '-addext', 'subjectAltName=DNS:secure,DNS:secure-tcp', '-keyout', keyFile, '-out', certFile];
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 20_000 }, (err, _out, stderr) => {
      if (err !== null) reject(new Error(`openssl failed: ${stderr}`));
      else resolve({ cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile });
    });
  });
}

/** Runs curl with no proxy settings from the environment; at most 15 s. */
function curl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env };
  for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy']) delete env[k];
  return new Promise((resolve) => {
    execFile('curl', ['--max-time', '10', ...args], { env, timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A WebSocket through the proxy's outbound port, open and greeted; or the HTTP answer it got instead. */
type Opened = { ws: WebSocket } | { status: number; error: string | undefined; body: string };

function openWs(outbound: number, url: string): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { createConnection: () => connect(outbound, '127.0.0.1'), maxPayload: 8 * 1024 * 1024 });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${url}: no greeting within 10 s`));
    }, 10_000);
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode!, error: res.headers['weft-error'] as string | undefined, body });
      });
    });
    ws.once('message', (data) => {
      clearTimeout(timer);
      if (String(data) !== 'welcome') reject(new Error(`first message ${String(data)}`));
      else resolve({ ws });
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function mustOpen(outbound: number, url: string): Promise<WebSocket> {
  const o = await openWs(outbound, url);
  assert.ok('ws' in o, `${url}: ${JSON.stringify(o)}`);
  return o.ws;
}

/** Sends every message and checks each comes back, in order, with its type. */
async function echoes(ws: WebSocket, messages: Array<string | Buffer>): Promise<void> {
  const got: Array<{ data: Buffer; binary: boolean }> = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${messages.length} echoes within 30 s`)), 30_000);
    const onMessage = (data: WebSocket.RawData, binary: boolean): void => {
      got.push({ data: data as Buffer, binary });
      if (got.length === messages.length) {
        clearTimeout(timer);
        ws.off('message', onMessage);
        resolve();
      }
    };
    ws.on('message', onMessage);
    for (const m of messages) ws.send(m);
  });
  messages.forEach((m, i) => {
    assert.equal(got[i]!.binary, typeof m !== 'string', `message ${i} kept its type`);
    assert.ok(got[i]!.data.equals(typeof m === 'string' ? Buffer.from(m) : m), `message ${i} came back intact`);
  });
}

function closeWs(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no close handshake within 5 s')), 5000);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
    ws.close(1000, 'bye');
  });
}

/** A client-to-server WebSocket text frame (masked, as a client must). */
function maskedText(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i]! ^ mask[i % 4]!;
  return out;
}

/** Opens a raw connection, writes `bytes`, and collects what comes back until `until` holds, the peer closes, or `ms` pass. */
function rawUntil(port: number, bytes: Buffer | string, until: (got: Buffer) => boolean, ms = 5000): Promise<{ got: Buffer; socket: Socket; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    let closed = false;
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      resolve({ got, socket, closed });
    };
    const timer = setTimeout(done, ms);
    const onData = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      if (until(got)) done();
    };
    socket.on('data', onData);
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      done();
    });
    socket.write(bytes);
  });
}

/** A GET through the proxy's outbound port for `host`; status and body (status 0 on a transport error). */
function get(outbound: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: outbound, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.setTimeout(5000, () => req.destroy());
    req.end();
  });
}

const headEnd = (b: Buffer): number => b.indexOf('\r\n\r\n');

describe('WebSocket through two proxies, and CONNECT on the outbound listener', () => {
  let cp: RunningControl;
  let chat: Awaited<ReturnType<typeof startChat>>;
  let plain: Awaited<ReturnType<typeof startEcho>>;
  let echo: Awaited<ReturnType<typeof startCountingEcho>>;
  let https: HttpsServer;
  const httpsSockets = new Set<Socket>();
  let httpsPort = 0;
  let certFile = '';
  let server: RunningProxy;
  let client: RunningProxy;
  const proxies: RunningProxy[] = [];

  before(async () => {
    cp = await startControl();
    chat = await startChat();
    plain = await startEcho('plain');
    echo = await startCountingEcho();
    const tls = await selfSigned();
    certFile = tls.certFile;
    https = createHttpsServer({ cert: tls.cert, key: tls.key }, (req, res) => res.end(`secure hello ${req.url}`));
    track(https, httpsSockets);
    httpsPort = await listen(https);
    await apply(cp, SERVICES);
    const ports = ['--app-port', `ws=${chat.port}`, '--app-port', `plain=${plain.port}`, '--app-port', `https=${httpsPort}`, '--app-port', `echo=${echo.port}`];
    server = await startProxyWith(['--control-plane', cp.url, '--workload', 'backend-1', ...ports, '--label', 'app=backend', '--service-account', 'backend', '--token', await token(cp, 'backend'), '-q']);
    proxies.push(server);
    client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--register', '--service-account', 'client', '--token', await token(cp, 'client'), '-q']);
    proxies.push(client);
    await eventually(async () => {
      const r = await get(client.outbound, 'plain', '/');
      return r.status === 200 && r.body.includes('"name":"plain"');
    }, 15_000, 'HTTP through the mesh');
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await Promise.all([chat?.close(), plain?.close(), echo?.close(), https === undefined ? undefined : closeAll(https, httpsSockets)]);
    await cp?.stop();
  });

  test('a ws client talks to a ws server through both proxies: text, binary, 1 MiB, clean close; mTLS between the proxies', async () => {
    const ws = await mustOpen(client.outbound, 'ws://chat/room?x=1');
    const messages: Array<string | Buffer> = [];
    for (let i = 0; i < 100; i++) messages.push(i % 2 === 0 ? `text message ${i} ${'é'.repeat(i)}` : randomBytes(1 + i * 37));
    messages.push(randomBytes(1024 * 1024), 'after the big one');
    await echoes(ws, messages);
    assert.deepEqual(await closeWs(ws), { code: 1000, reason: 'bye' });

    const seen = chat.handshakes.at(-1)!;
    assert.equal(seen.upgrade, 'websocket');
    assert.equal(seen.connection, 'upgrade');
    assert.equal(seen['weft-app-port'], undefined, 'the inbound removed its routing header');
    assert.equal(seen['x-forwarded-for'], '127.0.0.1, 127.0.0.1', 'a request like any other: each hop appends its peer');

    const s = await metrics(server);
    assert.ok(total(s, 'weft_inbound_connections_total', ['security="mtls"']) >= 1, s);
    assert.equal(total(s, 'weft_inbound_connections_total', ['security="plaintext"']), 0);
    assert.equal(total(s, 'weft_requests_total', ['direction="inbound"', 'response_code="101"']), 1, `the upgrade counts as one inbound request with status 101:\n${s}`);
    const c = await metrics(client);
    assert.equal(total(c, 'weft_requests_total', ['direction="outbound"', 'destination_service="chat.default"', 'response_code="101"']), 1, c);
  });

  test('bytes right behind the Upgrade head belong to the upgraded stream; hop-by-hop fields never cross', async () => {
    const head = [
      'GET /raw HTTP/1.1', 'Host: chat', 'Connection: keep-alive, Upgrade, x-hop', 'x-hop: secret', 'Keep-Alive: timeout=5',
      'Upgrade: websocket', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', '', '',
    ].join('\r\n');
    // The frame goes out with the head, before any 101: it must reach the app as WebSocket bytes.
    const r = await rawUntil(client.outbound, Buffer.concat([Buffer.from(head), maskedText('early bird')]), (b) => b.includes('early bird'));
    r.socket.destroy();
    const end = headEnd(r.got);
    assert.ok(end > 0, r.got.toString('latin1'));
    const response = r.got.subarray(0, end).toString('latin1');
    assert.match(response, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(response, /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
    assert.match(response, /\r\nconnection: upgrade\r\n/);
    assert.match(response, /\r\nupgrade: websocket(\r\n|$)/);
    assert.equal(response.match(/\r\nconnection:/gi)?.length, 1);
    assert.doesNotMatch(response, /content-length|transfer-encoding/i);
    const after = r.got.subarray(end + 4).toString('latin1');
    assert.ok(after.includes('welcome') && after.includes('early bird'), JSON.stringify(after));
    const seen = chat.handshakes.at(-1)!;
    assert.equal(seen['x-hop'], undefined);
    assert.equal(seen['keep-alive'], undefined);
    assert.equal(seen.connection, 'upgrade');
  });

  test('an open WebSocket\'s upstream connection is never reused: plain requests meanwhile go elsewhere, and both keep working', async () => {
    const ws = await mustOpen(client.outbound, 'ws://chat/busy');
    for (let i = 0; i < 5; i++) {
      assert.equal((await get(client.outbound, 'chat', `/plain-${i}`)).body, `chat says hello to /plain-${i}`);
    }
    await echoes(ws, ['still here', randomBytes(70_000)]);
    assert.deepEqual(await closeWs(ws), { code: 1000, reason: 'bye' });
    assert.equal((await get(client.outbound, 'chat', '/after')).body, 'chat says hello to /after');
  });

  test('an upstream that answers 200 instead of 101: an ordinary response, and the connection goes on as HTTP', async () => {
    const o = await openWs(client.outbound, 'ws://plain/no-ws');
    assert.ok(!('ws' in o));
    assert.equal(o.status, 200);
    assert.match(o.body, /"url":"\/no-ws"/);
    const seen = plain.seen.find((s) => s.url === '/no-ws')!;
    assert.equal(seen.headers.upgrade, 'websocket', 'the upgrade was offered to the app');

    // On one connection: an upgrade that is answered 200, then an ordinary request.
    const upgrade = 'GET /first HTTP/1.1\r\nHost: plain\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    const r = await rawUntil(client.outbound, upgrade, (b) => b.includes('"url":"/first"'));
    assert.match(r.got.toString('latin1'), /^HTTP\/1\.1 200 OK\r\n/);
    const second = await new Promise<string>((resolve) => {
      let text = '';
      r.socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (text.includes('"url":"/second"')) resolve(text);
      });
      setTimeout(() => resolve(text), 5000);
      r.socket.write('GET /second HTTP/1.1\r\nHost: plain\r\n\r\n');
    });
    r.socket.destroy();
    assert.match(second, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(second.match(/HTTP\/1\.1/g)?.length, 1);
  });

  test('an h2c upgrade is not forwarded: the request goes on without it', async () => {
    const r = await rawExchange(client.outbound, 'GET /h2c HTTP/1.1\r\nHost: plain\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 200 OK\r\n/);
    const seen = plain.seen.find((s) => s.url === '/h2c')!;
    assert.equal(seen.headers.upgrade, undefined);
    assert.equal(seen.headers['http2-settings'], undefined);
    assert.notEqual(seen.headers.connection, 'upgrade');
  });

  test('CONNECT to a TCP service port: raw bytes both ways, with the bytes sent behind the CONNECT head', async () => {
    const before = echo.accepts;
    const r = await rawUntil(client.outbound, 'CONNECT tcp-echo:9000 HTTP/1.1\r\nHost: tcp-echo:9000\r\n\r\nearly bytes', (b) => b.includes('early bytes'));
    assert.match(r.got.toString('latin1'), /^HTTP\/1\.1 200 Connection Established\r\n\r\nearly bytes$/);
    const big = randomBytes(512 * 1024);
    const back = await new Promise<Buffer>((resolve) => {
      const parts: Buffer[] = [];
      r.socket.on('data', (c: Buffer) => parts.push(c));
      r.socket.on('end', () => resolve(Buffer.concat(parts)));
      setTimeout(() => resolve(Buffer.concat(parts)), 10_000);
      r.socket.end(big);
    });
    r.socket.destroy();
    assert.equal(back.length, big.length);
    assert.ok(back.equals(big), '512 KiB came back intact, then the half-close');
    assert.equal(echo.accepts, before + 1);
    const c = await metrics(client);
    assert.ok(total(c, 'weft_outbound_tcp_connections_total', ['destination_service="tcp-echo.default:9000"', 'transport="mtls"', 'error_code=""']) >= 1, c);
    const s = await metrics(server);
    assert.ok(total(s, 'weft_inbound_tcp_connections_total', ['security="mtls"', 'result="allowed"']) >= 1, s);
  });

  test('curl through HTTPS_PROXY reaches an HTTPS app, end-to-end TLS, on a port declared TCP and on one declared HTTP', async () => {
    for (const url of ['https://secure-tcp:9443/tcp-port', 'https://secure:8443/http-port', 'https://secure.default.svc.cluster.local:8443/long']) {
      // The certificate names `secure` and `secure-tcp` only: the long name goes without the name check.
      const trust = new URL(url).hostname.includes('.') ? ['--insecure'] : ['--cacert', certFile];
      const r = await curl(['-sS', '-p', '-x', `http://127.0.0.1:${client.outbound}`, ...trust, url]);
      assert.equal(r.code, 0, `${url}: ${r.stderr}`);
      assert.equal(r.stdout, `secure hello ${new URL(url).pathname}`);
    }
    const c = await metrics(client);
    assert.ok(total(c, 'weft_outbound_tcp_connections_total', ['destination_service="secure-tcp.default:9443"', 'transport="mtls"', 'error_code=""']) >= 1, c);
    assert.ok(total(c, 'weft_outbound_tcp_connections_total', ['destination_service="secure.default:8443"', 'transport="mtls"', 'error_code=""']) >= 2, c);
  });

  test('CONNECT to anything but a mesh service port is 404 NO_ROUTE; a malformed CONNECT is 400', async () => {
    const before = { echo: echo.accepts };
    for (const target of ['example.com:443', `127.0.0.1:${echo.port}`, `127.0.0.1:${server.admin}`, `localhost:${echo.port}`, 'tcp-echo:9001', 'chat.other:80']) {
      const r = await rawExchange(client.outbound, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      assert.match(r.text, /^HTTP\/1\.1 404 /, `${target}: ${r.text}`);
      assert.match(r.text, /\r\nweft-error: NO_ROUTE\r\n/);
      assert.ok(r.closed);
    }
    for (const [target, extra] of [['tcp-echo', ''], ['/tcp-echo:9000', ''], ['tcp-echo:0', ''], ['tcp-echo:99999', ''], ['http://tcp-echo:9000', ''], ['tcp-echo:9000', 'Content-Length: 3\r\n']] as const) {
      const r = await rawExchange(client.outbound, `CONNECT ${target} HTTP/1.1\r\nHost: tcp-echo:9000\r\n${extra}\r\nabc`);
      assert.match(r.text, /^HTTP\/1\.1 400 /, `${target}: ${r.text}`);
      assert.match(r.text, /\r\nweft-error: BAD_REQUEST\r\n/);
      assert.ok(r.closed);
    }
    assert.equal(echo.accepts, before.echo, 'nothing was dialled');
    // curl sees the refusal as a failed tunnel.
    const r = await curl(['-sS', '-p', '-x', `http://127.0.0.1:${client.outbound}`, '--insecure', 'https://example.com/']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /404/);
  });

  test('an upgraded connection silent both ways for the listener\'s idle timeout is closed; one in use is not', async () => {
    const idler = await startProxyWith(['--control-plane', cp.url, '--workload', 'idler', '--register', '--service-account', 'idler', '--token', await token(cp, 'idler'), '--idle-timeout', '800ms', '-q']);
    proxies.push(idler);
    await eventually(async () => (await get(idler.outbound, 'chat', '/ready')).status === 200, 15_000, 'the idler proxy configured');
    const busy = await mustOpen(idler.outbound, 'ws://chat/busy-line');
    const quiet = await mustOpen(idler.outbound, 'ws://chat/quiet-line');
    const quietClosed = new Promise<number>((resolve) => quiet.once('close', (code) => resolve(code)));
    const t0 = Date.now();
    // Traffic on one line every 300 ms for 2 s: it stays open while the silent one is cut.
    while (Date.now() - t0 < 2000) {
      await echoes(busy, [`tick ${Date.now() - t0}`]);
      await new Promise((r) => setTimeout(r, 300));
    }
    const code = await Promise.race([quietClosed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
    assert.equal(code, 1006, 'the silent WebSocket was cut (no close frame: the proxy closed the connection)');
    assert.equal(busy.readyState, WebSocket.OPEN);
    assert.deepEqual(await closeWs(busy), { code: 1000, reason: 'bye' });
  });

  test('AuthorizationPolicy: a denied WebSocket path gets 403 before upgrading; a denied CONNECT gets 403 DENIED and never reaches the app', async () => {
    await apply(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-admin-chat }
spec:
  targetRefs: [{ kind: Service, name: chat }]
  action: DENY
  rules:
  - to: [{ paths: ["/admin", "/admin/*"] }]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-echo-for-client }
spec:
  targetRefs: [{ kind: Service, name: tcp-echo }]
  action: DENY
  rules:
  - from: [{ identities: ["${ID('client')}"] }]
`,
    );
    await eventually(async () => {
      const o = await openWs(client.outbound, 'ws://chat/admin');
      if ('ws' in o) o.ws.terminate();
      return !('ws' in o) && o.status === 403;
    }, 10_000, 'the DENY policy in force');
    const handshakes = chat.handshakes.length;
    const o = await openWs(client.outbound, 'ws://chat/admin/console');
    assert.ok(!('ws' in o));
    assert.equal(o.status, 403);
    assert.equal(o.error, 'DENIED');
    assert.match(o.body, /no-admin-chat/);
    assert.equal(chat.handshakes.length, handshakes, 'the app never saw the handshake');
    // Other paths still upgrade.
    const ws = await mustOpen(client.outbound, 'ws://chat/lobby');
    await echoes(ws, ['allowed']);
    await closeWs(ws);

    await eventually(async () => (await rawExchange(client.outbound, 'CONNECT tcp-echo:9000 HTTP/1.1\r\nHost: tcp-echo:9000\r\n\r\n')).text.startsWith('HTTP/1.1 403'), 10_000, 'the TCP DENY in force');
    const before = echo.accepts;
    const r = await rawExchange(client.outbound, 'CONNECT tcp-echo.default:9000 HTTP/1.1\r\nHost: tcp-echo.default:9000\r\n\r\nlet me in');
    assert.match(r.text, /^HTTP\/1\.1 403 /);
    assert.match(r.text, /\r\nweft-error: DENIED\r\n/);
    assert.match(r.text, /no-echo-for-client/);
    assert.ok(r.closed);
    assert.equal(echo.accepts, before, 'refused at accept: the app saw no connection');
    const c = await metrics(client);
    assert.ok(total(c, 'weft_outbound_tcp_connections_total', ['destination_service="tcp-echo.default:9000"', 'error_code="DENIED"']) >= 1, c);
  });
});
