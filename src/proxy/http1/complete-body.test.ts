// A body that is already complete when its head is written goes out whole, at every size: small ones
// in the head's write, larger ones through the corked path (which once waited forever for a 'drain'
// a corked socket never emits, once the body passed the socket's 16 KiB high-water mark).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as httpServer, request as httpRequest } from 'node:http';
import { createServer as netServer, type AddressInfo, type Server } from 'node:net';
import { Body } from '../body.js';
import { newRequestContext } from '../message.js';
import { Http1Pool } from './client.js';
import { defaultHeadLimits } from './parse.js';
import { Http1ServerConnection } from './server.js';

const SIZES = [0, 1000, 16 * 1024, 16 * 1024 + 1, 40_000, 100_000, 1_000_000];

function listen(server: Server | ReturnType<typeof httpServer>): Promise<number> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
}

test('upstream side: a complete request body of any size reaches the server intact', async () => {
  const server = httpServer((req, res) => {
    let n = 0;
    let sum = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      for (const b of c) sum = (sum + b) % 65521;
    });
    req.on('end', () => res.end(`${n} ${sum}`));
  });
  const port = await listen(server);
  const pool = new Http1Pool('127.0.0.1', port, { connectTimeoutMs: 1000, maxIdle: 4, idleTimeoutMs: 5000 });
  try {
    for (const size of SIZES) {
      const bytes = Buffer.alloc(size);
      let sum = 0;
      for (let i = 0; i < size; i++) {
        bytes[i] = (i * 7) & 0xff;
        sum = (sum + bytes[i]!) % 65521;
      }
      const res = await pool.request({ method: 'POST', path: '/', authority: 'app', headers: [], body: Body.of(bytes) }, newRequestContext({ direction: 'outbound', requestId: 'r', start: 0 }), 2000);
      const parts: Buffer[] = [];
      await new Promise((resolve, reject) => res.body!.pipe({ data: (c) => (parts.push(c), true), end: resolve, error: reject }));
      assert.equal(Buffer.concat(parts).toString(), `${size} ${sum}`, `a ${size}-byte body`);
    }
    assert.ok(pool.total === SIZES.length);
  } finally {
    pool.close();
    await new Promise((r) => server.close(r));
  }
});

test('listener side: a complete response body of any size reaches the client intact', async () => {
  const server = netServer((socket) => {
    new Http1ServerConnection(
      socket,
      async (req) => {
        const size = Number(req.path.slice(1));
        return { status: 200, headers: ['content-type', 'application/octet-stream'], body: Body.of(Buffer.alloc(size, 0x61)) };
      },
      { direction: 'inbound', limits: defaultHeadLimits, requestHeaderTimeoutMs: 5000, idleTimeoutMs: 5000 },
    );
  });
  const port = await listen(server);
  try {
    for (const size of SIZES) {
      const got = await new Promise<{ status: number; length: string | undefined; bytes: Buffer }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: `/${size}`, timeout: 2000 }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, length: res.headers['content-length'], bytes: Buffer.concat(parts) }));
        });
        req.on('timeout', () => req.destroy(new Error(`no complete response for a ${size}-byte body within 2 s`)));
        req.on('error', reject);
        req.end();
      });
      assert.equal(got.status, 200);
      assert.equal(got.length, String(size));
      assert.equal(got.bytes.length, size);
      assert.ok(got.bytes.every((b) => b === 0x61));
    }
  } finally {
    await new Promise((r) => server.close(r));
  }
});
