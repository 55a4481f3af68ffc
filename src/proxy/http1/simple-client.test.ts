import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { createRootCertificate, generateKey, issueLeafCertificate, keyToPem } from '../../core/identity/x509.js';
import { expectSpiffeId } from '../tls/peer-identity.js';
import { ConnectionPool, HttpClientError, simpleRequest, upgradeRequest, type SimpleResponse } from './simple-client.js';

/**
 * A raw TCP server on 127.0.0.1:0: `answer` gets each request's bytes (head and the content-length
 * body) and writes what it likes. Counts connections.
 */
async function rawServer(answer: (req: string, socket: Socket) => void): Promise<{ url: string; port: number; connections: () => number; requests: string[]; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const len = Number(/\r\ncontent-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        const req = buf.slice(0, end + 4 + len);
        buf = buf.slice(end + 4 + len);
        requests.push(req);
        answer(req, socket);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connections: () => connections,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const get = (url: string, extra: Partial<Parameters<typeof simpleRequest>[0]> = {}): Promise<SimpleResponse> =>
  simpleRequest({ url: new URL(url), method: 'GET', timeoutMs: 2000, ...extra });

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HttpClientError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });
}

test('writes a strict request and reads a Content-Length response', async () => {
  const s = await rawServer((_req, socket) => socket.write('HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello'));
  try {
    const res = await simpleRequest({ url: new URL(`${s.url}/v1/traces?x=1`), method: 'POST', headers: ['content-type', 'application/json'], body: '{"a":1}', timeoutMs: 2000 });
    assert.equal(res.status, 201);
    assert.equal(res.reason, 'Created');
    assert.deepEqual(res.headers, ['content-type', 'text/plain', 'content-length', '5']);
    assert.equal(res.body.toString(), 'hello');
    assert.equal(s.requests[0], `POST /v1/traces?x=1 HTTP/1.1\r\nhost: 127.0.0.1:${s.port}\r\ncontent-type: application/json\r\ncontent-length: 7\r\nconnection: close\r\n\r\n{"a":1}`);
  } finally {
    await s.close();
  }
});

test('reads chunked bodies (split anywhere, with trailers) and close-delimited ones; skips 100 Continue', async () => {
  const s = await rawServer((req, socket) => {
    if (req.startsWith('GET /chunked')) {
      const bytes = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n';
      // One byte at a time: every state of the head and chunk parsers sees a boundary.
      let i = 0;
      const next = (): void => {
        if (i < bytes.length) socket.write(bytes[i++]!, 'latin1', next);
      };
      next();
    } else {
      socket.end('HTTP/1.1 200 OK\r\n\r\nuntil the end');
    }
  });
  try {
    assert.equal((await get(`${s.url}/chunked`)).body.toString(), 'hello, world');
    assert.equal((await get(`${s.url}/close`)).body.toString(), 'until the end');
  } finally {
    await s.close();
  }
});

