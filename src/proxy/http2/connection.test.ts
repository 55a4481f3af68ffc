// The HTTP/2 connection layer against Node's own node:http2 (nghttp2) in both roles, against itself
// (cleartext and TLS with ALPN h2), against crafted bytes from a raw socket, and under h2load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { H2Connection, H2HeadTooLarge, headerListSize, type H2ConnectionOptions, type H2Stream } from './connection.js';
import { CLIENT_PREFACE, ErrorCode, Flag, FrameReader, FrameType, writeFrameHeader } from './frames.js';
import { HpackDecoder, HpackEncoder } from './hpack.js';

// ---- helpers -----------------------------------------------------------------------------------

interface Served {
  port: number;
  conns: H2Connection[];
  closes: Array<Error | null>;
  close(): Promise<void>;
}

/** Our server on a port from the OS; `onStream` handles every stream. */
async function serve(
  onStream: (s: H2Stream, fields: string[], endStream: boolean, conn: H2Connection) => void,
  extra: Partial<H2ConnectionOptions> = {},
  tls?: { key: string; cert: string },
): Promise<Served> {
  const conns: H2Connection[] = [];
  const closes: Array<Error | null> = [];
  const sockets = new Set<Socket>();
  const onSocket = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const conn: H2Connection = new H2Connection(socket, {
      role: 'server',
      ...extra,
      onStream: (s, f, e) => onStream(s, f, e, conn),
      onClose: (err) => closes.push(err),
    });
    conns.push(conn);
  };
  const server: Server = tls
    ? createTlsServer({ key: tls.key, cert: tls.cert, ALPNProtocols: ['h2'] }, onSocket)
    : createNetServer(onSocket);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    conns,
    closes,
    close: () =>
      new Promise<void>((r) => {
        for (const c of conns) c.destroy();
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

interface NodeAnswer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders | null;
}

/** One request through a node:http2 client session. */
function nodeRequest(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer | null,
  trailers?: http2.OutgoingHttpHeaders,
): Promise<NodeAnswer> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === null && trailers === undefined, waitForTrailers: trailers !== undefined });
    if (trailers !== undefined) req.on('wantTrailers', () => req.sendTrailers(trailers));
    let status = 0;
    let head: http2.IncomingHttpHeaders = {};
    let tr: http2.IncomingHttpHeaders | null = null;
    const parts: Buffer[] = [];
    req.on('response', (h) => {
      head = h;
      status = Number(h[':status']);
    });
    req.on('trailers', (t) => (tr = t));
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve({ status, headers: head, body: Buffer.concat(parts), trailers: tr }));
    req.on('error', reject);
    if (body !== null) req.end(body);
    else if (trailers !== undefined) req.end();
  });
}

/** Our client's answer to one request. */
interface OurAnswer {
  fields: string[];
  body: Buffer;
  trailers: string[] | null;
  code: number;
}

/** One request through our client connection; `body` is written with write()/onDrain backpressure. */
function ourRequest(conn: H2Connection, fields: string[], body: Buffer | null, trailers: string[] | null = null): Promise<OurAnswer> {
  return new Promise((resolve, reject) => {
    const s = conn.request(fields, body === null && trailers === null);
    const answer: OurAnswer = { fields: [], body: Buffer.alloc(0), trailers: null, code: -1 };
    const parts: Buffer[] = [];
    s.onHeaders = (f) => {
      if (f[1]!.startsWith('1')) return;
      answer.fields = f;
    };
    s.onData = (c) => parts.push(Buffer.from(c));
    s.onEnd = (t) => (answer.trailers = t);
    s.onClose = (code) => {
      answer.code = code;
      answer.body = Buffer.concat(parts);
      if (code === 0) resolve(answer);
      else reject(Object.assign(new Error(`stream ${s.id} closed with code ${code}`), { code }));
    };
    if (body === null && trailers === null) return;
    let off = 0;
    const CHUNK = 16384;
    const pump = (): void => {
      while (body !== null && off < body.length) {
        const c = body.subarray(off, off + CHUNK);
        off += c.length;
        if (!s.write(c)) return; // onDrain resumes
      }
      s.end(null, trailers);
    };
    s.onDrain = pump;
    pump();
  });
}

/** Our client connection to `port` (or over `socket`); resolves once the server's SETTINGS arrived. */
function ourClient(port: number, socket?: Socket | TLSSocket, extra: Partial<H2ConnectionOptions> = {}): Promise<{ conn: H2Connection; closed: Promise<Error | null> }> {
  return new Promise((resolve, reject) => {
    const sock = socket ?? netConnect(port, '127.0.0.1');
    let closedResolve!: (e: Error | null) => void;
    const closed = new Promise<Error | null>((r) => (closedResolve = r));
    let settled = false;
    const conn: H2Connection = new H2Connection(sock, {
      role: 'client',
      ...extra,
      onSettings: () => {
        if (!settled) {
          settled = true;
          resolve({ conn, closed });
        }
      },
      onClose: (err) => {
        closedResolve(err);
        if (!settled) {
          settled = true;
          reject(err ?? new Error('closed before SETTINGS'));
        }
      },
    });
  });
}

