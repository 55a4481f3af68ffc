// Reusing an HTTP/1.1 upstream connection, with real sockets on loopback: a request that finds its
// pooled connection closed under it goes again on a fresh one (only when that is safe), and the
// connection's timers, kept for its life and re-armed per use, time only the exchange or the idle
// stay they were armed for.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { MeshError } from '../../core/errors.js';
import { newRequestContext, type ProxyRequest, type RequestContext } from '../message.js';
import { Http1Pool } from './client.js';
import { listenOnLoopback, readBody } from '../testing.js';

let server: Server;
let port = 0;
/** Connections the server accepted, and how many of them are open. */
let accepted = 0;
let open = 0;
/** Requests seen per connection; the server resets a connection at its `dropAt`th request, unanswered. */
const seen = new WeakMap<Socket, number>();
let dropAt = 0;

before(async () => {
  server = createServer((req, res) => {
    const n = (seen.get(req.socket) ?? 0) + 1;
    seen.set(req.socket, n);
    req.resume();
    if (n === dropAt) {
      req.socket.destroy();
      return;
    }
    const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end(`${req.method} ${n}`), ms);
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (s) => {
    accepted++;
    open++;
    s.once('close', () => open--);
  });
  port = await listenOnLoopback(server);
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const ctx = (): RequestContext => newRequestContext({ direction: 'outbound', requestId: 'r', clientAddress: '127.0.0.1', start: 0, route: 'r', destination: 'd' });
const req = (method: string, ms = 0): ProxyRequest => ({ method, path: `/?ms=${ms}`, authority: 'x', headers: [], body: null });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await sleep(20);
  assert.ok(check(), what);
}

test('a GET whose pooled connection was closed under it goes again on a new connection; a POST does not', async () => {
  dropAt = 2;
  accepted = 0;
  const pool = new Http1Pool('127.0.0.1', port, { connectTimeoutMs: 1000, maxIdle: 8, idleTimeoutMs: 60_000 });
  assert.equal(await readBody(await pool.request(req('GET'), ctx(), 2000)), 'GET 1');
  assert.equal(pool.idleCount, 1);
  // The pooled connection is reset at this second request: sent again on a fresh connection, where it is the first.
  const res = await pool.request(req('GET'), ctx(), 2000);
  assert.equal(res.status, 200);
  assert.equal(await readBody(res), 'GET 1');
  assert.equal(accepted, 2);
  assert.equal(pool.active, 0);
  assert.equal(pool.idleCount, 1);

  // A POST may have been acted on: never sent twice.
  await assert.rejects(pool.request(req('POST'), ctx(), 2000), (err: unknown) => err instanceof MeshError && err.code === 'UPSTREAM_RESET');
  assert.equal(accepted, 2);
  assert.equal(pool.active, 0);
  assert.equal(pool.idleCount, 0);
  console.log(`stale reuse: GET answered after 1 retry (${accepted} connections), POST refused with UPSTREAM_RESET`);
  pool.close();
});

test('the exchange timeout times each exchange from its own start, on a reused connection too', async () => {
  dropAt = 0;
  const pool = new Http1Pool('127.0.0.1', port, { connectTimeoutMs: 1000, maxIdle: 8, idleTimeoutMs: 60_000 });
  const timeoutMs = 1000;
  const t0 = performance.now();
  assert.equal(await readBody(await pool.request(req('GET'), ctx(), timeoutMs)), 'GET 1');
  await sleep(700);
  // Ends about 1,200 ms after the first exchange began: only a timer left from that one would cut it.
  assert.equal(await readBody(await pool.request(req('GET', 500), ctx(), timeoutMs)), 'GET 2');
  const second = performance.now() - t0;
  assert.ok(second > timeoutMs, `the second exchange ended ${second.toFixed(0)} ms after the first began`);
  // A slow answer on the same connection is still cut at the timeout.
  const t1 = performance.now();
  await assert.rejects(pool.request(req('GET', 3000), ctx(), timeoutMs), (err: unknown) => err instanceof MeshError && err.code === 'UPSTREAM_TIMEOUT');
  const waited = performance.now() - t1;
  assert.ok(waited >= timeoutMs - 5 && waited < 2500, `timed out after ${waited.toFixed(0)} ms`);
  assert.equal(pool.active, 0);
  console.log(`exchange timeout: second exchange ended at ${second.toFixed(0)} ms, slow one cut after ${waited.toFixed(0)} ms`);
  pool.close();
});

test('the idle timeout closes a pooled connection, never one taken for an exchange', async () => {
  dropAt = 0;
  const idleTimeoutMs = 300;
  const pool = new Http1Pool('127.0.0.1', port, { connectTimeoutMs: 1000, maxIdle: 8, idleTimeoutMs });
  const before = accepted;
  assert.equal(await readBody(await pool.request(req('GET'), ctx(), 5000)), 'GET 1');
  await sleep(100);
  // Taken 100 ms into its idle stay, busy past the end of it: the idle timer must leave it alone.
  assert.equal(await readBody(await pool.request(req('GET', 500), ctx(), 5000)), 'GET 2');
  assert.equal(accepted - before, 1);
  assert.equal(pool.idleCount, 1);
  const openNow = open;
  await until('the idle connection closed', () => pool.idleCount === 0 && open === openNow - 1);
  console.log(`idle timeout: one connection served both exchanges, closed when idle for ${idleTimeoutMs} ms`);
  pool.close();
});
