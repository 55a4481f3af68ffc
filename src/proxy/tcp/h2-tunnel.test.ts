import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, test } from 'node:test';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { H2Connection, type H2Stream } from '../http2/connection.js';
import { ErrorCode } from '../http2/frames.js';
import { H2Tunnel } from './h2-tunnel.js';

// user ⇄ [front: client-side H2Tunnel] ⇄ HTTP/2 CONNECT stream ⇄ [server-side H2Tunnel: upstream] ⇄ app

const servers: Server[] = [];
const sockets: Socket[] = [];
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

function listen(onSocket: (s: Socket) => void): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    onSocket(s);
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function waitFor<T>(what: string, get: () => T | null | undefined, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const v = get();
      if (v !== null && v !== undefined && v !== false) return resolve(v);
      if (Date.now() > until) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 5);
    };
    check();
  });
}

interface Chain {
  user: Socket;
  app: Socket;
  /** Close codes of the client's and the server's stream, once closed. */
  codes: { client: number | null; server: number | null };
  /** onClosed calls of each side's join. */
  joinsClosed: { client: number; server: number };
  /** The server side's socket to the app (its buffered bytes show the join's backpressure). */
  upstream: Socket;
  front: Socket;
  clientStream: H2Stream;
}

/** Builds the whole chain; `early` is written by the client before the CONNECT's answer (held by the server until joined). */
async function chain(early: Buffer | null = null): Promise<Chain> {
  let app: Socket | null = null;
  const appPort = await listen((s) => {
    s.on('error', () => {});
    app = s;
  });
  const codes: Chain['codes'] = { client: null, server: null };
  const joinsClosed = { client: 0, server: 0 };
  let upstream: Socket | null = null;
  const h2Port = await listen((socket) => {
    new H2Connection(socket, {
      role: 'server',
      onStream: (stream, fields, ended) => {
        assert.equal(fields[1], 'CONNECT');
        stream.onClose = (code) => (codes.server = code);
        const t = new H2Tunnel(stream, ended);
        stream.pause();
        stream.respond([':status', '200'], false);
        // Joined only once the app accepted, a while later: what arrives meanwhile is held.
        const up = connect({ host: '127.0.0.1', port: appPort, allowHalfOpen: true });
        sockets.push(up);
        up.on('error', () => {});
        up.once('connect', () => setTimeout(() => {
          upstream = up;
          t.join(up, () => joinsClosed.server++);
        }, 30));
      },
    });
  });
  let front: Socket | null = null;
  const frontPort = await listen((s) => {
    s.on('error', () => {});
    s.pause();
    front = s;
  });
  const user = connect({ host: '127.0.0.1', port: frontPort, allowHalfOpen: true });
  sockets.push(user);
  user.on('error', () => {});
  await waitFor('front', () => front);
  const socket = connect({ host: '127.0.0.1', port: h2Port });
  sockets.push(socket);
  const conn: H2Connection = await new Promise((resolve) => {
    const c = new H2Connection(socket, { role: 'client', onSettings: () => resolve(c) });
  });
  const stream = conn.request([':method', 'CONNECT', ':authority', '127.0.0.1:1', 'weft-service', 'x'], false);
  stream.onClose = (code) => (codes.client = code);
  const t = new H2Tunnel(stream);
  if (early !== null) t.write(early);
  await new Promise<void>((resolve) => {
    t.onHead = (f) => {
      assert.equal(f[1], '200');
      resolve();
    };
  });
  t.join(front!, () => joinsClosed.client++);
  await waitFor('app', () => app);
  await waitFor('upstream', () => upstream);
  return { user, app: app!, codes, joinsClosed, upstream: upstream!, front: front!, clientStream: stream };
}

/** Everything `s` sends until its end. */
function readAll(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (c: Buffer) => parts.push(c));
  return new Promise((resolve) => s.once('end', () => resolve(Buffer.concat(parts))));
}

test('bytes both ways; the caller\'s FIN is END_STREAM, and the app still answers after it', async () => {
  const c = await chain(Buffer.from('early,'));
  const toApp = readAll(c.app);
  const toUser = readAll(c.user);
  c.user.end('request');
  assert.equal((await toApp).toString(), 'early,request', 'held bytes first, then the rest, then FIN');
  c.app.end('answer after the half-close');
  assert.equal((await toUser).toString(), 'answer after the half-close');
  await waitFor('both joins closed', () => c.joinsClosed.client === 1 && c.joinsClosed.server === 1);
  assert.deepEqual(c.codes, { client: 0, server: 0 }, 'a clean close both ways');
  console.log(`h2 tunnel: half-close caller first, codes ${JSON.stringify(c.codes)}`);
});