function nodeConnect(port: number, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`, { settings });
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

function closeSession(session: http2.ClientHttp2Session): Promise<void> {
  return new Promise((r) => {
    if (session.closed || session.destroyed) return r();
    session.close(() => r());
    setTimeout(() => {
      session.destroy();
      r();
    }, 2000).unref();
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function randomBody(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
}

/** An echo handler: the request body goes back as the response body, with backpressure both ways. */
function echo(s: H2Stream, fields: string[], endStream: boolean): void {
  s.respond([':status', '200', 'x-path', fields[fields.indexOf(':path') + 1]!], endStream);
  if (endStream) return;
  s.onData = (c) => {
    if (!s.write(Buffer.from(c))) s.pause();
  };
  s.onDrain = () => s.resume();
  s.onEnd = (t) => s.end(null, t);
}

/** Waits for `cond` (at most `ms`). */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- raw peer ----------------------------------------------------------------------------------

function frame(type: number, flags: number, id: number, payload: Buffer | number[] = []): Buffer {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const b = Buffer.alloc(9 + p.length);
  writeFrameHeader(b, 0, p.length, type, flags, id);
  p.copy(b, 9);
  return b;
}

/** A GET head from the static table: :method GET, :scheme http, :path /, :authority a. */
const GET_BLOCK = [0x82, 0x86, 0x84, 0x01, 0x01, 0x61];

interface RawFrame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A hand-driven client: preface + empty SETTINGS sent, every frame from the server recorded. */
async function rawPeer(port: number, preface = true): Promise<{ socket: Socket; frames: RawFrame[]; closed: () => boolean; send(b: Buffer): void; goaway(ms?: number): Promise<{ code: number; last: number; debug: string }> }> {
  const socket = netConnect(port, '127.0.0.1');
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
  socket.on('error', () => {});
  const frames: RawFrame[] = [];
  const reader = new FrameReader((type, flags, id, payload) => frames.push({ type, flags, id, payload: Buffer.from(payload) }), 1 << 24);
  let isClosed = false;
  socket.on('data', (c: Buffer) => reader.push(c));
  socket.on('close', () => (isClosed = true));
  if (preface) socket.write(Buffer.concat([CLIENT_PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
  return {
    socket,
    frames,
    closed: () => isClosed,
    send: (b) => {
      if (!socket.destroyed) socket.write(b);
    },
    goaway: async (ms = 3000) => {
      await until(() => frames.some((f) => f.type === FrameType.GOAWAY) && isClosed, ms, 'GOAWAY and close');
      const g = frames.find((f) => f.type === FrameType.GOAWAY)!;
      return { last: g.payload.readUInt32BE(0), code: g.payload.readUInt32BE(4), debug: g.payload.subarray(8).toString() };
    },
  };
}

function selfSigned(): Promise<{ key: string; cert: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-h2conn-'));
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256', '-days', '1', '-subj', '/CN=h2.test',
    '-addext', 'subjectAltName=DNS:h2.test', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')];
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 20_000 }, (err, _o, stderr) => {
      if (err !== null) reject(new Error(`openssl failed: ${stderr}`));
      else resolve({ key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') });
      rmSync(dir, { recursive: true, force: true });
    });
  });
}

// ---- our server, node:http2 client -------------------------------------------------------------

test('server: GET answered, HEADERS and DATA of a small answer in one socket write', async () => {
  let writes = 0;
  const srv = await serve((s, f, end) => {
    assert.equal(end, true);
    assert.equal(f[f.indexOf(':method') + 1], 'GET');
    s.respond([':status', '200', 'content-type', 'text/plain'], false);
    s.end(Buffer.from('hello h2'));
  });
  const session = await nodeConnect(srv.port);
  try {
    const a = await nodeRequest(session, { ':path': '/x', ':method': 'GET' }, null);
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'text/plain');
    assert.equal(a.body.toString(), 'hello h2');
    // Count socket writes of one more answer.
    const sock = (srv.conns[0] as unknown as { socket: Socket }).socket;
    const write = sock.write.bind(sock);
    sock.write = ((...args: Parameters<Socket['write']>) => {
      writes++;
      return write(...args);
    }) as Socket['write'];
    const b = await nodeRequest(session, { ':path': '/y' }, null);
    assert.equal(b.body.toString(), 'hello h2');
    assert.equal(writes, 1, 'HEADERS + DATA + END_STREAM in one write');
    console.log(`# server GET: 2 answers, second in ${writes} socket write`);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test('server: 2 MiB POST echoed through write()/onDrain, flow control both ways', async () => {
  const srv = await serve(echo);
  const session = await nodeConnect(srv.port);
  try {
    const body = randomBody(2 << 20);
    const t0 = performance.now();
    const a = await nodeRequest(session, { ':method': 'POST', ':path': '/echo' }, body);
    assert.equal(a.status, 200);
    assert.equal(a.body.length, body.length);
    assert.equal(sha(a.body), sha(body));
    console.log(`# server echo: ${body.length} bytes each way in ${(performance.now() - t0).toFixed(0)} ms`);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test('server: trailers both ways (gRPC-like)', async () => {
  let gotTrailers: string[] | null = null;
  const srv = await serve((s) => {
    const parts: Buffer[] = [];
    s.onData = (c) => parts.push(Buffer.from(c));
    s.onEnd = (t) => {
      gotTrailers = t;
      s.respond([':status', '200', 'content-type', 'application/grpc'], false);
      s.write(Buffer.concat(parts));
      s.end(null, ['grpc-status', '0', 'grpc-message', 'fine']);
    };
  });
  const session = await nodeConnect(srv.port);
  try {
    const a = await nodeRequest(session, { ':method': 'POST', ':path': '/svc/Method', 'content-type': 'application/grpc', te: 'trailers' }, Buffer.from('msg'), { 'x-client-trailer': 'yes' });
    assert.equal(a.status, 200);
    assert.equal(a.body.toString(), 'msg');
    assert.equal(a.trailers?.['grpc-status'], '0');
    assert.equal(a.trailers?.['grpc-message'], 'fine');
    assert.deepEqual(gotTrailers, ['x-client-trailer', 'yes']);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test('server: 200 concurrent streams over one connection with maxConcurrentStreams 100', async () => {
  let maxActive = 0;
  const srv = await serve(
    (s, _f, _e, conn) => {
      maxActive = Math.max(maxActive, conn.activeStreams);
      setTimeout(() => {
        s.respond([':status', '200'], false);
        s.end(Buffer.from(String(s.id)));
      }, 10);
    },
    { settings: { maxConcurrentStreams: 100 } },
  );
  const session = await nodeConnect(srv.port);
  try {
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => nodeRequest(session, { ':path': `/${i}` }, null)));
    const ok = results.filter((r) => r.status === 'fulfilled' && r.value.status === 200).length;
    console.log(`# server concurrency: ${ok}/200 succeeded, at most ${maxActive} streams open at once`);
    assert.equal(ok, 200);
    assert.ok(maxActive <= 100 && maxActive >= 50, `max open streams ${maxActive}`);
    assert.equal(srv.conns.length, 1);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test('server: header blocks larger than a frame, both ways (CONTINUATION)', async () => {
  const big = 'v'.repeat(40_000);
  let seen = '';
  const srv = await serve(
    (s, f) => {
      seen = f[f.indexOf('x-big') + 1] ?? '';
      s.respond([':status', '200', 'x-big-answer', big], true);
    },
    { settings: { maxHeaderListSize: 200_000 } },
  );
  const session = await nodeConnect(srv.port, { maxHeaderListSize: 200_000 });
  try {
    const a = await nodeRequest(session, { ':path': '/', 'x-big': big }, null);
    assert.equal(a.status, 200);
    assert.equal(seen.length, big.length);
    assert.equal(String(a.headers['x-big-answer']).length, big.length);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test('server: a client reset reaches onClose with CANCEL; the connection goes on', async () => {
  let closeCode = -1;
  let started!: () => void;
  const startedP = new Promise<void>((r) => (started = r));
  const srv = await serve((s, f) => {
    if (f[f.indexOf(':path') + 1] === '/hang') {
      s.onClose = (code) => (closeCode = code);
      started();
      return;
    }
    s.respond([':status', '204'], true);
  });
  const session = await nodeConnect(srv.port);
  try {
    const req = session.request({ ':path': '/hang' });
    req.on('error', () => {});
    await startedP;
    req.close(http2.constants.NGHTTP2_CANCEL);
    await until(() => closeCode !== -1, 2000, 'onClose');
    assert.equal(closeCode, ErrorCode.CANCEL);
    assert.equal(srv.conns[0]!.activeStreams, 0);
    const a = await nodeRequest(session, { ':path': '/after' }, null);
    assert.equal(a.status, 204);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test('server: graceful goaway lets the stream in flight finish, then closes', async () => {
  const srv = await serve((s, _f, _e, conn) => {
    conn.goaway();
    assert.equal(conn.closed, true);
    setTimeout(() => {
      s.respond([':status', '200'], false);
      s.end(Buffer.from('finished'));
    }, 50);
  });
  const session = await nodeConnect(srv.port);
  let goaway = -1;
  session.on('goaway', (code) => (goaway = code));
  session.on('error', () => {});
  try {
    const a = await nodeRequest(session, { ':path': '/' }, null);
    assert.equal(a.status, 200);
    assert.equal(a.body.toString(), 'finished');
    assert.equal(goaway, 0);
    await until(() => srv.closes.length === 1, 3000, 'connection close');
    assert.equal(srv.closes[0], null);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test('server: pause() stops the peer at the stream window; resume() lets the rest in', async () => {
  const WINDOW = 256 * 1024;
  let received = 0;
  let stream!: H2Stream;
  let ended = false;
  const srv = await serve(
    (s) => {
      stream = s;
      s.pause();
      s.onData = (c) => (received += c.length);
      s.onEnd = () => {
        ended = true;
        s.respond([':status', '200'], true);
      };
    },
    { settings: { initialWindowSize: WINDOW } },
  );
  const session = await nodeConnect(srv.port);
  try {
    const body = randomBody(2 << 20);
    const answer = nodeRequest(session, { ':method': 'POST', ':path': '/' }, body);
    await until(() => received >= WINDOW, 3000, 'the first window of data');
    await delay(300);
    const whilePaused = received;
    console.log(`# pause: ${whilePaused} bytes received while paused (window ${WINDOW})`);
    assert.ok(whilePaused <= WINDOW, `received ${whilePaused} > window ${WINDOW} while paused`);
    stream.resume();
    assert.equal((await answer).status, 200);
    assert.equal(received, body.length);
    assert.ok(ended);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

// ---- our client, node:http2 server -------------------------------------------------------------

interface NodeServed {
  port: number;
  server: http2.Http2Server;
  close(): Promise<void>;
}

async function nodeServer(onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, session: http2.ServerHttp2Session) => void, settings: http2.Settings = {}): Promise<NodeServed> {
  const server = http2.createServer({ settings });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (s, h) => {
    s.on('error', () => {});
    onStream(s, h, s.session as http2.ServerHttp2Session);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
}

const GET = (path: string): string[] => [':method', 'GET', ':scheme', 'http', ':path', path, ':authority', 'test'];
const POST = (path: string, ...extra: string[]): string[] => [':method', 'POST', ':scheme', 'http', ':path', path, ':authority', 'test', ...extra];

test('client: GET, big POST echo and trailers against node:http2', async () => {
  const srv = await nodeServer((s, h) => {
    if (h[':path'] === '/get') {
      s.respond({ ':status': 200, 'x-got': String(h[':authority']) });
      s.end('got it');
      return;
    }
    if (h[':path'] === '/echo') {
      s.respond({ ':status': 200 });
      s.pipe(s);
      return;
    }
    // gRPC-like: echo with trailers.
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'x-saw-trailer': String((s as unknown as { _trailers?: unknown })._trailers ?? 'n/a') }));
      s.end(Buffer.concat(parts));
    });
  });
  const { conn } = await ourClient(srv.port);
  try {
    const g = await ourRequest(conn, GET('/get'), null);
    assert.deepEqual(g.fields.slice(0, 2), [':status', '200']);
    assert.equal(g.fields[g.fields.indexOf('x-got') + 1], 'test');
    assert.equal(g.body.toString(), 'got it');

    const body = randomBody(2 << 20);
    const t0 = performance.now();
    const e = await ourRequest(conn, POST('/echo'), body);
    assert.equal(sha(e.body), sha(body));
    console.log(`# client echo: ${body.length} bytes each way in ${(performance.now() - t0).toFixed(0)} ms`);

    const t = await ourRequest(conn, POST('/grpc', 'content-type', 'application/grpc', 'te', 'trailers'), Buffer.from('m'), ['x-client-trailer', '1']);
    assert.equal(t.body.toString(), 'm');
    assert.ok(t.trailers !== null);
    assert.equal(t.trailers![t.trailers!.indexOf('grpc-status') + 1], '0');
    assert.equal(conn.activeStreams, 0);
  } finally {
    conn.destroy();
    await srv.close();
  }
});

test('client: our trailers reach node:http2', async () => {
  let seen: http2.IncomingHttpHeaders | null = null;
  const srv = await nodeServer((s) => {
    s.on('trailers', (t) => (seen = t));
    s.resume();
    s.on('end', () => {
      s.respond({ ':status': 200 });
      s.end();
    });
  });
  const { conn } = await ourClient(srv.port);
  try {
    await ourRequest(conn, POST('/t'), Buffer.from('x'), ['grpc-status', '0', 'x-t', 'v']);
    assert.equal(seen!['grpc-status'], '0');
    assert.equal(seen!['x-t'], 'v');
  } finally {
    conn.destroy();
    await srv.close();
  }
});

test("client: concurrent streams up to the server's limit, request() refuses beyond it", async () => {
  const srv = await nodeServer(
    (s) => {
      setTimeout(() => {
        s.respond({ ':status': 200 });
        s.end('ok');
      }, 20);
    },
    { maxConcurrentStreams: 50 },
  );
  const { conn } = await ourClient(srv.port);
  try {
    assert.equal(conn.peerMaxConcurrentStreams, 50);
    const all = Array.from({ length: 50 }, (_, i) => ourRequest(conn, GET(`/${i}`), null));
    assert.equal(conn.activeStreams, 50);
    assert.throws(() => conn.request(GET('/51'), true), /MAX_CONCURRENT_STREAMS \(50\)/);
    const answers = await Promise.all(all);
    assert.equal(answers.filter((a) => a.fields[1] === '200').length, 50);
    console.log('# client concurrency: 50/50 succeeded at the server limit of 50, the 51st refused by request()');
  } finally {
    conn.destroy();
    await srv.close();
  }
});

test('client: server GOAWAY — streams above lastStreamId get REFUSED_STREAM, the rest finish', async () => {
  const held: http2.ServerHttp2Stream[] = [];
  const srv = await nodeServer((s, _h, session) => {
    held.push(s);
    if (held.length === 3) {
      session.goaway(http2.constants.NGHTTP2_NO_ERROR, held[0]!.id!);
      setTimeout(() => {
        held[0]!.respond({ ':status': 200 });
        held[0]!.end('first');
      }, 30);
    }
  });
  let goaway: [number, number] | null = null;
  const { conn } = await ourClient(srv.port, undefined, { onGoaway: (code, last) => (goaway = [code, last]) });
  try {
    const results = await Promise.allSettled([1, 2, 3].map((i) => ourRequest(conn, GET(`/${i}`), null)));
    assert.deepEqual(goaway, [0, 1]);
    assert.equal(results[0]!.status, 'fulfilled');
    assert.equal((results[0] as PromiseFulfilledResult<OurAnswer>).value.body.toString(), 'first');
    for (const r of results.slice(1)) {
      assert.equal(r.status, 'rejected');
      assert.equal(((r as PromiseRejectedResult).reason as { code: number }).code, ErrorCode.REFUSED_STREAM);
    }
    assert.equal(conn.closed, true);
    assert.throws(() => conn.request(GET('/4'), true), /going away|closed/);
  } finally {
    conn.destroy();
    await srv.close();
  }
});

test('client: the connection dropping mid-stream closes open streams with CANCEL, onClose once', async () => {
  let opened = 0;
  const srv: Served = await serve((s, _f, _e, serverConn) => {
    s.respond([':status', '200'], false);
    s.write(Buffer.from('partial'));
    // The second stream: the server's socket goes away under both (no GOAWAY, no RST_STREAM).
    if (++opened === 2) setTimeout(() => (serverConn as unknown as { socket: Socket }).socket.destroy(), 20);
  });
  const { conn, closed } = await ourClient(srv.port);
  try {
    const a = ourRequest(conn, GET('/'), null);
    const b = ourRequest(conn, GET('/'), null);
    const results = await Promise.allSettled([a, b]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.equal(((r as PromiseRejectedResult).reason as { code: number }).code, ErrorCode.CANCEL);
    }
    assert.equal(await closed, null);
    assert.equal(conn.closed, true);
    assert.equal(conn.activeStreams, 0);
  } finally {
    conn.destroy();
    await srv.close();
  }
});

// ---- both roles ours ---------------------------------------------------------------------------

test('ours to ours: echo round trip over cleartext and over TLS with ALPN h2', async () => {
  const body = randomBody(300_000);
  const plain = await serve(echo);
  try {
    const { conn, closed } = await ourClient(plain.port);
    const a = await ourRequest(conn, POST('/plain'), body, ['x-end', '1']);
    assert.equal(sha(a.body), sha(body));
    assert.deepEqual(a.trailers, ['x-end', '1']);
    conn.goaway();
    assert.equal(await closed, null);
  } finally {
    await plain.close();
  }
  const cert = await selfSigned();
  const secure = await serve(echo, {}, cert);
  try {
    const sock = tlsConnect({ host: '127.0.0.1', port: secure.port, servername: 'h2.test', ca: cert.cert, ALPNProtocols: ['h2'] });
    await new Promise<void>((r, j) => sock.once('secureConnect', r).once('error', j));
    assert.equal(sock.alpnProtocol, 'h2');
    const { conn } = await ourClient(0, sock);
    const a = await ourRequest(conn, POST('/tls'), body);
    assert.equal(sha(a.body), sha(body));
    assert.equal(a.fields[a.fields.indexOf('x-path') + 1], '/tls');
    conn.destroy();
    console.log(`# ours<->ours: ${body.length} bytes echoed over cleartext and TLS (ALPN ${sock.alpnProtocol})`);
  } finally {
    await secure.close();
  }
});

// ---- protocol errors from a raw socket ---------------------------------------------------------

/** Our server answering every stream 200. */
const ok200 = (s: H2Stream): void => s.respond([':status', '200'], true);

async function expectGoaway(bytes: Buffer, code: number, what: RegExp, preface = true): Promise<void> {
  const srv = await serve(ok200);
  const peer = await rawPeer(srv.port, preface);
  try {
    peer.send(bytes);
    const g = await peer.goaway();
    assert.equal(g.code, code, `GOAWAY code ${g.code} (${g.debug})`);
    assert.match(g.debug, what);
    assert.equal(peer.closed(), true);
    await until(() => srv.closes.length === 1, 1000, 'onClose');
    assert.ok(srv.closes[0] instanceof Error);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
}

test('raw: a bad preface gets GOAWAY PROTOCOL_ERROR and close', async () => {
  await expectGoaway(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), ErrorCode.PROTOCOL_ERROR, /preface/, false);
});

test('raw: DATA on stream 0', async () => {
  await expectGoaway(frame(FrameType.DATA, 0, 0, [1, 2, 3]), ErrorCode.PROTOCOL_ERROR, /DATA frame on stream 0/);
});

test('raw: HEADERS with an even stream id', async () => {
  await expectGoaway(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 2, GET_BLOCK), ErrorCode.PROTOCOL_ERROR, /odd/);
});

test('raw: a frame over SETTINGS_MAX_FRAME_SIZE', async () => {
  await expectGoaway(frame(FrameType.DATA, 0, 1, Buffer.alloc(16385)), ErrorCode.FRAME_SIZE_ERROR, /16385/);
});

test('raw: WINDOW_UPDATE increment 0 on the connection', async () => {
  await expectGoaway(frame(FrameType.WINDOW_UPDATE, 0, 0, [0, 0, 0, 0]), ErrorCode.PROTOCOL_ERROR, /increment 0/);
});

test('raw: CONTINUATION without HEADERS, and another frame inside a header block', async () => {
  await expectGoaway(frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, GET_BLOCK), ErrorCode.PROTOCOL_ERROR, /without a HEADERS/);
  await expectGoaway(
    Buffer.concat([frame(FrameType.HEADERS, 0, 1, GET_BLOCK.slice(0, 3)), frame(FrameType.PING, 0, 0, Buffer.alloc(8))]),
    ErrorCode.PROTOCOL_ERROR,
    /CONTINUATION expected/,
  );
});

test('raw: more connection and stream state errors', async () => {
  const head = (id: number): Buffer => frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, GET_BLOCK);
  const u32 = (n: number): number[] => [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  await expectGoaway(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)), ErrorCode.FLOW_CONTROL_ERROR, /overflows/);
  await expectGoaway(frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, [0, 0, 0, 2, ...GET_BLOCK]), ErrorCode.PROTOCOL_ERROR, /PUSH_PROMISE/);
  await expectGoaway(frame(FrameType.WINDOW_UPDATE, 0, 5, u32(100)), ErrorCode.PROTOCOL_ERROR, /idle stream 5/);
  await expectGoaway(frame(FrameType.RST_STREAM, 0, 7, u32(8)), ErrorCode.PROTOCOL_ERROR, /idle stream 7/);
  // A lower id the client skipped was never open: a HEADERS there opens it out of order.
  await expectGoaway(Buffer.concat([head(3), frame(FrameType.HEADERS, Flag.END_HEADERS, 1, GET_BLOCK)]), ErrorCode.PROTOCOL_ERROR, /opens stream 1, lower than stream 3/);
  await expectGoaway(Buffer.concat([head(1), frame(FrameType.DATA, 0, 1, [1])]), ErrorCode.STREAM_CLOSED, /after both sides ended/);
  await expectGoaway(frame(FrameType.PING, 0, 0, [1, 2, 3]), ErrorCode.FRAME_SIZE_ERROR, /PING frame of 3 bytes/);
  await expectGoaway(frame(FrameType.SETTINGS, 0, 0, [0, 4, ...u32(0x80000000)]), ErrorCode.FLOW_CONTROL_ERROR, /INITIAL_WINDOW_SIZE/);
});

test('raw: padding and priority fields are removed; DATA beyond the stream window is a stream FLOW_CONTROL_ERROR', async () => {
  const got: Buffer[] = [];
  let closeCode = -1;
  const srv = await serve(
    (s, f) => {
      if (f[f.indexOf(':path') + 1] === '/') {
        s.onData = (c) => got.push(Buffer.from(c));
        s.onEnd = () => s.respond([':status', '200'], true);
        return;
      }
      s.pause(); // never returns its window
      s.onClose = (code) => (closeCode = code);
    },
    { settings: { initialWindowSize: 65535 } },
  );
  const peer = await rawPeer(srv.port);
  try {
    // HEADERS: pad length 4, priority (depends on 0, weight 16), block, 4 bytes of padding.
    const headers = [4, 0, 0, 0, 0, 15, ...GET_BLOCK, 0, 0, 0, 0];
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.PADDED | Flag.PRIORITY, 1, headers));
    peer.send(frame(FrameType.PRIORITY, 0, 1, [0, 0, 0, 0, 7]));
    peer.send(frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, 1, [3, 0x61, 0x62, 0, 0, 0]));
    await until(() => peer.frames.some((f) => f.id === 1), 2000, 'answer');
    assert.equal(Buffer.concat(got).toString(), 'ab');
    assert.equal(peer.frames.find((f) => f.id === 1)!.type, FrameType.HEADERS);
    // Stream 3 paused, window 65,535: the fifth 16 KiB frame is over it.
    const block3 = [0x83, 0x86, 0x04, 0x02, 0x2f, 0x70, 0x01, 0x01, 0x61]; // POST, http, :path /p, :authority a
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 3, block3));
    for (let i = 0; i < 5; i++) peer.send(frame(FrameType.DATA, 0, 3, Buffer.alloc(16384)));
    await until(() => peer.frames.some((f) => f.id === 3 && f.type === FrameType.RST_STREAM), 2000, 'RST_STREAM');
    assert.equal(peer.frames.find((f) => f.id === 3 && f.type === FrameType.RST_STREAM)!.payload.readUInt32BE(0), ErrorCode.FLOW_CONTROL_ERROR);
    assert.equal(closeCode, ErrorCode.FLOW_CONTROL_ERROR);
    assert.equal(peer.frames.some((f) => f.type === FrameType.GOAWAY), false);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('raw: CONTINUATION flood gets ENHANCE_YOUR_CALM', async () => {
  const parts = [frame(FrameType.HEADERS, 0, 1, GET_BLOCK)];
  for (let i = 0; i < 200; i++) parts.push(frame(FrameType.CONTINUATION, 0, 1, Buffer.alloc(0)));
  await expectGoaway(Buffer.concat(parts), ErrorCode.ENHANCE_YOUR_CALM, /CONTINUATION/);
});

test('raw: a flood of empty DATA frames gets ENHANCE_YOUR_CALM', async () => {
  const post = [0x83, 0x86, 0x84, 0x01, 0x01, 0x61];
  const parts = [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, post)];
  for (let i = 0; i < 1001; i++) parts.push(frame(FrameType.DATA, 0, 1));
  await expectGoaway(Buffer.concat(parts), ErrorCode.ENHANCE_YOUR_CALM, /empty DATA/);
});

test('raw: PING answered with ACK, SETTINGS acknowledged', async () => {
  const srv = await serve(ok200);
  const peer = await rawPeer(srv.port);
  try {
    peer.send(frame(FrameType.PING, 0, 0, Buffer.from('12345678')));
    await until(() => peer.frames.some((f) => f.type === FrameType.PING), 2000, 'PING ACK');
    const ping = peer.frames.find((f) => f.type === FrameType.PING)!;
    assert.equal(ping.flags & Flag.ACK, Flag.ACK);
    assert.equal(ping.payload.toString(), '12345678');
    assert.ok(peer.frames.some((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) !== 0));
    assert.equal(peer.frames[0]!.type, FrameType.SETTINGS, 'the server preface is SETTINGS');
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

/** Field checks: each head is reset PROTOCOL_ERROR and a following valid stream still works. */
test('raw: malformed heads get RST_STREAM PROTOCOL_ERROR, the connection survives', async () => {
  const lit = (name: string, value: string): number[] => [0x00, name.length, ...Buffer.from(name), value.length, ...Buffer.from(value)];
  const bad: Array<[string, number[]]> = [
    ['uppercase name', [...GET_BLOCK, ...lit('X-Upper', 'b')]],
    ['connection field', [...GET_BLOCK, ...lit('connection', 'close')]],
    ['te: gzip', [...GET_BLOCK, ...lit('te', 'gzip')]],
    ['pseudo after regular', [0x82, 0x86, ...lit('x-a', 'b'), 0x84]],
    ['unknown pseudo', [...GET_BLOCK, ...lit(':bogus', 'x')]],
    ['duplicate :path', [...GET_BLOCK, 0x84]],
    ['missing :path', [0x82, 0x86]],
    ['value with LF', [...GET_BLOCK, ...lit('x-a', 'a\nb')]],
  ];
  let served = 0;
  let postClose = -1;
  const srv = await serve((s, f) => {
    served++;
    if (f[1] === 'POST') {
      s.onClose = (code) => (postClose = code); // answered after its body, which is wrong
      s.onEnd = () => s.respond([':status', '200'], true);
      return;
    }
    s.respond([':status', '200'], true);
  });
  const peer = await rawPeer(srv.port);
  const decoder = new HpackDecoder();
  try {
    let id = 1;
    for (const [what, block] of bad) {
      peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, block));
      const sid = id;
      await until(() => peer.frames.some((f) => f.id === sid), 2000, `answer to ${what}`);
      const f = peer.frames.find((x) => x.id === sid)!;
      assert.equal(f.type, FrameType.RST_STREAM, what);
      assert.equal(f.payload.readUInt32BE(0), ErrorCode.PROTOCOL_ERROR, what);
      id += 2;
    }
    // Content-length that disagrees with the DATA.
    peer.send(Buffer.concat([
      frame(FrameType.HEADERS, Flag.END_HEADERS, id, [0x83, 0x86, 0x84, 0x01, 0x01, 0x61, ...lit('content-length', '5')]),
      frame(FrameType.DATA, Flag.END_STREAM, id, Buffer.from('abc')),
    ]));
    const clId = id;
    await until(() => peer.frames.some((f) => f.id === clId), 2000, 'content-length reset');
    const rst = peer.frames.find((f) => f.id === clId)!;
    assert.equal(rst.type, FrameType.RST_STREAM);
    assert.equal(rst.payload.readUInt32BE(0), ErrorCode.PROTOCOL_ERROR);
    assert.equal(postClose, ErrorCode.PROTOCOL_ERROR);
    id += 2;
    const okId = id;
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, okId, GET_BLOCK));
    await until(() => peer.frames.some((f) => f.id === okId), 2000, 'valid stream answer');
    const h = peer.frames.find((f) => f.id === okId)!;
    assert.equal(h.type, FrameType.HEADERS);
    assert.deepEqual(decoder.decode(h.payload), [':status', '200']);
    assert.equal(served, 2, 'only the well-formed heads reached onStream');
    assert.equal(peer.closed(), false);
    assert.equal(peer.frames.some((f) => f.type === FrameType.GOAWAY), false);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('raw: a header list over SETTINGS_MAX_HEADER_LIST_SIZE is answered 431', async () => {
  const srv = await serve(ok200, { settings: { maxHeaderListSize: 1024 } });
  const peer = await rawPeer(srv.port);
  try {
    const block = new HpackEncoder().encode([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'a', 'x-b', 'a'.repeat(2000)]);
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block));
    await until(() => peer.frames.some((f) => f.id === 1), 2000, '431');
    assert.deepEqual(new HpackDecoder().decode(peer.frames.find((f) => f.id === 1)!.payload), [':status', '431']);
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, GET_BLOCK));
    await until(() => peer.frames.some((f) => f.id === 3), 2000, 'next stream');
    assert.equal(peer.closed(), false);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('raw: rapid reset (1000 streams opened and reset) gets GOAWAY ENHANCE_YOUR_CALM', async () => {
  let opened = 0;
  const srv = await serve(() => void opened++);
  const peer = await rawPeer(srv.port);
  try {
    const parts: Buffer[] = [];
    for (let i = 0; i < 1000; i++) {
      const id = 1 + 2 * i;
      parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, GET_BLOCK), frame(FrameType.RST_STREAM, 0, id, [0, 0, 0, ErrorCode.CANCEL]));
    }
    peer.send(Buffer.concat(parts));
    const g = await peer.goaway();
    console.log(`# rapid reset: GOAWAY ${g.code} after ${opened} streams reached onStream (${g.debug})`);
    assert.equal(g.code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(opened < 1000);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('raw: a PING flood from a peer that does not read gets ENHANCE_YOUR_CALM', async () => {
  const srv = await serve(ok200);
  const peer = await rawPeer(srv.port);
  try {
    peer.socket.pause();
    const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8));
    const burst = Buffer.concat(Array.from({ length: 4096 }, () => ping));
    for (let i = 0; i < 400 && srv.closes.length === 0 && !peer.socket.destroyed; i++) {
      peer.socket.write(burst);
      await delay(2);
    }
    await until(() => srv.closes.length === 1, 5000, 'server close');
    const err = srv.closes[0] as { code?: number } | null;
    assert.equal(err?.code, ErrorCode.ENHANCE_YOUR_CALM);
    console.log(`# ping flood: closed with ${err?.code} (${(err as Error).message})`);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

// ---- h2load ------------------------------------------------------------------------------------

test('h2load: 2000 requests over 2 connections, 10 streams each, all succeed', { skip: !existsSync('/usr/bin/h2load') }, async () => {
  const payload = Buffer.from('hello from weft h2\n');
  const srv = await serve((s) => {
    s.respond([':status', '200', 'content-type', 'text/plain', 'content-length', String(payload.length)], false);
    s.end(payload);
  });
  try {
    const out = await new Promise<string>((resolve, reject) => {
      execFile('/usr/bin/h2load', ['-n', '2000', '-c', '2', '-m', '10', `http://127.0.0.1:${srv.port}/`], { timeout: 30_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`h2load failed: ${stderr}\n${stdout}`));
        else resolve(stdout);
      });
    });
    const m = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
    assert.ok(m, out);
    const rps = /finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1];
    console.log(`# h2load: ${m[2]}/${m[1]} succeeded, ${m[3]} failed, ${m[4]} errored, ${rps} req/s`);
    assert.equal(Number(m[2]), 2000);
  } finally {
    await srv.close();
  }
});

// ---- review findings (regressions) -------------------------------------------------------------

const u32 = (n: number): number[] => [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const POST_BLOCK = [0x83, 0x86, 0x84, 0x01, 0x01, 0x61]; // POST, http, /, :authority a
const rstOf = (frames: RawFrame[], id: number): number | undefined => frames.find((f) => f.type === FrameType.RST_STREAM && f.id === id)?.payload.readUInt32BE(0);
const goaways = (frames: RawFrame[]): Array<{ last: number; code: number }> =>
  frames.filter((f) => f.type === FrameType.GOAWAY).map((f) => ({ last: f.payload.readUInt32BE(0), code: f.payload.readUInt32BE(4) }));

test('after our GOAWAY, streams past its last id are ignored (no RST_STREAM), and no later GOAWAY names a higher id', async () => {
  const srv = await serve(() => {}); // stream 1 stays open
  const peer = await rawPeer(srv.port);
  try {
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, POST_BLOCK));
    await until(() => srv.conns[0]?.activeStreams === 1, 2000, 'stream 1');
    srv.conns[0]!.goaway();
    await until(() => goaways(peer.frames).length === 1, 2000, 'GOAWAY');
    const parts: Buffer[] = [];
    for (let id = 3; id < 3 + 2 * 500; id += 2) parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, GET_BLOCK));
    peer.send(Buffer.concat(parts));
    peer.send(frame(FrameType.DATA, 0, 1, Buffer.alloc(10))); // stream 1 still taken
    await delay(100);
    assert.equal(peer.frames.filter((f) => f.type === FrameType.RST_STREAM).length, 0, 'no answer to streams past the GOAWAY');
    assert.equal(srv.conns[0]!.activeStreams, 1);
    peer.send(frame(FrameType.PING, 0, 0, [1, 2, 3])); // a connection error now
    await peer.goaway();
    assert.deepEqual(goaways(peer.frames), [{ last: 1, code: ErrorCode.NO_ERROR }, { last: 1, code: ErrorCode.FRAME_SIZE_ERROR }]);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('a peer that does not read while we keep writing heads is cut off at the write backlog cap', async () => {
  let n = 0;
  // Each answer's head is 4 KB of fresh bytes (no HPACK repeats): output only, no DATA.
  const srv = await serve((s) => s.respond([':status', '200', 'x-pad', `${n++}`.padEnd(4000, 'abcdefghijklmnopqrstuvwxyz'.charAt(n % 26))], true));
  const peer = await rawPeer(srv.port);
  try {
    peer.socket.pause();
    let id = 1;
    for (let round = 0; round < 40 && srv.closes.length === 0 && !peer.socket.destroyed; round++) {
      const parts: Buffer[] = [];
      for (let i = 0; i < 250; i++, id += 2) parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, GET_BLOCK));
      peer.socket.write(Buffer.concat(parts));
      await delay(20);
    }
    await until(() => srv.closes.length === 1, 5000, 'server close');
    const err = srv.closes[0] as { code?: number; message?: string } | null;
    console.log(`# write backlog: ${(id - 1) / 2} requests sent unread, ${n} answered; closed with ${err?.code} (${err?.message})`);
    assert.equal(err?.code, ErrorCode.ENHANCE_YOUR_CALM);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('paused streams hold about the connection window, not a stream window each; resume() lets every body in', async () => {
  const streams: H2Stream[] = [];
  let delivered = 0;
  const srv = await serve((s) => {
    s.pause();
    streams.push(s);
    s.onData = (c) => (delivered += c.length);
    s.onEnd = () => s.respond([':status', '200'], true);
  });
  const session = await nodeConnect(srv.port);
  try {
    const N = 20;
    const body = Buffer.alloc(1 << 20);
    const answers = Array.from({ length: N }, () => nodeRequest(session, { ':method': 'POST', ':path': '/' }, body));
    await until(() => streams.length === N, 3000, 'streams');
    await delay(500);
    const held = delivered;
    console.log(`# paused: ${N} streams of 1 MiB each, ${(held / 1048576).toFixed(2)} MiB delivered while all were paused`);
    assert.ok(held <= (4 << 20) + (1 << 20) + 65536, `${held} bytes delivered to paused streams`);
    for (const s of streams) s.resume();
    const done = await Promise.all(answers);
    assert.ok(done.every((a) => a.status === 200));
    assert.equal(delivered, N << 20);
  } finally {
    await closeSession(session);
    await srv.close();
  }
});

test("the peer's FIN on a half-open socket cancels streams that wait for it, then the connection closes", async () => {
  const codes: number[] = [];
  const closes: Array<Error | null> = [];
  let conn: H2Connection | null = null;
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    conn = new H2Connection(socket, {
      role: 'server',
      onStream: (s) => {
        s.onClose = (c) => codes.push(c);
        s.respond([':status', '200'], false);
        s.write(Buffer.alloc(200_000)); // more than the peer's 65,535 window
      },
      onClose: (err) => closes.push(err),
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock = netConnect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  try {
    await new Promise<void>((r) => sock.once('connect', r));
    sock.on('data', () => {});
    sock.write(Buffer.concat([CLIENT_PREFACE, frame(FrameType.SETTINGS, 0, 0), frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, GET_BLOCK)]));
    await until(() => conn?.activeStreams === 1, 2000, 'stream');
    sock.end();
    await until(() => closes.length === 1, 2000, 'connection close after FIN');
    assert.deepEqual(codes, [ErrorCode.CANCEL]);
    assert.equal(conn!.activeStreams, 0);
  } finally {
    sock.destroy();
    server.close();
  }
});

test('a first flight over our stream limit (before our SETTINGS are acknowledged) is refused, not taken for rapid reset', async () => {
  let opened = 0;
  const srv = await serve((s) => {
    opened++;
    setImmediate(() => s.respond([':status', '200'], true));
  }, { settings: { maxConcurrentStreams: 10 } });
  const peer = await rawPeer(srv.port); // never acknowledges our SETTINGS
  try {
    const parts: Buffer[] = [];
    for (let i = 0; i < 600; i++) parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1 + 2 * i, GET_BLOCK));
    peer.send(Buffer.concat(parts));
    await until(() => peer.frames.filter((f) => f.type === FrameType.HEADERS).length === 10, 2000, '10 answers');
    await delay(50);
    const refused = peer.frames.filter((f) => f.type === FrameType.RST_STREAM && f.payload.readUInt32BE(0) === ErrorCode.REFUSED_STREAM).length;
    console.log(`# first flight: 600 requests, ${opened} taken, ${refused} refused`);
    assert.equal(refused, 590);
    assert.equal(goaways(peer.frames).length, 0, 'no GOAWAY');
    // A GOAWAY names the last stream taken, not the last refused.
    peer.send(frame(FrameType.PING, 0, 0, [1]));
    const g = await peer.goaway();
    assert.equal(g.last, 19);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('trailers on a stream we reset long ago (out of the closed ring) are ignored', async () => {
  const srv = await serve((s) => s.respond([':status', '200'], true)); // answers before a body ends
  const peer = await rawPeer(srv.port);
  const enc = new HpackEncoder();
  try {
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, POST_BLOCK));
    await until(() => rstOf(peer.frames, 1) !== undefined, 2000, 'RST_STREAM on 1');
    const parts: Buffer[] = [];
    for (let i = 0; i < 300; i++) parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3 + 2 * i, GET_BLOCK));
    peer.send(Buffer.concat(parts));
    await until(() => peer.frames.some((f) => f.type === FrameType.HEADERS && f.id === 601), 2000, 'answers');
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, enc.encode(['grpc-status', '0'])));
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 603, GET_BLOCK));
    await until(() => peer.frames.some((f) => f.type === FrameType.HEADERS && f.id === 603) || peer.closed(), 2000, 'answer to 603');
    assert.deepEqual(goaways(peer.frames), []);
    assert.equal(peer.closed(), false);
    // A HEADERS without END_STREAM there cannot be trailers: a connection error.
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, GET_BLOCK));
    const g = await peer.goaway();
    assert.equal(g.code, ErrorCode.PROTOCOL_ERROR);
    assert.match(g.debug, /without END_STREAM on closed stream 1/);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('a stream callback that throws while the connection dies does not escape; onClose still comes', async () => {
  const srv = await serve((s) => {
    s.onClose = () => {
      throw new Error('bug in an onClose handler');
    };
  });
  const peer = await rawPeer(srv.port);
  try {
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, POST_BLOCK));
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 3, POST_BLOCK));
    await until(() => srv.conns[0]?.activeStreams === 2, 2000, 'streams');
    peer.send(frame(FrameType.PING, 0, 0, [1, 2, 3])); // connection error: closeAll → onClose throws
    await peer.goaway();
    await until(() => srv.closes.length === 1, 2000, 'onClose');
    assert.equal(srv.conns[0]!.activeStreams, 0, 'every stream closed despite the throw');
    // And from the socket's 'close' handler.
    const peer2 = await rawPeer(srv.port);
    peer2.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, POST_BLOCK));
    await until(() => srv.conns[1]?.activeStreams === 1, 2000, 'stream');
    peer2.socket.destroy();
    await until(() => srv.closes.length === 2, 2000, 'onClose after socket close');
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('SETTINGS with more than 32 entries gets ENHANCE_YOUR_CALM', async () => {
  const entries: number[] = [];
  for (let i = 0; i < 40; i++) entries.push(0, 4, ...u32(65535 + (i & 1)));
  await expectGoaway(frame(FrameType.SETTINGS, 0, 0, entries), ErrorCode.ENHANCE_YOUR_CALM, /40 entries/);
});

