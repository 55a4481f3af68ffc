// Forwarded TCP connections (forwardTcp) with real sockets on loopback: a forwarding listener in
// front of an app that counts what it accepts.
// - The circuit breaker's maxConnections: over the limit nothing is dialled and the client is reset
//   (a CONNECT client gets 503 CIRCUIT_OPEN); a closed or failed connection frees its slot; the count
//   outlives a configuration push; TCP and HTTP/1.1 connections of one cluster share the count.
// - The idle timeout: a connection silent both ways for `tcpIdleTimeoutMs` is closed at both ends and
//   counted; bytes either way keep it open; 0 turns it off.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Cluster } from '../../model/snapshot.js';
import { newRequestContext, type ProxyResponse } from '../message.js';
import { readBody } from '../testing.js';
import type { BreakerLimit } from '../upstream/breaker.js';
import { ClusterRuntime } from '../upstream/cluster.js';
import { PoolRegistry } from '../upstream/pools.js';
import { forwardTcp, type TcpOutcome } from './tcp-proxy.js';
import { TunnelDialer } from './tunnel-client.js';

const SERVICE = 'db.default:9000';

/** The app: echoes, except that a connection opening with `GET ` gets one HTTP/1.1 answer, its body's last byte 200 ms late. */
let app: Server;
let appPort = 0;
let accepts = 0;
const appSockets = new Set<Socket>();

