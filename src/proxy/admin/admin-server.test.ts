import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { ConnectionPool, simpleRequest } from '../http1/simple-client.js';
import { startAdmin, type AdminSource } from './admin-server.js';

function source(): AdminSource & { drained: number; isReady: boolean; big: boolean } {
  return {
    drained: 0,
    isReady: false,
    ready() {
      return this.isReady;
    },
    big: false,
    metrics() {
      return this.big ? `${'weft_series{x="y"} 1\n'.repeat(10_000)}` : 'weft_up 1\n';
    },
    configDump: () => ({ snapshot: { version: 'v1' } }),
    clusters: () => [{ name: 'echo' }],
    drain() {
      this.drained++;
    },
  };
}

test('the admin server answers its endpoints on 127.0.0.1, keeping the connection alive', async () => {
  const src = source();
  const admin = await startAdmin(0, src);
  const pool = new ConnectionPool(1);
  const call = (method: string, path: string) => simpleRequest({ url: new URL(`http://127.0.0.1:${admin.port}${path}`), method, timeoutMs: 2000, pool });
  try {
    const notReady = await call('GET', '/ready');
    assert.deepEqual([notReady.status, notReady.body.toString()], [503, 'not ready\n']);
    src.isReady = true;
    assert.equal((await call('GET', '/ready?verbose=1')).status, 200);
    const live = await call('GET', '/live');
    assert.deepEqual([live.status, live.body.toString()], [200, 'live\n']);
    const metrics = await call('GET', '/metrics');
    assert.deepEqual(metrics.headers.slice(0, 4), ['content-type', 'text/plain; version=0.0.4', 'cache-control', 'no-store']);
    assert.equal(metrics.body.toString(), 'weft_up 1\n');
    assert.deepEqual(JSON.parse((await call('GET', '/config_dump')).body.toString()), { snapshot: { version: 'v1' } });
    assert.deepEqual(JSON.parse((await call('GET', '/clusters')).body.toString()), [{ name: 'echo' }]);
    const head = await call('HEAD', '/metrics');
    assert.deepEqual([head.status, head.body.length], [200, 0]);
    assert.equal((await call('GET', '/drain')).status, 404);
    assert.equal(src.drained, 0);
    const drain = await call('POST', '/drain');
    assert.deepEqual([drain.status, drain.body.toString(), src.drained], [202, 'draining\n', 1]);
    const missing = await call('GET', '/nope');
    assert.equal(missing.status, 404);
    assert.match(missing.body.toString(), /try \/ready \/live \/metrics \/config_dump \/clusters, POST \/drain/);
    // A scrape far larger than a socket buffer comes whole.
    src.big = true;
    const big = await call('GET', '/metrics');
    assert.equal(big.body.length, 21 * 10_000);
    assert.equal(pool.openCount(`http://127.0.0.1:${admin.port}`), 1, 'every request on one connection');
  } finally {
    pool.close();
    await admin.close();
  }
});

test('a malformed request gets 400 with a weft-error; close() drops open connections', async () => {
  const admin = await startAdmin(0, source());
  const socket = connect(admin.port, '127.0.0.1');
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  socket.write('GET /ready HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n');
  await closed;
  assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(text, /\r\nweft-error: BAD_REQUEST\r\n/);

  // An idle keep-alive connection does not hold close() up.
  const idle = connect(admin.port, '127.0.0.1');
  await new Promise<void>((r) => idle.once('connect', () => r()));
  const idleClosed = new Promise<void>((r) => idle.on('close', () => r()));
  const t0 = Date.now();
  await admin.close();
  await idleClosed;
  assert.ok(Date.now() - t0 < 1000);
  // The port is released.
  await assert.rejects(simpleRequest({ url: new URL(`http://127.0.0.1:${admin.port}/live`), method: 'GET', timeoutMs: 1000 }), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
});

/** Writes raw bytes on a fresh connection and reads until the server closes it (at most 2 s). */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.write(bytes);
  });
}

test('pipelined requests, request bodies (dropped), Expect: 100-continue and HTTP/1.0 are served in order', async () => {
  const src = source();
  const admin = await startAdmin(0, src);
  try {
    const text = await raw(
      admin.port,
      'GET /live HTTP/1.1\r\nHost: a\r\n\r\n' +
        'POST /drain HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello' +
        'POST /drain HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
        'HEAD /live HTTP/1.1\r\nHost: a\r\n\r\n' +
        'GET http://127.0.0.1/ready?x HTTP/1.0\r\n\r\n' +
        'GET /live HTTP/1.1\r\nHost: a\r\n\r\n',
    );
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 202, 202, 200, 503], text);
    assert.equal(src.drained, 2);
    assert.match(text, /HTTP\/1\.1 200 OK\r\ncontent-type: text\/plain\r\ncache-control: no-store\r\n\r\nHTTP/, 'HEAD: no body');
    assert.match(text, /content-length: 10\r\nconnection: close\r\n\r\nnot ready\n$/, 'HTTP/1.0 without keep-alive: the connection closes after the answer');
  } finally {
    await admin.close();
  }
});

test('a head too large or an unsupported framing is refused with its code', async () => {
  const admin = await startAdmin(0, source());
  try {
    assert.match(await raw(admin.port, `GET /live HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n[^]*weft-error: HEADERS_TOO_LARGE/);
    assert.match(await raw(admin.port, 'POST /drain HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n'), /^HTTP\/1\.1 501 [^]*weft-error: NOT_IMPLEMENTED/);
  } finally {
    await admin.close();
  }
});