test('a response that ends before its request reports CANCEL (code 0 means both sides whole)', async () => {
  let code = -1;
  const srv = await serve((s) => {
    s.onClose = (c) => (code = c);
    s.respond([':status', '200'], true);
  });
  const peer = await rawPeer(srv.port);
  try {
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, POST_BLOCK));
    await until(() => code !== -1, 2000, 'onClose');
    assert.equal(code, ErrorCode.CANCEL);
    await until(() => rstOf(peer.frames, 1) !== undefined, 2000, 'RST_STREAM');
    assert.equal(rstOf(peer.frames, 1), ErrorCode.NO_ERROR, 'the peer is asked to stop sending with NO_ERROR');
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('streams share a connection window that is the bottleneck in turn', async () => {
  const BODY = 4 << 20;
  const srv = await serve((s) => {
    s.respond([':status', '200'], false);
    let left = BODY;
    const pump = (): void => {
      while (left > 0) {
        left -= 65536;
        if (!s.write(Buffer.alloc(65536))) return;
      }
      s.end();
    };
    s.onDrain = pump;
    pump();
  });
  const sock = netConnect(srv.port, '127.0.0.1');
  const got = new Map<number, number>();
  let total = 0;
  try {
    await new Promise<void>((r) => sock.once('connect', r));
    const reader = new FrameReader((type, _flags, id, p) => {
      if (type !== FrameType.DATA || p.length === 0) return;
      got.set(id, (got.get(id) ?? 0) + p.length);
      total += p.length;
      sock.write(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(p.length))); // the connection window back, as read
    }, 1 << 24);
    sock.on('data', (c: Buffer) => reader.push(c));
    // Stream windows as large as can be: only the connection window limits.
    sock.write(Buffer.concat([CLIENT_PREFACE, frame(FrameType.SETTINGS, 0, 0, [0, 4, ...u32(0x7fffffff)]), frame(FrameType.SETTINGS, Flag.ACK, 0)]));
    for (let i = 0; i < 4; i++) sock.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1 + 2 * i, GET_BLOCK));
    await until(() => total >= 4 << 20, 5000, '4 MiB');
    const shares = [1, 3, 5, 7].map((id) => got.get(id) ?? 0);
    console.log(`# fairness: MiB per stream after ${(total / 1048576).toFixed(1)} MiB: ${shares.map((b) => (b / 1048576).toFixed(2)).join(' ')}`);
    assert.ok(Math.min(...shares) >= Math.max(...shares) / 2, `shares ${shares.join(', ')}`);
  } finally {
    sock.destroy();
    await srv.close();
  }
});