before(async () => {
  app = createServer({ allowHalfOpen: true }, (s) => {
    accepts++;
    appSockets.add(s);
    s.on('close', () => appSockets.delete(s));
    s.on('error', () => {});
    // A caller's half-close is passed back (before its first byte too: pipe() is not set up then).
    s.once('end', () => s.end());
    s.once('data', (c: Buffer) => {
      if (c.toString('latin1').startsWith('GET ')) {
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no');
        setTimeout(() => s.write('k'), 200);
        return;
      }
      s.write(c);
      s.pipe(s);
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
});
after(async () => {
  for (const s of appSockets) s.destroy();
  await new Promise((r) => app.close(r));
});

function config(maxConnections: number, port = appPort, connectTimeoutMs = 1000, tcpIdleTimeoutMs?: number): Cluster {
  return {
    name: SERVICE, service: 'db', namespace: 'default', port: 9000, protocol: 'TCP', loadBalancer: 'RoundRobin', connectTimeoutMs,
    ...(tcpIdleTimeoutMs === undefined ? {} : { tcpIdleTimeoutMs }),
    circuitBreaker: { maxConnections, maxPendingRequests: 10, maxRequests: 1024, maxRetries: 1024 },
    endpoints: [{ workload: 'default/db-1', address: '127.0.0.1', port, appPort: port, proxied: false, identity: 'spiffe://cluster.local/ns/default/sa/db', labels: {} }],
  };
}

/**
 * A forwarding listener (the proxy's outbound TCP port, or its CONNECT when `viaConnect`) to the
 * cluster `current()` returns, recording outcomes and breaker overflows.
 */
async function forwarder(current: () => ClusterRuntime, viaConnect = false) {
  const outcomes: TcpOutcome[] = [];
  const idleClosed: string[] = [];
  const clients = new Set<Socket>();
  const fwd = { dialer: new TunnelDialer(() => null), report: (o: TcpOutcome) => outcomes.push(o), idleClosed: (service: string) => idleClosed.push(service) };
  const server = createServer({ allowHalfOpen: true }, (s) => {
    clients.add(s);
    s.once('close', () => clients.delete(s));
    forwardTcp(s, SERVICE, current, fwd, undefined, viaConnect ? { rest: null } : undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    outcomes,
    idleClosed,
    close: () => new Promise<void>((r) => {
      for (const s of clients) s.destroy();
      server.close(() => r());
    }),
  };
}

/** A client connection: what it received, and how it closed (the error code, or null for a clean close). */
interface Client {
  socket: Socket;
  text(): string;
  closed: Promise<string | null>;
}

/** Connects (a refused one may be reset before its connect completes: `closed` tells). */
function dial(port: number): Client {
  const socket = connect({ host: '127.0.0.1', port });
  let text = '';
  let error: string | null = null;
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  const closed = new Promise<string | null>((r) => socket.once('close', () => r(error)));
  return { socket, text: () => text, closed };
}

/** Polls `fn` for at most `ms`. */
async function until(fn: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A client joined to the app: its bytes come back. */
async function joined(port: number, word: string): Promise<Client> {
  const c = dial(port);
  c.socket.write(word);
  await until(() => c.text() === word, `echo of ${word}`);
  return c;
}

/** Closed without a byte from the app, and within `ms`. */
async function refused(c: Client, ms = 2000): Promise<string | null> {
  const timer = setTimeout(() => c.socket.destroy(new Error('not closed in time')), ms);
  const error = await c.closed;
  clearTimeout(timer);
  return error;
}

function runtime(cfg: Cluster, registry: PoolRegistry, opened: BreakerLimit[]): ClusterRuntime {
  return new ClusterRuntime(cfg, registry, (dest, limit) => {
    assert.equal(dest, 'db.default');
    opened.push(limit);
  });
}

test('maxConnections 2: the third connection is reset without a dial and counted CIRCUIT_OPEN; closing one frees its slot', async () => {
  const registry = new PoolRegistry();
  const opened: BreakerLimit[] = [];
  const rt = runtime(config(2), registry, opened);
  const f = await forwarder(() => rt);
  const before = accepts;
  try {
    const a = await joined(f.port, 'a');
    const b = await joined(f.port, 'b');
    assert.equal(rt.breaker.connections, 2);
    const c = dial(f.port);
    assert.equal(await refused(c), 'ECONNRESET', 'reset, not a clean empty close');
    assert.equal(c.text(), '');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(accepts - before, 2, 'the app never saw the third');
    assert.deepEqual(opened, ['connections']);
    const last = f.outcomes.at(-1)!;
    assert.deepEqual([last.errorCode, last.transport, last.endpoint], ['CIRCUIT_OPEN', null, '']);
    assert.match(last.message, /cluster db\.default:9000 is open: 2 connections open, maxConnections is 2/);

    a.socket.end();
    await until(() => rt.breaker.tcp.open === 1, 'the slot freed');
    const d = await joined(f.port, 'd');
    assert.equal(accepts - before, 3);
    assert.equal(f.outcomes.filter((o) => o.errorCode === 'CIRCUIT_OPEN').length, 1);
    b.socket.destroy();
    d.socket.destroy();
    await until(() => rt.breaker.tcp.open === 0, 'all slots freed');
  } finally {
    await f.close();
    registry.closeAll();
  }
});

test('the count outlives a configuration push (even one that replaces the pools): the new breaker refuses the third, and old connections free their slots in it', async () => {
  const registry = new PoolRegistry();
  const opened: BreakerLimit[] = [];
  let rt = runtime(config(2), registry, opened);
  const f = await forwarder(() => rt);
  try {
    const a = await joined(f.port, 'a');
    const b = await joined(f.port, 'b');
    // A push: a new runtime, with another connect timeout (so another pool for the endpoint).
    rt = runtime(config(2, appPort, 2000), registry, opened);
    assert.equal(rt.breaker.connections, 2);
    const before = accepts;
    const c = dial(f.port);
    assert.equal(await refused(c), 'ECONNRESET');
    assert.equal(accepts, before);
    assert.deepEqual(opened, ['connections']);
    a.socket.destroy();
    await until(() => rt.breaker.connections === 1, 'the old connection freed its slot in the new count');
    const d = await joined(f.port, 'd');
    b.socket.destroy();
    d.socket.destroy();
    await until(() => rt.breaker.connections === 0, 'all slots freed');
  } finally {
    await f.close();
    registry.closeAll();
  }
});

test('a CONNECT client over the limit is answered 503 CIRCUIT_OPEN with the weft-error header', async () => {
  const registry = new PoolRegistry();
  const opened: BreakerLimit[] = [];
  const rt = runtime(config(1), registry, opened);
  const f = await forwarder(() => rt, true);
  try {
    const a = dial(f.port);
    await until(() => a.text().startsWith('HTTP/1.1 200 '), 'the first tunnel established');
    const before = accepts;
    const c = dial(f.port);
    assert.equal(await refused(c), null, 'the answer, then a clean close');
    const [head, body] = c.text().split('\r\n\r\n') as [string, string];
    assert.match(head, /^HTTP\/1\.1 503 /);
    assert.match(head, /\r\nweft-error: CIRCUIT_OPEN\r\n/);
    assert.equal(JSON.parse(body).code, 'CIRCUIT_OPEN');
    assert.match(JSON.parse(body).message as string, /maxConnections is 1/);
    assert.equal(accepts, before);
    assert.deepEqual(opened, ['connections']);
    a.socket.destroy();
    await until(() => rt.breaker.tcp.open === 0, 'the slot freed');
  } finally {
    await f.close();
    registry.closeAll();
  }
});

test('a connection that fails to connect frees its slot', async () => {
  // A port nothing listens on: bound by the OS, then released.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const dead = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const registry = new PoolRegistry();
  const opened: BreakerLimit[] = [];
  const rt = runtime(config(1, dead), registry, opened);
  const f = await forwarder(() => rt);
  try {
    for (let i = 0; i < 3; i++) {
      const c = dial(f.port);
      assert.equal(await refused(c), 'ECONNRESET');
      await until(() => f.outcomes.length === i + 1, 'the outcome reported');
      assert.equal(f.outcomes[i]!.errorCode, 'UPSTREAM_CONNECT_FAILURE', 'not CIRCUIT_OPEN: the failed one freed its slot');
    }
    assert.equal(rt.breaker.tcp.open, 0);
    assert.deepEqual(opened, []);
  } finally {
    await f.close();
    registry.closeAll();
  }
});

test('TCP and HTTP/1.1 connections of a cluster share maxConnections: a request waits for the slot a TCP connection holds; a busy HTTP/1.1 connection refuses TCP, an idle one makes room', async () => {
  const registry = new PoolRegistry();
  const opened: BreakerLimit[] = [];
  const rt = runtime(config(1), registry, opened);
  const f = await forwarder(() => rt);
  try {
    const a = await joined(f.port, 'a');
    const ctx = newRequestContext({ direction: 'outbound', requestId: 'r', clientAddress: '127.0.0.1', start: 0, route: 'r', destination: 'db.default' });
    let answered: ProxyResponse | null = null;
    const sent = rt.handler(5000)({ method: 'GET', path: '/', authority: 'db', headers: [], body: null }, ctx).then((res) => (answered = res));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(answered, null, 'the request waits for the slot');
    assert.equal(rt.breaker.pendingRequests, 1);
    const t0 = performance.now();
    a.socket.destroy();
    const res = await sent;
    const waited = performance.now() - t0;
    assert.equal(res.status, 200);
    assert.ok(waited < 1000, `the request went as soon as the TCP connection closed (${Math.round(waited)} ms)`);

    // Its connection is busy until the body is read: a TCP connection is refused meanwhile.
    const before = accepts;
    const c = dial(f.port);
    assert.equal(await refused(c), 'ECONNRESET');
    assert.deepEqual(opened, ['connections']);
    assert.equal(await readBody(res), 'ok');
    const pool = rt.endpoints[0]!.pool;
    assert.equal(pool.idleCount, 1);
    // Now idle, it gives its slot up to a TCP connection.
    const d = await joined(f.port, 'd');
    assert.equal(pool.idleCount, 0);
    assert.equal(accepts - before, 1);
    await until(() => rt.breaker.connections === 1, 'the idle connection\'s close counted');
    d.socket.destroy();
    await until(() => rt.breaker.connections === 0, 'all slots freed');
    assert.deepEqual(opened, ['connections']);
  } finally {
    await f.close();
    registry.closeAll();
  }
});

test('idle timeout: a connection silent both ways is closed at both ends and counted; traffic either way keeps one open; 0 never closes', async () => {
  const registry = new PoolRegistry();
  let rt = runtime(config(10, appPort, 1000, 300), registry, []);
  const f = await forwarder(() => rt);
  try {
    // Silent after its first exchange: closed by the proxy, at the app too.
    const silent = await joined(f.port, 'a');
    const appsBefore = appSockets.size;
    const t0 = Date.now();
    assert.equal(await silent.closed, null, 'closed cleanly, not reset');
    const waited = Date.now() - t0;
    assert.ok(waited >= 250 && waited < 2000, `closed after ${waited} ms of silence, the timeout is 300`);
    await until(() => appSockets.size === appsBefore - 1, 'the app side closed too');
    assert.deepEqual(f.idleClosed, [SERVICE]);

    // Bytes every 100 ms for 900 ms (three timeouts' worth), client to app and back: still open.
    const busy = await joined(f.port, 'b');
    let sent = 'b';
    for (let i = 0; i < 9; i++) {
      await new Promise((r) => setTimeout(r, 100));
      busy.socket.write('.');
      sent += '.';
    }
    await until(() => busy.text() === sent, 'the echoes');
    assert.equal(busy.socket.destroyed, false, 'a connection in use was closed');
    // Only the app speaking (server-first traffic, e.g. a stream of pushes) keeps it open too.
    const writer = [...appSockets].at(-1)!;
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 100));
      writer.write('!');
    }
    await until(() => busy.text().endsWith('!!!!!!'), 'the pushes');
    assert.equal(busy.socket.destroyed, false, 'a connection the app kept writing to was closed');
    busy.socket.destroy();

    // 0: no idle timeout.
    rt = runtime(config(10, appPort, 1000, 0), registry, []);
    const forever = await joined(f.port, 'c');
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(forever.socket.destroyed, false, 'closed although the timeout is off');
    forever.socket.destroy();
    assert.deepEqual(f.idleClosed, [SERVICE], 'only the silent connection was counted');
  } finally {
    await f.close();
    registry.closeAll();
  }
});
