import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { onFirstByte, peekBytes, type PeekOptions } from './first-byte.js';

/** Accepts one connection, peeks on it, lets `client` act; resolves with what happened on the server side. */
async function peek(min: number | ((h: Buffer) => boolean), timeoutMs: number, client: (c: Socket) => void, opts?: PeekOptions): Promise<{ event: string; head: string | null; destroyed: boolean }> {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const result = new Promise<{ event: string; head: string | null; destroyed: boolean }>((resolve) => {
    server.once('connection', (s: Socket) => {
      const done = (event: string, head: Buffer | null): void => resolve({ event, head: head?.toString('latin1') ?? null, destroyed: s.destroyed });
      s.once('close', () => done('closed', null));
      peekBytes(s, min, timeoutMs, (head) => done('then', head), {
        ...(opts?.onTimeout !== undefined ? { onTimeout: (h) => done('timeout', h) } : {}),
        ...(opts?.onEnd !== undefined ? { onEnd: (h) => done('end', h) } : {}),
      });
    });
  });
  const c = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  c.on('error', () => {});
  c.on('connect', () => client(c));
  const r = await result;
  c.destroy();
  server.close();
  return r;
}

test('peekBytes: enough bytes call `then` with them', async () => {
  assert.deepEqual(await peek(3, 1000, (c) => c.write('abcdef')), { event: 'then', head: 'abcdef', destroyed: false });
  assert.deepEqual(await peek((h) => h.includes(0x0a), 1000, (c) => c.write('ab\ncd')), { event: 'then', head: 'ab\ncd', destroyed: false });
});

test('peekBytes: without options, too little in time or an early end destroys the socket', async () => {
  assert.equal((await peek(3, 50, (c) => c.write('a'))).event, 'closed');
  assert.equal((await peek(3, 1000, (c) => c.end('a'))).event, 'closed');
});

test('peekBytes: onTimeout and onEnd are called instead, with the bytes seen', async () => {
  const noop = (): void => {};
  assert.deepEqual(await peek(3, 50, (c) => c.write('a'), { onTimeout: noop }), { event: 'timeout', head: 'a', destroyed: false });
  assert.deepEqual(await peek(3, 50, () => {}, { onTimeout: noop }), { event: 'timeout', head: null, destroyed: false });
  assert.deepEqual(await peek(3, 1000, (c) => c.end('ab'), { onEnd: noop }), { event: 'end', head: 'ab', destroyed: false });
});

test('peekBytes after an earlier peek: the paused socket is read again (the inbound sniffs a plaintext caller twice)', async () => {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const seen = new Promise<{ first: number; head: string; rest: string }>((resolve, reject) => {
    server.once('connection', (s: Socket) => {
      const timer = setTimeout(() => reject(new Error('the second peek never saw the bytes: the socket stayed paused')), 2000);
      onFirstByte(s, 1000, (first) =>
        peekBytes(s, 3, 1000, (head) => {
          // The next owner resumes and gets the same bytes first.
          let rest = '';
          s.on('data', (c: Buffer) => {
            rest += c.toString('latin1');
            if (rest.length >= 6) {
              clearTimeout(timer);
              resolve({ first, head: head.toString('latin1'), rest });
            }
          });
          s.resume();
        }),
      );
    });
  });
  const c = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' });
  c.on('error', () => {});
  // The first byte alone, then the rest: the second peek must read again after the first paused.
  c.on('connect', () => {
    c.write('G');
    setTimeout(() => c.write('ET /x'), 50);
  });
  try {
    assert.deepEqual(await seen, { first: 0x47, head: 'GET /x', rest: 'GET /x' });
  } finally {
    c.destroy();
    server.close();
  }
});