test('a flush past 16 KB joins small frames: a burst of 200 small answers takes a few socket writes', async () => {
  let writes = 0;
  const srv = await serve((s) => {
    s.respond([':status', '200'], false);
    s.end(Buffer.alloc(100));
  });
  const peer = await rawPeer(srv.port);
  try {
    peer.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, GET_BLOCK));
    await until(() => peer.frames.some((f) => f.type === FrameType.DATA && f.id === 1), 2000, 'first answer');
    // Count writes on the server's socket from now on.
    const server = srv.conns[0]! as unknown as { socket: Socket };
    const write = server.socket.write.bind(server.socket);
    server.socket.write = ((...a: Parameters<Socket['write']>) => {
      writes++;
      return write(...a);
    }) as Socket['write'];
    const parts: Buffer[] = [];
    for (let i = 1; i <= 200; i++) parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1 + 2 * i, GET_BLOCK));
    peer.send(Buffer.concat(parts));
    await until(() => peer.frames.filter((f) => f.type === FrameType.DATA).length === 201, 2000, '200 answers');
    console.log(`# flush: 200 answers (HEADERS + 100-byte DATA each) in ${writes} socket writes`);
    assert.ok(writes <= 10, `${writes} writes`);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

// ---- ids the client skipped, SETTINGS timeout, the peer's header list limit ---------------------

