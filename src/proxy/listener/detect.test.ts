import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { H2_PREFACE } from '../../core/first-byte.js';
import { MAX_DETECT_BYTES, classify, detectProtocol, type Detection } from './detect.js';

const b = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));

describe('classify', () => {
  test('HTTP/1 request lines, once the line is complete', () => {
    for (const line of ['GET / HTTP/1.1\r\n', 'POST /a?b=c HTTP/1.0\r\nHost: x\r\n', 'GET http://echo/x HTTP/1.1\r\n', 'OPTIONS * HTTP/1.1\r\n', 'PROPFIND /dav HTTP/1.1\r\n', 'PATCH /p HTTP/1.1\r\n']) {
      assert.equal(classify(b(line)), 'http1', line);
    }
    // Every shorter prefix still waits for more.
    const line = 'DELETE /items/1 HTTP/1.1\r\n';
    for (let n = 1; n < line.length; n++) assert.equal(classify(b(line.slice(0, n))), null, JSON.stringify(line.slice(0, n)));
  });

  test('a method and a space are not enough: Redis inline commands, SMTP and others are TCP', () => {
    for (const head of ['GET key\r\n', 'GET / HTTP/2.0\r\n', 'GET / HTTP/1.1\n', 'GET  / HTTP/1.1\r\n', 'GET /\r\n', 'HELO mail.example\r\n', 'EHLO x\r\n', 'get / HTTP/1.1\r\n', 'CONNECT echo:80 HTTP/1.1\r\n', 'GETX / HTTP/1.1\r\n']) {
      assert.equal(classify(b(head)), 'tcp', JSON.stringify(head));
    }
  });

  test('decides as early as the bytes allow', () => {
    assert.equal(classify(b('*3\r\n$3\r\nSET\r\n')), 'tcp', 'RESP');
    assert.equal(classify(b('*')), 'tcp');
    assert.equal(classify(b('Q')), 'tcp');
    assert.equal(classify(b('GET /a\tb')), 'tcp', 'a control byte in the target');
    assert.equal(classify(b('GET /a\r')), null, 'a CR may start the line end');
    assert.equal(classify(b('GET /a\rb')), 'tcp');
    assert.equal(classify(b([0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f])), 'tcp', "PostgreSQL's SSLRequest");
    assert.equal(classify(b('')), null);
  });

  test('a request line longer than the limit is TCP', () => {
    const long = `GET /${'a'.repeat(MAX_DETECT_BYTES)}`;
    assert.equal(classify(b(long)), 'tcp');
    assert.equal(classify(b(`${long} HTTP/1.1\r\n`)), 'tcp');
    assert.equal(classify(b(`GET /${'a'.repeat(MAX_DETECT_BYTES - 100)} HTTP/1.1\r\n`)), 'http1');
  });

  test('the HTTP/2 preface, whole', () => {
    assert.equal(classify(H2_PREFACE), 'h2');
    assert.equal(classify(Buffer.concat([H2_PREFACE, b([0, 0, 0, 4, 0, 0, 0, 0, 0])])), 'h2');
    for (let n = 1; n < H2_PREFACE.length; n++) assert.equal(classify(H2_PREFACE.subarray(0, n)), null, `${n} bytes`);
    assert.equal(classify(b('PRI * HTTP/1.1\r\n')), 'tcp');
    assert.equal(classify(b('PUT / HTTP/1.1\r\n')), 'http1', 'P starts the preface and methods alike');
  });

  test('a TLS handshake record', () => {
    assert.equal(classify(b([0x16])), null);
    assert.equal(classify(b([0x16, 0x03, 0x01, 0x02, 0x00])), 'tls');
    assert.equal(classify(b([0x16, 0x01])), 'tcp');
  });
});

describe('detectProtocol on a socket', () => {
  let server: Server;
  let port: number;
  const accepted: Array<(s: Socket) => void> = [];
  before(async () => {
    server = createServer({ allowHalfOpen: true }, (s) => accepted.shift()!(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  /** Connects, lets `client` act, and detects on the server side; resolves with the decision, what the server side then reads, and the time taken. */
  function run(client: (s: Socket) => void, waitMs = 150): Promise<{ d: Detection; rest: string; ms: number }> {
    return new Promise((resolve) => {
      accepted.push((s) => {
        const start = performance.now();
        detectProtocol(s, waitMs, (d) => {
          const ms = performance.now() - start;
          let rest = d.sentBeforeEnd?.toString('latin1') ?? '';
          if (d.reason === 'end') {
            resolve({ d, rest, ms });
            s.destroy();
            return;
          }
          s.on('data', (c: Buffer) => (rest += c.toString('latin1')));
          s.on('end', () => {
            resolve({ d, rest, ms });
            s.destroy();
          });
          s.resume();
        });
      });
      const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      c.on('error', () => {});
      c.on('connect', () => client(c));
    });
  }

  test('by bytes: the bytes read are put back for the next owner', async () => {
    const r = await run((c) => c.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.deepEqual(r.d, { protocol: 'http1', reason: 'bytes', sentBeforeEnd: null });
    assert.equal(r.rest, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  });

  test('by bytes, written in pieces', async () => {
    const r = await run((c) => {
      c.write('G');
      setTimeout(() => c.write('ET /x HT'), 20);
      setTimeout(() => c.end('TP/1.1\r\n\r\n'), 40);
    });
    assert.equal(r.d.protocol, 'http1');
    assert.equal(r.rest, 'GET /x HTTP/1.1\r\n\r\n');
  });

  test('silence until the wait ends: TCP, and later bytes flow', async () => {
    const r = await run((c) => setTimeout(() => c.end('hello'), 300), 100);
    assert.deepEqual(r.d, { protocol: 'tcp', reason: 'timeout', sentBeforeEnd: null });
    assert.ok(r.ms >= 95 && r.ms < 290, `${r.ms} ms`);
    assert.equal(r.rest, 'hello');
  });

  test('a partial request line when the wait ends: TCP, bytes kept', async () => {
    const r = await run((c) => {
      c.write('GET /slow');
      setTimeout(() => c.end(' HTTP/1.1\r\n'), 250);
    }, 100);
    assert.equal(r.d.reason, 'timeout');
    assert.equal(r.d.protocol, 'tcp');
    assert.equal(r.rest, 'GET /slow HTTP/1.1\r\n');
  });

  test('the client ends its side first: TCP with the bytes it sent', async () => {
    const r = await run((c) => c.end('GET'));
    assert.deepEqual(r.d, { protocol: 'tcp', reason: 'end', sentBeforeEnd: Buffer.from('GET') });
    assert.equal(r.rest, 'GET');
  });

  test('a TLS ClientHello is decided at once', async () => {
    const r = await run((c) => c.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])));
    assert.equal(r.d.protocol, 'tls');
    assert.equal(r.d.reason, 'bytes');
    assert.ok(r.ms < 100);
    assert.equal(r.rest.length, 10);
  });
});
