import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { MeshError } from '../../core/errors.js';
import { Body } from '../body.js';
import type { Handler } from '../message.js';
import { Http2Downstream } from './server.js';

async function serve(handler: Handler, onExchange: (status: number, errorCode: string) => void): Promise<{ server: Server; downstream: Http2Downstream; port: number }> {
  const downstream = new Http2Downstream(() => handler, { direction: 'outbound', idleTimeoutMs: 5000, maxHeaderListSize: 65536, onExchange: (_ctx, status, code) => onExchange(status, code) });
  const server = createServer((socket) => downstream.accept(socket, null));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, downstream, port: (server.address() as AddressInfo).port };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);
}

test('a client that resets its stream before the answer aborts the exchange (CLIENT_CLOSED), reported once', async () => {
  let started!: () => void;
  const handlerStarted = new Promise<void>((r) => (started = r));
  let abortedWith!: (err: Error) => void;
  const aborted = new Promise<Error>((r) => (abortedWith = r));
  const exchanges: number[] = [];
  // The upstream never answers: only an abort ends the exchange.
  const handler: Handler = (_req, ctx) =>
    new Promise((_, reject) => {
      ctx.abortHandlers.push((err) => {
        abortedWith(err);
        reject(err);
      });
      started();
    });
  const { server, downstream, port } = await serve(handler, (status) => exchanges.push(status));
  let client: ClientHttp2Session | null = null;
  try {
    client = connect(`http://127.0.0.1:${port}`);
    const stream = client.request({ ':path': '/slow', ':authority': 'upstream' });
    stream.on('error', () => {});
    await within(handlerStarted, 2000, 'handler');
    stream.close(constants.NGHTTP2_CANCEL);
    const err = await within(aborted, 2000, 'abort');
    assert.ok(err instanceof MeshError);
    assert.equal(err.code, 'CLIENT_CLOSED');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(exchanges.length, 1, 'the exchange is reported once');
    console.log(`# reset before the answer: aborted with ${err.code}, ${exchanges.length} exchange reported`);
  } finally {
    client?.close();
    downstream.close();
    server.close();
  }
});

test('a complete answer goes out whole; a streamed one with its trailers; both reported once', async () => {
  const exchanges: number[] = [];
  const handler: Handler = async (req) => {
    if (req.path === '/whole') return { status: 200, headers: ['content-type', 'text/plain'], body: Body.of(Buffer.from('hello')) };
    // Streamed: the body ends later, with trailers (as an HTTP/2 upstream's gRPC answer does).
    const body = new Body(-1);
    setTimeout(() => {
      body.push(Buffer.from('part1 '));
      body.push(Buffer.from('part2'));
      body.end(['grpc-status', '0']);
    }, 20);
    return { status: 200, headers: ['content-type', 'application/grpc'], body };
  };
  const { server, downstream, port } = await serve(handler, (status) => exchanges.push(status));
  let client: ClientHttp2Session | null = null;
  const get = (path: string): Promise<{ status: number; body: string; trailers: Record<string, unknown> | null; length: unknown }> =>
    new Promise((resolve, reject) => {
      const s = client!.request({ ':path': path, ':authority': 'upstream' });
      let status = 0;
      let length: unknown;
      let body = '';
      let trailers: Record<string, unknown> | null = null;
      s.on('response', (h) => ((status = Number(h[':status'])), (length = h['content-length'])));
      s.on('data', (c: Buffer) => (body += c.toString()));
      s.on('trailers', (t) => (trailers = { ...t }));
      s.on('end', () => resolve({ status, body, trailers, length }));
      s.on('error', reject);
    });
  try {
    client = connect(`http://127.0.0.1:${port}`);
    const whole = await within(get('/whole'), 2000, '/whole');
    assert.deepEqual(whole, { status: 200, body: 'hello', trailers: null, length: '5' });
    const streamed = await within(get('/streamed'), 2000, '/streamed');
    assert.equal(streamed.body, 'part1 part2');
    assert.equal(streamed.trailers?.['grpc-status'], '0');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(exchanges, [200, 200]);
    console.log(`# whole: ${JSON.stringify(whole.body)}, streamed: ${JSON.stringify(streamed.body)} + grpc-status ${String(streamed.trailers?.['grpc-status'])}`);
  } finally {
    client?.close();
    downstream.close();
    server.close();
  }
});