test('a HEADERS on a stream id the client skipped is a connection error (RFC 9113 5.1.1), with END_STREAM too; DATA there is a stream error', async () => {
  const head = (id: number): Buffer => frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, GET_BLOCK);
  // With END_STREAM it cannot be told from late trailers by the closed ring alone: 1 was never opened.
  await expectGoaway(Buffer.concat([head(3), head(1)]), ErrorCode.PROTOCOL_ERROR, /opens stream 1, lower than stream 3/);
  const srv = await serve(ok200);
  const peer = await rawPeer(srv.port);
  try {
    // 1 and 7 opened (3 and 5 skipped); DATA on 5 is answered RST_STREAM STREAM_CLOSED, the
    // connection goes on; then a HEADERS with END_STREAM on 3 ends it.
    peer.send(Buffer.concat([head(1), head(7), frame(FrameType.DATA, Flag.END_STREAM, 5, [1, 2])]));
    await until(() => rstOf(peer.frames, 5) !== undefined, 2000, 'RST_STREAM on 5');
    assert.equal(rstOf(peer.frames, 5), ErrorCode.STREAM_CLOSED);
    peer.send(head(9));
    await until(() => peer.frames.some((f) => f.type === FrameType.HEADERS && f.id === 9), 2000, 'answer to 9');
    assert.deepEqual(goaways(peer.frames), []);
    peer.send(head(3));
    const g = await peer.goaway();
    assert.equal(g.code, ErrorCode.PROTOCOL_ERROR);
    assert.equal(g.last, 9);
    assert.match(g.debug, /opens stream 3, lower than stream 9/);
    console.log(`# skipped ids: DATA on 5 got RST_STREAM ${String(rstOf(peer.frames, 5))}, HEADERS on 3 got GOAWAY ${g.code} (last ${g.last})`);
  } finally {
    peer.socket.destroy();
    await srv.close();
  }
});

