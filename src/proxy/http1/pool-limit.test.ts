// maxConnections across the HTTP/1.1 pools of one cluster, with real sockets on loopback: an idle
// connection to one endpoint gives its slot to a request for another, and requests waiting in a
// pool are served after the breaker that queued them was replaced (a configuration push).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { CircuitBreaker } from '../upstream/breaker.js';
import { newRequestContext, type ProxyRequest, type RequestContext } from '../message.js';
import { Http1Pool } from './client.js';
import { listenOnLoopback, readBody } from '../testing.js';

let server: Server;
let port = 0;
let open = 0;
let most = 0;

before(async () => {
  server = createServer((req, res) => {
    req.resume();
    setTimeout(() => res.end('ok'), Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? 0));
  });
  server.on('connection', (s) => {
    most = Math.max(most, ++open);
    s.once('close', () => open--);
  });
  port = await listenOnLoopback(server);
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const ctx = (): RequestContext => newRequestContext({ direction: 'outbound', requestId: 'r', clientAddress: '127.0.0.1', start: 0, route: 'r', destination: 'd' });
const req = (ms = 0): ProxyRequest => ({ method: 'GET', path: `/?ms=${ms}`, authority: 'x', headers: [], body: null });
const limits = { maxConnections: 1, maxPendingRequests: 10, maxRequests: 100, maxRetries: 10 };

/** Two pools to the same server stand for two endpoints of one cluster. */
function cluster(): { a: Http1Pool; b: Http1Pool; breaker: CircuitBreaker } {
  const opts = { connectTimeoutMs: 1000, maxIdle: 8, idleTimeoutMs: 60_000 };
  const a = new Http1Pool('127.0.0.1', port, opts);
  const b = new Http1Pool('127.0.0.1', port, opts);
  const breaker = new CircuitBreaker('c', 'd', limits);
  breaker.pools = [a, b];
  a.connectionLimit = b.connectionLimit = breaker;
  return { a, b, breaker };
}

test('an idle connection to one endpoint is closed so a request to another gets the slot at once', async () => {
  const { a, b } = cluster();
  assert.equal(await readBody(await a.request(req(), ctx(), 2000)), 'ok');
  assert.equal(a.idleCount, 1);
  const t0 = performance.now();
  assert.equal(await readBody(await b.request(req(), ctx(), 2000)), 'ok');
  const ms = performance.now() - t0;
  assert.ok(ms < 500, `the request to b did not wait for a's idle timeout (${ms} ms)`);
  assert.equal(a.idleCount, 0);
  assert.equal(a.connections + b.connections, 1);
  a.close();
  b.close();
});

test('requests waiting in a pool are served after the breaker is replaced (a configuration push)', async () => {
  const { a, b } = cluster();
  // The client's count is what the limit governs (the server learns of a close a moment later).
  let mostOpen = 0;
  const sampler = setInterval(() => (mostOpen = Math.max(mostOpen, a.connections + b.connections)), 1);
  const first = a.request(req(300), ctx(), 5000);
  const waiting = [a.request(req(), ctx(), 5000), b.request(req(), ctx(), 5000)];
  // A push builds a new breaker over the same pools; the old one is forgotten.
  const next = new CircuitBreaker('c', 'd', limits);
  next.pools = [a, b];
  a.connectionLimit = b.connectionLimit = next;
  const bodies = await Promise.all([first, ...waiting].map(async (p) => readBody(await p)));
  clearInterval(sampler);
  assert.deepEqual(bodies, ['ok', 'ok', 'ok']);
  assert.equal(mostOpen, 1, 'never more than maxConnections connections');
  a.close();
  b.close();
});

test('a wait longer than the try timeout is CIRCUIT_OPEN, and the queue is bounded by maxPendingRequests', async () => {
  const { a, breaker } = cluster();
  breaker.pools = [a];
  const busy = a.request(req(400), ctx(), 5000);
  await assert.rejects(a.request(req(), ctx(), 100), (e: Error & { code?: string }) => e.code === 'CIRCUIT_OPEN' && /within 100 ms/.test(e.message));
  await readBody(await busy);
  a.close();
});
