import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { Endpoint } from '../../model/snapshot.js';
import type { MeshError } from '../../core/errors.js';
import { TunnelDialer, type OpenTunnel } from './tunnel-client.js';

/** A fake inbound listener on loopback that answers each connection with `answer`. */
async function inbound(answer: (s: Socket, head: string) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    let buf = '';
    s.on('data', (c: Buffer) => {
      const had = buf.includes('\r\n\r\n');
      buf += c.toString('latin1');
      if (!had && buf.includes('\r\n\r\n')) answer(s, buf);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

const endpoint = (port: number): Endpoint => ({ workload: 'default/db-1', address: '127.0.0.1', port, appPort: 5432, proxied: true, identity: 'spiffe://cluster.local/ns/default/sa/db', labels: {} });

function dial(port: number, timeoutMs = 2000, source = ''): Promise<{ err: MeshError | null; tunnel: OpenTunnel | null }> {
  const dialer = new TunnelDialer(() => null, () => source);
  return new Promise((resolve) => dialer.open(endpoint(port), 'db.default:9000', timeoutMs, (err, tunnel) => resolve({ err, tunnel })));
}

test('asks for the app port with CONNECT, and hands over the bytes that came right behind the 200', async () => {
  let asked = '';
  const fake = await inbound((s, head) => {
    asked = head;
    s.write('HTTP/1.1 200 OK\r\n\r\nhello');
  });
  try {
    const { err, tunnel } = await dial(fake.port);
    assert.equal(err, null);
    assert.equal(asked, 'CONNECT 127.0.0.1:5432 HTTP/1.1\r\nhost: 127.0.0.1:5432\r\nweft-service: db.default:9000\r\n\r\n');
    assert.equal(tunnel!.transport, 'plaintext');
    assert.equal(tunnel!.rest?.toString(), 'hello');
    tunnel!.socket.destroy();
  } finally {
    await fake.close();
  }
});

test('names this proxy\'s own service on the CONNECT, as HTTP requests do', async () => {
  let asked = '';
  const fake = await inbound((s, head) => {
    asked = head;
    s.write('HTTP/1.1 200 OK\r\n\r\n');
  });
  try {
    const { err, tunnel } = await dial(fake.port, 2000, 'web.default');
    assert.equal(err, null);
    assert.equal(asked, 'CONNECT 127.0.0.1:5432 HTTP/1.1\r\nhost: 127.0.0.1:5432\r\nweft-service: db.default:9000\r\nweft-source-service: web.default\r\n\r\n');
    tunnel!.socket.destroy();
  } finally {
    await fake.close();
  }
});

test('a refusal carries the inbound\'s code and message, even with the body in a later packet', async () => {
  const body = JSON.stringify({ code: 'DENIED', message: 'spiffe://x may not connect here' });
  const fake = await inbound((s) => {
    s.write(`HTTP/1.1 403 Forbidden\r\nweft-error: DENIED\r\ncontent-length: ${body.length}\r\n\r\n`);
    setTimeout(() => s.end(body), 20);
  });
  try {
    const { err } = await dial(fake.port);
    assert.equal(err?.code, 'DENIED');
    assert.equal(err?.message, 'the proxy of default/db-1 (127.0.0.1:' + fake.port + ') refused the tunnel to 127.0.0.1:5432: 403 spiffe://x may not connect here');
  } finally {
    await fake.close();
  }
});

test('what is not a weft answer, no answer, a silent peer and a closed port each fail with their own code', async () => {
  const other = await inbound((s) => s.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n'));
  const mute = await inbound((s) => s.end());
  const silent = await inbound(() => {});
  const closed = await inbound(() => {});
  const closedPort = closed.port;
  await closed.close();
  try {
    assert.equal((await dial(other.port)).err?.code, 'UPSTREAM_PROTOCOL_ERROR');
    assert.equal((await dial(mute.port)).err?.code, 'UPSTREAM_RESET');
    const slow = await dial(silent.port, 100);
    assert.equal(slow.err?.code, 'UPSTREAM_CONNECT_FAILURE');
    assert.match(slow.err!.message, /not established within 100 ms/);
    assert.equal((await dial(closedPort)).err?.code, 'UPSTREAM_CONNECT_FAILURE');
  } finally {
    await Promise.all([other.close(), mute.close(), silent.close()]);
  }
});