test('SETTINGS not acknowledged within settingsTimeoutMs: GOAWAY SETTINGS_TIMEOUT, server and client roles; an ACK stops the timer', async () => {
  const srv = await serve(ok200, { settingsTimeoutMs: 200 });
  const silent = await rawPeer(srv.port); // never acknowledges our SETTINGS
  const acking = await rawPeer(srv.port);
  try {
    acking.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
    const t0 = Date.now();
    const g = await silent.goaway(3000);
    const took = Date.now() - t0;
    assert.equal(g.code, ErrorCode.SETTINGS_TIMEOUT);
    assert.match(g.debug, /not acknowledged within 200 ms/);
    await delay(200);
    assert.equal(acking.closed(), false, 'a peer that acknowledged stays');
    acking.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, GET_BLOCK));
    await until(() => acking.frames.some((f) => f.type === FrameType.HEADERS && f.id === 1), 2000, 'answer');
    console.log(`# settings timeout (server): GOAWAY ${g.code} after ${took} ms; the acknowledging peer still served`);
  } finally {
    silent.socket.destroy();
    acking.socket.destroy();
    await srv.close();
  }
  // Client role: a server that sends its SETTINGS but never acknowledges ours.
  const frames: RawFrame[] = [];
  const sockets: Socket[] = [];
  const raw = createNetServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    const reader = new FrameReader((type, flags, id, payload) => frames.push({ type, flags, id, payload: Buffer.from(payload) }), 1 << 24);
    let preface = CLIENT_PREFACE.length;
    socket.on('data', (c: Buffer) => {
      const skip = Math.min(preface, c.length);
      preface -= skip;
      if (skip < c.length) reader.push(c.subarray(skip));
    });
    socket.write(frame(FrameType.SETTINGS, 0, 0));
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  try {
    const t0 = Date.now();
    const { closed } = await ourClient((raw.address() as AddressInfo).port, undefined, { settingsTimeoutMs: 150 });
    const err = await closed;
    const took = Date.now() - t0;
    assert.match(String(err), /not acknowledged within 150 ms/);
    await until(() => frames.some((f) => f.type === FrameType.GOAWAY), 2000, 'GOAWAY at the server');
    const g = frames.find((f) => f.type === FrameType.GOAWAY);
    assert.equal(g?.payload.readUInt32BE(4), ErrorCode.SETTINGS_TIMEOUT);
    assert.ok(took >= 140 && took < 2000, `${took} ms`);
    console.log(`# settings timeout (client): closed after ${took} ms with GOAWAY SETTINGS_TIMEOUT`);
  } finally {
    for (const s of sockets) s.destroy();
    raw.close();
  }
});

