import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { constants, createSecureServer, createServer, type Http2Server, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { createServer as netServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as tlsServerPlain } from 'node:tls';
import { MeshError } from '../../core/errors.js';
import { createRootCertificate, generateKey, issueLeafCertificate, keyToPem } from '../../core/identity/x509.js';
import { Body } from '../body.js';
import { abortContext, newRequestContext, type ProxyRequest, type RequestContext } from '../message.js';
import { WeftHttp2Pool } from './upstream.js';

function context(fields: Partial<RequestContext> = {}): RequestContext {
  return newRequestContext({ direction: 'outbound', requestId: 'r', start: 0, ...fields });
}

function get(path: string, headers: string[] = []): ProxyRequest {
  return { method: 'GET', path, authority: 'app', headers, body: null };
}

/** The body's bytes and trailers. */
function readAll(b: Body | null): Promise<{ bytes: Buffer; trailers: string[] | null }> {
  return new Promise((resolve, reject) => {
    if (b === null) return resolve({ bytes: Buffer.alloc(0), trailers: null });
    const parts: Buffer[] = [];
    b.pipe({ data: (c) => (parts.push(c), true), end: (trailers) => resolve({ bytes: Buffer.concat(parts), trailers }), error: reject });
  });
}

async function listen<T extends Http2Server | Http2SecureServer | Server>(server: T): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** Closes a server and every session it still has. */
function shut(server: Http2Server | Http2SecureServer, sessions: Set<ServerHttp2Session>): Promise<void> {
  for (const s of sessions) s.destroy();
  return new Promise((r) => server.close(() => r()));
}

function h2c(handler: (stream: ServerHttp2Stream, headers: Record<string, string | string[] | undefined>) => void, settings = {}): { server: Http2Server; sessions: Set<ServerHttp2Session> } {
  const server = createServer({ settings });
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (s: ServerHttp2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    handler(stream, headers);
  });
  return { server, sessions };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('GET: the head as flat fields, pseudo-headers first, forbidden fields left out; the response head and body', async () => {
  let seen: string[] = [];
  const { server, sessions } = h2c((stream, headers) => {
    seen = Object.keys(headers);
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': 5, 'x-who': String(headers['x-who']) + '|' + String(headers.connection) });
    stream.end('hello');
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const ctx = context();
    const res = await pool.request(get('/a?b=1', ['x-who', 'me', 'connection', 'close', 'host', 'h', 'te', 'gzip']), ctx, 1000);
    assert.equal(res.status, 200);
    assert.equal(res.headers[res.headers.indexOf('x-who') + 1], 'me|undefined');
    assert.equal(res.headers.indexOf('content-length'), -1, 'framing is written again downstream');
    assert.equal(res.body!.length, 5);
    assert.equal((await readAll(res.body)).bytes.toString(), 'hello');
    assert.deepEqual(seen.slice(0, 4), [':method', ':scheme', ':authority', ':path']);
    assert.ok(!seen.includes('te') && !seen.includes('host'));
    assert.equal(ctx.upstreamHost, `127.0.0.1:${port}`);
    await sleep(10);
    assert.equal(pool.active, 0);
    assert.equal(pool.total, 1);
    assert.equal(pool.idleCount, 1);
    // A HEAD keeps its content-length; a response with no body has none.
    const head = await pool.request({ ...get('/'), method: 'HEAD' }, context(), 1000);
    assert.equal(head.body, null);
    assert.equal(head.headers[head.headers.indexOf('content-length') + 1], '5');
    assert.equal(sessions.size, 1, 'one session for both');
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

test('POST of 1 MiB streamed in pieces is echoed back whole (flow control both ways)', async () => {
  const { server, sessions } = h2c((stream) => {
    stream.respond({ ':status': 200 });
    stream.pipe(stream);
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const piece = Buffer.alloc(64 * 1024);
    for (let i = 0; i < piece.length; i++) piece[i] = (i * 7) & 0xff;
    const body = new Body(-1);
    const sent = createHash('sha256');
    const res = pool.request({ method: 'POST', path: '/echo', authority: 'app', headers: [], body }, context(), 5000);
    for (let i = 0; i < 16; i++) {
      const c = Buffer.from(piece);
      c[0] = i;
      sent.update(c);
      body.push(c);
      await sleep(1);
    }
    body.end(null);
    const r = await res;
    const got = await readAll(r.body);
    assert.equal(got.bytes.length, 1 << 20);
    assert.equal(createHash('sha256').update(got.bytes).digest('hex'), sent.digest('hex'));
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

test('gRPC-like: request trailers reach the server, response trailers come back', async () => {
  let requestTrailers: Record<string, unknown> | null = null;
  const { server, sessions } = h2c((stream, headers) => {
    assert.equal(headers.te, 'trailers');
    const parts: Buffer[] = [];
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('trailers', (t) => (requestTrailers = t));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
      stream.end(Buffer.concat(parts));
    });
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const msg = Buffer.concat([Buffer.from([0, 0, 0, 0, 3]), Buffer.from('abc')]);
    const body = new Body(-1);
    body.push(msg);
    body.end(['x-req-trailer', 'yes']);
    const res = await pool.request({ method: 'POST', path: '/pkg.Svc/Call', authority: 'app', headers: ['content-type', 'application/grpc', 'te', 'trailers'], body }, context(), 1000);
    const got = await readAll(res.body);
    assert.deepEqual(got.bytes, msg);
    assert.deepEqual(got.trailers, ['grpc-status', '0', 'grpc-message', 'ok']);
    assert.equal((requestTrailers as Record<string, unknown> | null)?.['x-req-trailer'], 'yes');
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

test('300 concurrent exchanges against maxConcurrentStreams 100: a session per 100, the limit kept, all answered', async () => {
  let open = 0;
  let peak = 0;
  const perSession = new Map<object, number>();
  let peakPerSession = 0;
  const { server, sessions } = h2c((stream) => {
    open++;
    peak = Math.max(peak, open);
    const n = (perSession.get(stream.session!) ?? 0) + 1;
    perSession.set(stream.session!, n);
    peakPerSession = Math.max(peakPerSession, n);
    setTimeout(() => {
      open--;
      perSession.set(stream.session!, perSession.get(stream.session!)! - 1);
      stream.respond({ ':status': 200 });
      stream.end('ok');
    }, 30);
  }, { maxConcurrentStreams: 100 });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const results = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => pool.request(get(`/${i}`), context(), 5000).then((r) => readAll(r.body).then(() => r.status))));
    const ok = results.filter((r) => r.status === 'fulfilled' && r.value === 200).length;
    console.log(`# 300 concurrent: ${ok} ok, ${perSession.size} sessions, peak ${peak} open streams, ${peakPerSession} on one session`);
    assert.equal(ok, 300, JSON.stringify(results.find((r) => r.status === 'rejected')));
    assert.ok(peakPerSession <= 100, `at most 100 streams per session (saw ${peakPerSession})`);
    assert.ok(perSession.size >= 2 && perSession.size <= 8, `more sessions when one is full (${perSession.size})`);
    assert.ok(peak > 100, 'the extra sessions carried streams at the same time');
    assert.equal(pool.active, 0);
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

test('GOAWAY mid-run: streams above its last stream id are sent again on a new session; the rest finish', async () => {
  const held: ServerHttp2Stream[] = [];
  let arrived = 0;
  let goneAway = false;
  const { server, sessions } = h2c((stream) => {
    arrived++;
    if (goneAway) {
      stream.respond({ ':status': 200 });
      stream.end('second session');
      return;
    }
    held.push(stream);
    if (held.length === 20) {
      goneAway = true;
      // Only the first 10 streams (ids 1..19) were taken; 11..20 are refused unprocessed.
      stream.session!.goaway(constants.NGHTTP2_NO_ERROR, held[9]!.id!);
      for (const s of held.slice(0, 10)) {
        s.respond({ ':status': 200 });
        s.end('first session');
      }
    }
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const bodies = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.request(i % 2 === 0 ? get(`/${i}`) : { method: 'POST', path: `/${i}`, authority: 'app', headers: [], body: Body.of(Buffer.from('x')) }, context(), 5000).then(async (r) => (await readAll(r.body)).bytes.toString())));
    const first = bodies.filter((b) => b === 'first session').length;
    const second = bodies.filter((b) => b === 'second session').length;
    console.log(`# GOAWAY: ${first} answered on the first session, ${second} retried on a second; ${arrived} streams seen by the server`);
    assert.equal(first, 10);
    assert.equal(second, 10);
    assert.equal(arrived, 30);
    assert.equal(pool.active, 0);
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

test('upstream killed: the socket destroyed mid-exchange is UPSTREAM_RESET; a closed port is UPSTREAM_CONNECT_FAILURE', async () => {
  let streams = 0;
  const sockets: Socket[] = [];
  const { server, sessions } = h2c(() => {
    streams++;
    for (const s of sockets.splice(0)) s.destroy();
  });
  server.on('connection', (s: Socket) => sockets.push(s));
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const post = { method: 'POST', path: '/', authority: 'app', headers: [], body: Body.of(Buffer.from('x')) };
    await assert.rejects(pool.request(post, context(), 1000), (err: MeshError) => err.code === 'UPSTREAM_RESET');
    assert.equal(streams, 1, 'a POST is not sent again');
    await assert.rejects(pool.request(get('/'), context(), 1000), (err: MeshError) => err.code === 'UPSTREAM_RESET');
    const total = streams as number;
    console.log(`# upstream killed: ${total - 1} streams seen for the GET`);
    assert.ok(total === 2 || total === 3, `a GET is sent again at most once (${total - 1} streams)`);
    assert.equal(pool.active, 0);
  } finally {
    pool.close();
    await shut(server, sessions);
  }
  const gone = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  await assert.rejects(gone.request(get('/'), context(), 1000), (err: MeshError) => err.code === 'UPSTREAM_CONNECT_FAILURE' && /connect to 127\.0\.0\.1:\d+ failed: ECONNREFUSED/.test(err.message));
  assert.equal(gone.connectFailures, 1);
  assert.equal(gone.active, 0);
});

test('timeouts: no head (UPSTREAM_TIMEOUT), a stalled stream (STREAM_IDLE_TIMEOUT), a peer that never sends SETTINGS (connect)', async () => {
  const resets: number[] = [];
  const { server, sessions } = h2c((stream, headers) => {
    stream.on('close', () => resets.push(stream.rstCode));
    if (headers[':path'] === '/stall-body') {
      stream.respond({ ':status': 200 });
      stream.write('part');
    }
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  const mute = netServer((s: Socket) => s.on('error', () => {}));
  const mutePort = await listen(mute);
  try {
    const t0 = performance.now();
    await assert.rejects(pool.request(get('/never'), context(), 100), (err: MeshError) => err.code === 'UPSTREAM_TIMEOUT' && /within 100 ms/.test(err.message));
    assert.ok(performance.now() - t0 < 1000);
    await assert.rejects(pool.request(get('/never'), context(), 0, 100), (err: MeshError) => err.code === 'STREAM_IDLE_TIMEOUT' && /sent no response for 100 ms/.test(err.message));
    const res = await pool.request(get('/stall-body'), context(), 1000, 100);
    await assert.rejects(readAll(res.body), (err: MeshError) => err.code === 'STREAM_IDLE_TIMEOUT' && /sent no response bytes/.test(err.message));
    await sleep(50);
    assert.deepEqual(resets, [constants.NGHTTP2_CANCEL, constants.NGHTTP2_CANCEL, constants.NGHTTP2_CANCEL], 'each stream cut with CANCEL');
    assert.equal(pool.active, 0);
    const silent = new WeftHttp2Pool('127.0.0.1', mutePort, { connectTimeoutMs: 150, idleTimeoutMs: 5000 });
    await assert.rejects(silent.request(get('/'), context(), 1000), (err: MeshError) => err.code === 'UPSTREAM_CONNECT_FAILURE' && /timed out after 150 ms/.test(err.message));
    assert.equal(silent.connectFailures, 1);
  } finally {
    pool.close();
    mute.close();
    await shut(server, sessions);
  }
});

test('the client leaving resets the upstream stream with CANCEL; 1xx heads go to ctx.interim', async () => {
  const codes: number[] = [];
  const { server, sessions } = h2c((stream, headers) => {
    stream.on('close', () => codes.push(stream.rstCode));
    if (headers[':path'] === '/early-hints') {
      stream.additionalHeaders({ ':status': 103, link: '</a.css>; rel=preload' });
      stream.respond({ ':status': 200 });
      stream.end('done');
      return;
    }
    stream.respond({ ':status': 200 });
    stream.write('first');
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const interim: Array<[number, string[]]> = [];
    const res = await pool.request(get('/early-hints'), context({ interim: (status, headers) => interim.push([status, headers]) }), 1000);
    assert.equal((await readAll(res.body)).bytes.toString(), 'done');
    assert.deepEqual(interim, [[103, ['link', '</a.css>; rel=preload']]]);

    const ctx = context();
    const streaming = await pool.request(get('/stream'), ctx, 1000);
    const failed = readAll(streaming.body);
    abortContext(ctx, new MeshError('CLIENT_CLOSED', 'the client went away'));
    await assert.rejects(failed, /went away/);
    await sleep(50);
    assert.deepEqual(codes, [constants.NGHTTP2_NO_ERROR, constants.NGHTTP2_CANCEL]);
    assert.equal(pool.active, 0);
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

test('idle timeout closes an unused session; close() lets streams in flight finish', async () => {
  const { server, sessions } = h2c((stream) => {
    setTimeout(() => {
      stream.respond({ ':status': 200 });
      stream.end('late');
    }, 50);
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 100 });
  try {
    await readAll((await pool.request(get('/'), context(), 1000)).body);
    assert.equal(sessions.size, 1);
    assert.equal(pool.idleCount, 1);
    for (let i = 0; i < 50 && sessions.size > 0; i++) await sleep(20);
    assert.equal(sessions.size, 0, 'the idle session was closed');
    assert.equal(pool.idleCount, 0);
    const inFlight = pool.request(get('/'), context(), 1000);
    await sleep(20);
    pool.close();
    assert.equal((await readAll((await inFlight).body)).bytes.toString(), 'late');
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

// ---- mTLS ---------------------------------------------------------------------------------------

const HOUR = 3600_000;
const now = Date.now();
const rootKey = generateKey();
const rootPem = createRootCertificate({ key: rootKey, trustDomain: 'cluster.local', commonName: 'test root', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
const root = new X509Certificate(rootPem);
function workload(id: string): { key: string; cert: string } {
  const key = generateKey();
  const leaf = issueLeafCertificate({ publicKey: createPublicKey(key), spiffeId: id, issuerCert: root, issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + HOUR) });
  return { key: keyToPem(key), cert: leaf.pem };
}
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/db';
const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/web';

function tlsServer(): { server: Http2SecureServer; sessions: Set<ServerHttp2Session> } {
  const id = workload(SERVER_ID);
  const server = createSecureServer({ ...id, ca: rootPem, requestCert: true, rejectUnauthorized: true });
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (s: ServerHttp2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end(`resumed=${(stream.session!.socket as unknown as { isSessionReused(): boolean }).isSessionReused()}`);
  });
  return { server, sessions };
}

test('mTLS: the expected SPIFFE ID works (ALPN h2, session resumption); a wrong one is UPSTREAM_TLS_FAILURE; no h2 is UPSTREAM_PROTOCOL_ERROR', async () => {
  const { server, sessions } = tlsServer();
  const port = await listen(server);
  const client = workload(CLIENT_ID);
  const ctxTls = createSecureContext({ ...client, ca: rootPem });
  const good = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 2000, idleTimeoutMs: 5000, tls: { peerIdentity: SERVER_ID, context: () => ctxTls } });
  const wrong = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 2000, idleTimeoutMs: 5000, tls: { peerIdentity: 'spiffe://cluster.local/ns/default/sa/other', context: () => ctxTls } });
  // A TLS server with no ALPN at all: the handshake succeeds, HTTP/2 is not agreed.
  const h1 = tlsServerPlain({ ...workload(SERVER_ID), ca: rootPem, requestCert: true }, (s) => s.on('error', () => {}));
  const h1Port = await listen(h1);
  const noH2 = new WeftHttp2Pool('127.0.0.1', h1Port, { connectTimeoutMs: 2000, idleTimeoutMs: 5000, tls: { peerIdentity: SERVER_ID, context: () => ctxTls } });
  try {
    const res = await good.request(get('/'), context(), 2000);
    assert.equal((await readAll(res.body)).bytes.toString(), 'resumed=false');
    // A new session resumes the TLS session.
    for (const s of sessions) s.destroy();
    await sleep(50);
    const again = await good.request(get('/'), context(), 2000);
    assert.equal((await readAll(again.body)).bytes.toString(), 'resumed=true');
    await assert.rejects(wrong.request(get('/'), context(), 2000), (err: MeshError) => err.code === 'UPSTREAM_TLS_FAILURE' && err.message.includes(`the peer's certificate is for ${SERVER_ID}, not spiffe://cluster.local/ns/default/sa/other`));
    assert.equal(wrong.connectFailures, 1);
    await assert.rejects(noH2.request(get('/'), context(), 2000), (err: MeshError) => err.code === 'UPSTREAM_PROTOCOL_ERROR' && /did not agree to HTTP\/2/.test(err.message));
  } finally {
    good.close();
    wrong.close();
    noH2.close();
    await new Promise((r) => h1.close(r));
    await shut(server, sessions);
  }
});

test('a plaintext session is replaced once the proxy has its certificate', async () => {
  const { server, sessions } = h2c((stream) => {
    stream.respond({ ':status': 200 });
    stream.end('plain');
  });
  const port = await listen(server);
  let tls: ReturnType<typeof createSecureContext> | null = null;
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000, tls: { peerIdentity: SERVER_ID, context: () => tls } });
  try {
    assert.equal((await readAll((await pool.request(get('/'), context(), 1000)).body)).bytes.toString(), 'plain');
    tls = createSecureContext({ ...workload(CLIENT_ID), ca: rootPem });
    // The plaintext server cannot speak TLS: the failure shows the pool did not reuse the plaintext session.
    await assert.rejects(pool.request(get('/'), context(), 1000), (err: MeshError) => err.code === 'UPSTREAM_TLS_FAILURE' || err.code === 'UPSTREAM_CONNECT_FAILURE');
    for (let i = 0; i < 50 && sessions.size > 0; i++) await sleep(20);
    assert.equal(sessions.size, 0, 'the plaintext session went away');
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});

test('connect(): a CONNECT stream on the session, which stays open while it is (past the idle timeout), then closes; a closed port rejects', async () => {
  let seen: Record<string, string | string[] | undefined> = {};
  const { server, sessions } = h2c((stream, headers) => {
    seen = headers;
    stream.respond({ ':status': 200 });
    stream.pipe(stream); // an echo, half-close included
  });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 100 });
  try {
    const stream = await pool.connect('127.0.0.1:5432', ['weft-service', 'db.default:9000']);
    let closed = -1;
    // The pool counts the stream with its onClose: whoever takes the stream over calls it too.
    const poolClose = stream.onClose;
    stream.onClose = (code) => {
      closed = code;
      poolClose?.(code);
    };
    const head = await new Promise<string[]>((r) => (stream.onHeaders = (f) => r(f)));
    assert.equal(head[1], '200');
    assert.equal(seen[':method'], 'CONNECT');
    assert.equal(seen[':authority'], '127.0.0.1:5432');
    assert.equal(seen[':path'], undefined);
    assert.equal(seen['weft-service'], 'db.default:9000');
    await sleep(300);
    assert.equal(sessions.size, 1, 'an open tunnel keeps its session past the idle timeout');
    assert.equal(pool.idleCount, 0);
    const parts: Buffer[] = [];
    stream.onData = (c) => parts.push(c);
    const ended = new Promise<void>((r) => (stream.onEnd = () => r()));
    stream.end(Buffer.from('ping'));
    await ended;
    assert.equal(Buffer.concat(parts).toString(), 'ping');
    await sleep(20);
    assert.equal(closed, 0);
    assert.equal(pool.idleCount, 1);
    await sleep(300);
    assert.equal(sessions.size, 0, 'idle once the tunnel closed: the session went away');
  } finally {
    pool.close();
    await shut(server, sessions);
  }
  const gone = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 100 });
  await assert.rejects(gone.connect('127.0.0.1:5432', []), (e: MeshError) => e.code === 'UPSTREAM_CONNECT_FAILURE');
});

test("a request head over the upstream's SETTINGS_MAX_HEADER_LIST_SIZE is not sent: HEADERS_OVER_PEER_LIMIT (502), the session goes on", async () => {
  let streams = 0;
  const { server, sessions } = h2c((stream) => {
    streams++;
    stream.respond({ ':status': 200 });
    stream.end('ok');
  }, { maxHeaderListSize: 4096 });
  const port = await listen(server);
  const pool = new WeftHttp2Pool('127.0.0.1', port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    // The first request opens the session (and learns its SETTINGS).
    assert.equal((await pool.request(get('/warm'), context(), 1000)).status, 200);
    const err = await pool.request(get('/big', ['x-big', 'z'.repeat(5000)]), context(), 1000).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof MeshError, String(err));
    assert.equal(err.code, 'HEADERS_OVER_PEER_LIMIT');
    assert.equal(err.status, 502);
    assert.match(err.message, /over the peer's SETTINGS_MAX_HEADER_LIST_SIZE of 4096/);
    // A body that was on its way is let go too.
    const body = Body.of(Buffer.from('payload'));
    const err2 = await pool.request({ method: 'POST', path: '/big', authority: 'app', headers: ['x-big', 'z'.repeat(5000)], body }, context(), 1000).then(() => null, (e: unknown) => e);
    assert.equal((err2 as MeshError).code, 'HEADERS_OVER_PEER_LIMIT');
    assert.equal((await pool.request(get('/after'), context(), 1000)).status, 200);
    assert.equal(streams, 2, 'the upstream saw only the requests that fit');
    assert.equal(sessions.size, 1);
    console.log(`# upstream header list limit 4096: 2 requests refused locally (${err.code}), ${streams} reached the upstream`);
  } finally {
    pool.close();
    await shut(server, sessions);
  }
});
