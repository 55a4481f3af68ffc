// Misbehaving peers on either side must never desynchronise a connection: regression tests for
// faults found in review, each against a real proxy process and raw sockets.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { eventually, freePort, meshYaml, rawExchange, startProxy, tempFile, type RunningProxy } from './harness.js';

/** A raw upstream: `answer` gets each request head (as text) and the socket. Bodies are not read. */
async function rawUpstream(answer: (head: string, s: Socket) => void): Promise<{ port: number; heads: string[]; close(): void }> {
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) !== -1) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        heads.push(head);
        answer(head, s);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    heads,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n`;
const bodyOf = (text: string): string => text.slice(text.indexOf('\r\n\r\n') + 4);

describe('upstream and client faults', { timeout: 20_000 }, () => {
  let up: Awaited<ReturnType<typeof rawUpstream>>;
  let proxy: RunningProxy;

  before(async () => {
    up = await rawUpstream((head, s) => {
      const path = head.split(' ')[1];
      if (path === '/no-body-then-junk') {
        s.write('HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nINJECTED');
      } else if (path === '/cut') {
        s.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789');
      } else if (path === '/wait-body') {
        // Answers only after the whole body arrived (never, in the half-close test).
      } else {
        s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${path!.length}\r\n\r\n${path}`);
      }
    });
    const file = tempFile('mesh.yaml', meshYaml({ v1: up.port, v2: up.port, tcp: await freePort() }, '  - backendRefs: [{ name: echo-v1, port: 80 }]'));
    proxy = await startProxy(file, 'client-1', ['--idle-timeout', '1s']);
  });

  after(async () => {
    await proxy?.stop();
    up?.close();
  });

  test('bytes after a bodyless response never reach the next request on that upstream connection', async () => {
    const first = await rawExchange(proxy.outbound, get('/no-body-then-junk'));
    assert.match(first.text, /^HTTP\/1\.1 204 /);
    for (const path of ['/b', '/c', '/d']) {
      const r = await rawExchange(proxy.outbound, get(path));
      assert.match(r.text, /^HTTP\/1\.1 200 /, path);
      assert.equal(bodyOf(r.text), path);
    }
  });

  test('a response cut short resets the client and no pipelined request behind it is sent', async () => {
    const before = up.heads.length;
    const r = await rawExchange(
      proxy.outbound,
      'GET /cut HTTP/1.1\r\nHost: echo\r\n\r\nPOST /transfer-money HTTP/1.1\r\nHost: echo\r\nContent-Length: 0\r\n\r\n',
    );
    assert.ok(r.closed);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(!r.text.includes('/transfer-money'));
    await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(up.heads.slice(before).map((h) => h.split(' ')[1]), ['/cut']);
  });

  test('a client that half-closes in the middle of its body gets 400 at once and frees the upstream', async () => {
    const s = connect(proxy.outbound, '127.0.0.1');
    let text = '';
    s.on('data', (c: Buffer) => (text += c.toString()));
    const closed = new Promise((r) => s.once('close', r));
    s.write('POST /wait-body HTTP/1.1\r\nHost: echo\r\nContent-Length: 100\r\n\r\n0123456789');
    await eventually(() => up.heads.some((h) => h.startsWith('POST /wait-body')), 3000, 'request reached upstream');
    s.end();
    await closed;
    assert.match(text, /^HTTP\/1\.1 400 /);
    assert.match(text, /request body truncated/);
    await eventually(async () => {
      const m = await rawExchange(proxy.admin, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      return /weft_upstream_requests_active\{[^}]*\} 0\n/.test(m.text) && !/weft_upstream_requests_active\{[^}]*\} [1-9]/.test(m.text);
    }, 3000, 'upstream request released');
  });

  test('a request body that stops arriving gets 408 after the idle timeout and frees the upstream', async () => {
    const t0 = Date.now();
    const r = await rawExchange(proxy.outbound, 'POST /wait-body HTTP/1.1\r\nHost: echo\r\nContent-Length: 100\r\n\r\n0123456789', 5000);
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    assert.match(r.text, /weft-error: REQUEST_TIMEOUT/);
    assert.match(r.text, /request body idle for 1000 ms/);
    assert.ok(r.closed);
    assert.ok(Date.now() - t0 >= 900, `answered after ${Date.now() - t0} ms`);
  });

  test('pipelined requests sent before a half-close are all answered', async () => {
    const s = connect(proxy.outbound, '127.0.0.1');
    let text = '';
    s.on('data', (c: Buffer) => (text += c.toString()));
    const closed = new Promise((r) => s.once('close', r));
    s.end('GET /p1 HTTP/1.1\r\nHost: echo\r\n\r\nGET /p2 HTTP/1.1\r\nHost: echo\r\n\r\nGET /p3 HTTP/1.1\r\nHost: echo\r\n\r\n');
    await closed;
    assert.equal(text.match(/HTTP\/1\.1 200 /g)?.length, 3);
    assert.ok(text.endsWith('/p3'));
  });

  test('HTTP/1.0 clients get no 100 Continue and no Expect is forwarded', async () => {
    const r = await rawExchange(proxy.outbound, 'POST /ten HTTP/1.0\r\nHost: echo\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi');
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(!r.text.includes('100 Continue'));
    const head = up.heads.find((h) => h.startsWith('POST /ten'))!;
    assert.ok(!/^expect:/im.test(head), head);
  });
});