test("the peer's SETTINGS_MAX_HEADER_LIST_SIZE: request() and respond() throw H2HeadTooLarge and send nothing; trailers over it reset the stream", async () => {
  let seen = 0;
  const big = 'x'.repeat(1500);
  const srv = await serve((s, f) => {
    seen++;
    const path = f[f.indexOf(':path') + 1];
    if (path === '/big-head') {
      // The client announced 1024: the head is refused before anything goes out.
      assert.throws(() => s.respond([':status', '200', 'x-big', big], true), (e: unknown) => e instanceof H2HeadTooLarge && e.limit === 1024 && /over the peer's SETTINGS_MAX_HEADER_LIST_SIZE of 1024/.test(e.message));
      assert.equal(s.sentHead, false);
      s.respond([':status', '500', 'x-why', 'head too large'], true);
    } else if (path === '/big-trailers') {
      s.respond([':status', '200'], false);
      s.end(Buffer.from('body'), ['x-big', big]);
    } else s.respond([':status', '200'], true);
  }, { settings: { maxHeaderListSize: 1024 } });
  try {
    const { conn } = await ourClient(srv.port, undefined, { settings: { maxHeaderListSize: 1024 } });
    assert.equal(conn.peerMaxHeaderListSize, 1024);
    const fields = [':method', 'GET', ':scheme', 'http', ':authority', 'a', ':path', '/', 'x-big', big];
    assert.throws(() => conn.request(fields, true), (e: unknown) => e instanceof H2HeadTooLarge && e.size === headerListSize(fields) && e.size > 1024);
    const a = await ourRequest(conn, GET('/big-head'), null);
    assert.equal(a.fields[1], '500');
    assert.equal(seen, 1, 'the refused request never reached the server');
    const t = await ourRequest(conn, GET('/big-trailers'), null).then(() => -1, (e: { code: number }) => e.code);
    assert.equal(t, ErrorCode.INTERNAL_ERROR);
    // Ids were not used up by the refused request: the streams so far are 1 and 3, the next is 5.
    assert.equal(conn.request(GET('/'), true).id, 5);
    console.log(`# peer header list limit 1024: a ${headerListSize(fields)}-byte request head not sent, a big response head replaced by 500, big trailers reset (${t})`);
    conn.destroy();
  } finally {
    await srv.close();
  }
});