test('a malformed status line, a bad chunk, a body too large, or a connection cut short is a clear error', async () => {
  const s = await rawServer((req, socket) => {
    if (req.startsWith('GET /garbage')) socket.write('HTTP/1.1 OK\r\n\r\n');
    else if (req.startsWith('GET /not-http')) socket.write('SSH-2.0-OpenSSH_9.6\r\n\r\n');
    else if (req.startsWith('GET /chunk')) socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
    else if (req.startsWith('GET /big')) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n');
    else if (req.startsWith('GET /short')) socket.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    else socket.destroy();
  });
  try {
    await rejectsWith(get(`${s.url}/garbage`), 'EPROTO', new RegExp(`^GET http://127\\.0\\.0\\.1:${s.port}/garbage: invalid response: malformed status code$`));
    await rejectsWith(get(`${s.url}/not-http`), 'EPROTO', /\/not-http: invalid response: malformed status line$/);
    await rejectsWith(get(`${s.url}/chunk`), 'EPROTO', /\/chunk: invalid response body: invalid chunk size$/);
    await rejectsWith(get(`${s.url}/big`, { maxBodyBytes: 1000 }), 'EPROTO', /\/big: response body larger than 1000 bytes$/);
    await rejectsWith(get(`${s.url}/short`), 'ECONNRESET', /\/short: the connection closed before the response was complete$/);
    await assert.rejects(get(`${s.url}/reset`), (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET');
  } finally {
    await s.close();
  }
});

test('the whole exchange is bounded by its timeout; socket errors keep their code', async () => {
  const s = await rawServer(() => {}); // reads the request, never answers
  try {
    const t0 = performance.now();
    await rejectsWith(get(`${s.url}/slow`, { timeoutMs: 200 }), 'ETIMEDOUT', /\/slow: no complete response within 200 ms$/);
    const took = performance.now() - t0;
    assert.ok(took >= 190 && took < 1500, `timed out after ${took} ms`);
  } finally {
    await s.close();
  }
  // Nothing listens there any more.
  await assert.rejects(get(`${s.url}/`), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
});

test('a pool keeps connections alive, honours Connection: close, and bounds open connections per origin', async () => {
  let served = 0;
  const s = await rawServer((req, socket) => {
    served++;
    const close = req.startsWith('GET /close');
    // Answers late, so concurrent requests overlap.
    setTimeout(() => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5${close ? '\r\nConnection: close' : ''}\r\n\r\nok`), 20);
  });
  const pool = new ConnectionPool(2);
  try {
    for (let i = 0; i < 3; i++) assert.equal((await get(`${s.url}/a`, { pool })).body.toString(), 'ok');
    assert.equal(s.connections(), 1, 'three sequential requests on one connection');
    assert.doesNotMatch(s.requests[0]!, /connection:/i, 'a pooled request keeps HTTP/1.1 persistence');

    await get(`${s.url}/close`, { pool });
    await get(`${s.url}/a`, { pool });
    assert.equal(s.connections(), 2, 'the server closed one: the next request opened another');

    const results = await Promise.all(Array.from({ length: 8 }, () => get(`${s.url}/a`, { pool })));
    assert.ok(results.every((r) => r.status === 200));
    assert.ok(pool.openCount(new URL(s.url).origin) <= 2);
    assert.ok(s.connections() <= 3, `8 concurrent requests used at most 2 connections (${s.connections()} opened in all)`);
    assert.equal(served, 13);
  } finally {
    pool.close();
    await s.close();
  }
});

test('an upgrade hands over the connection with the bytes after the 101; any other answer comes back as a response', async () => {
  const s = await rawServer((req, socket) => {
    if (!/\r\nupgrade: weft-test\r\n/.test(req) || !/\r\nconnection: upgrade\r\n/.test(req)) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    else if (req.startsWith('GET /no')) socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n');
    else {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: weft-test\r\n\r\nfirst\n');
      socket.removeAllListeners('data');
      socket.on('data', (c: Buffer) => socket.write(`echo ${c}`));
    }
  });
  try {
    const up = await upgradeRequest({ url: new URL(`${s.url}/stream`), method: 'GET', timeoutMs: 2000 }, 'weft-test');
    assert.ok('socket' in up);
    assert.equal(up.rest.toString(), 'first\n');
    const echoed = await new Promise<string>((resolve) => {
      up.socket.once('data', (c: Buffer) => resolve(c.toString()));
      up.socket.resume();
      up.socket.write('ping');
    });
    assert.equal(echoed, 'echo ping');
    up.socket.destroy();

    const refused = await upgradeRequest({ url: new URL(`${s.url}/no`), method: 'GET', timeoutMs: 2000 }, 'weft-test');
    assert.ok(!('socket' in refused));
    assert.equal(refused.status, 403);
  } finally {
    await s.close();
  }
});

test('https: the server is checked against the given roots and checkServerIdentity, with a client certificate', async () => {
  const HOUR = 3600_000;
  const now = Date.now();
  const rootKey = generateKey();
  const rootPem = createRootCertificate({ key: rootKey, trustDomain: 'cluster.local', commonName: 'test root', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
  const root = new X509Certificate(rootPem);
  const leaf = (id: string): { key: string; cert: string } => {
    const key = generateKey();
    return { key: keyToPem(key), cert: issueLeafCertificate({ publicKey: createPublicKey(key), spiffeId: id, issuerCert: root, issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + HOUR) }).pem };
  };
  const serverId = 'spiffe://cluster.local/ns/weft-system/sa/weft-control';
  const clientId = 'spiffe://cluster.local/ns/default/sa/web';
  const peers: string[] = [];
  let connections = 0;
  const server = createTlsServer({ ...leaf(serverId), ca: [rootPem], requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (socket) => {
    connections++;
    peers.push(String(socket.getPeerCertificate().subjectaltname));
    socket.on('error', () => {});
    socket.on('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`);
  const pool = new ConnectionPool(2);
  try {
    const creds = { ...leaf(clientId), ca: [rootPem], minVersion: 'TLSv1.3' as const };
    const post = (tls: object): Promise<SimpleResponse> => simpleRequest({ url, method: 'POST', body: '{}', timeoutMs: 2000, pool, tls });
    assert.equal((await post({ ...creds, checkServerIdentity: expectSpiffeId(serverId) })).status, 200);
    assert.equal((await post({ ...creds, checkServerIdentity: expectSpiffeId(serverId) })).status, 200);
    assert.equal(connections, 1, 'the same credentials reuse the connection');
    assert.deepEqual(peers, [`URI:${clientId}`]);
    // A renewed certificate opens a new connection (the server sees the new one).
    const renewed = { ...leaf(clientId), ca: [rootPem] };
    assert.equal((await post({ ...renewed, checkServerIdentity: expectSpiffeId(serverId) })).status, 200);
    assert.equal(connections, 2);
    // The wrong identity, and an unknown root, are refused with the reason.
    await assert.rejects(post({ ...creds, checkServerIdentity: expectSpiffeId('spiffe://cluster.local/ns/x/sa/y') }), /peer is spiffe:\/\/cluster\.local\/ns\/weft-system\/sa\/weft-control, expected spiffe:\/\/cluster\.local\/ns\/x\/sa\/y/);
    await assert.rejects(simpleRequest({ url, method: 'GET', timeoutMs: 2000, tls: { ...leaf(clientId) } }), (e: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO|unable to/i.test(`${e.code} ${e.message}`));
    // A setting left undefined is not a setting: the server is still verified.
    await assert.rejects(simpleRequest({ url, method: 'GET', timeoutMs: 2000, tls: { ...leaf(clientId), rejectUnauthorized: undefined, checkServerIdentity: undefined } }), (e: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO|unable to/i.test(`${e.code} ${e.message}`));
  } finally {
    pool.close();
    await new Promise((r) => server.close(r));
  }
});