test('the app\'s FIN first: the caller gets its end and can still send (no RST_STREAM NO_ERROR cutting it)', async () => {
  const c = await chain();
  const toUser = readAll(c.user);
  c.app.end('bye');
  assert.equal((await toUser).toString(), 'bye');
  const toApp = readAll(c.app);
  c.user.write('still ');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(c.codes.server, null, 'the server\'s stream is still open after its END_STREAM');
  c.user.end('talking');
  assert.equal((await toApp).toString(), 'still talking');
  await waitFor('both joins closed', () => c.joinsClosed.client === 1 && c.joinsClosed.server === 1);
  assert.deepEqual(c.codes, { client: 0, server: 0 });
});

test('a reset of the caller resets the stream (CONNECT_ERROR) and the app\'s connection', async () => {
  const c = await chain();
  let appError = '';
  c.app.on('error', (e: NodeJS.ErrnoException) => (appError = e.code ?? e.message));
  const appClosed = new Promise<boolean>((r) => c.app.once('close', r));
  c.user.resetAndDestroy();
  assert.equal(await appClosed, true, 'the app saw a reset, not a clean end');
  assert.equal(appError, 'ECONNRESET');
  await waitFor('both joins closed', () => c.joinsClosed.client === 1 && c.joinsClosed.server === 1);
  assert.equal(c.codes.server, ErrorCode.CONNECT_ERROR);
});

test('a reset of the app resets the stream and the caller\'s connection', async () => {
  const c = await chain();
  let userError = '';
  c.user.on('error', (e: NodeJS.ErrnoException) => (userError = e.code ?? e.message));
  const userClosed = new Promise<boolean>((r) => c.user.once('close', r));
  c.app.resetAndDestroy();
  assert.equal(await userClosed, true);
  assert.equal(userError, 'ECONNRESET');
  await waitFor('both joins closed', () => c.joinsClosed.client === 1 && c.joinsClosed.server === 1);
  assert.equal(c.codes.client, ErrorCode.CONNECT_ERROR);
});

/** Writes `total` bytes to `from` as fast as it takes them, then ends it; resolves with their hash. */
function pump(from: Socket, total: number): string {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  for (let i = 0; i < chunk.length; i += 4096) chunk.writeUInt32BE(i, i);
  const hash = createHash('sha256');
  let sent = 0;
  const more = (): void => {
    while (sent < total) {
      sent += chunk.length;
      if (!from.write(chunk)) return void from.once('drain', more);
    }
    from.end();
  };
  for (let n = 0; n < total; n += chunk.length) hash.update(chunk);
  more();
  return hash.digest('hex');
}

async function slowReader(name: string, writer: Socket, reader: Socket, joinSide: Socket): Promise<void> {
  const total = 16 << 20;
  reader.pause();
  const expected = pump(writer, total);
  // While the reader reads nothing, what the joins buffer stays bounded by the windows, not the 16 MiB.
  let maxBuffered = 0;
  const until = Date.now() + 700;
  while (Date.now() < until) {
    maxBuffered = Math.max(maxBuffered, joinSide.writableLength);
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(writer.writableLength > 0, `${name}: the writer is held back (${writer.writableLength} bytes waiting in it)`);
  assert.ok(maxBuffered <= 3 << 20, `${name}: the join buffered at most ${maxBuffered} bytes toward the slow side`);
  const hash = createHash('sha256');
  let got = 0;
  reader.on('data', (c: Buffer) => {
    got += c.length;
    hash.update(c);
  });
  const ended = new Promise((r) => reader.once('end', r));
  reader.resume();
  await ended;
  assert.equal(got, total);
  assert.equal(hash.digest('hex'), expected, `${name}: every byte, in order`);
  console.log(`h2 tunnel backpressure (${name}): ${total} bytes, at most ${maxBuffered} buffered by the join while the reader stalled`);
}

test('backpressure toward a slow app: the stream\'s window stays closed, the caller is held back', async () => {
  const c = await chain();
  await slowReader('slow app', c.user, c.app, c.upstream);
  c.app.end();
});

test('backpressure toward a slow caller: the socket pauses while the stream cannot send', async () => {
  const c = await chain();
  await slowReader('slow caller', c.app, c.user, c.front);
  c.user.end();
});
