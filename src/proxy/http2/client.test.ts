import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createServer, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Body } from '../body.js';
import { newRequestContext, type RequestContext } from '../message.js';
import { Http2Pool } from './client.js';
import { WeftHttp2Pool } from './upstream.js';

/** The same cases against node:http2's pool and Weft's own engine. */
const POOLS = [Http2Pool, WeftHttp2Pool] as const;

function context(): RequestContext {
  return newRequestContext({ direction: 'outbound', requestId: 'r', start: 0 });
}

function readAll(b: Body | null): Promise<string> {
  return new Promise((resolve, reject) => {
    if (b === null) return resolve('');
    let s = '';
    b.pipe({ data: (c) => ((s += c.toString()), true), end: () => resolve(s), error: reject });
  });
}

for (const Pool of POOLS) test(`${Pool.name}: a stream the server refuses unprocessed (REFUSED_STREAM) is sent again, body and all; other resets are not`, async () => {
  let streams = 0;
  const server = createServer();
  server.on('stream', (stream: ServerHttp2Stream, headers) => {
    streams++;
    stream.on('error', () => {}); // a stream closed with an error code reports it here
    if (streams === 1 || headers[':path'] === '/reset') {
      stream.close(headers[':path'] === '/reset' ? constants.NGHTTP2_INTERNAL_ERROR : constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const parts: Buffer[] = [];
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(`got ${Buffer.concat(parts).toString()}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const pool = new Pool('127.0.0.1', (server.address() as AddressInfo).port, { connectTimeoutMs: 1000, idleTimeoutMs: 5000 });
  try {
    const res = await pool.request({ method: 'POST', path: '/', authority: 'x', headers: [], body: Body.of(Buffer.from('hello')) }, context(), 0);
    assert.equal(res.status, 200);
    assert.equal(await readAll(res.body), 'got hello');
    assert.equal(streams, 2, 'refused once, answered the second time');
    await assert.rejects(pool.request({ method: 'GET', path: '/reset', authority: 'x', headers: [], body: null }, context(), 0), /UPSTREAM_RESET|reset the HTTP\/2 stream/);
    assert.equal(streams, 3, 'a stream reset after it was taken is not sent again');
    assert.equal(pool.active, 0);
  } finally {
    pool.close();
    server.close();
  }
});
