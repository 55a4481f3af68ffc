// Weft's HTTP/2 downstream (downstream.ts) on raw sockets: connections that never get going are
// closed by the idle timeout, and drain() is the engine's two-step GOAWAY (RFC 9113 6.8).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { Body } from '../body.js';
import type { Handler } from '../message.js';
import { WeftHttp2Downstream, type WeftHttp2ServerConnection } from './downstream.js';
import { CLIENT_PREFACE, ErrorCode, Flag, FrameReader, FrameType, writeFrameHeader } from './frames.js';

function frame(type: number, flags: number, id: number, payload: number[] = []): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  writeFrameHeader(b, 0, payload.length, type, flags, id);
  Buffer.from(payload).copy(b, 9);
  return b;
}
/** :method GET, :scheme http, :path /, :authority a (static table). */
const GET_BLOCK = [0x82, 0x86, 0x84, 0x01, 0x01, 0x61];
const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

async function serve(handler: Handler, idleTimeoutMs: number): Promise<{ port: number; conns: WeftHttp2ServerConnection[]; close(): void }> {
  const downstream = new WeftHttp2Downstream(() => handler, { direction: 'outbound', idleTimeoutMs, maxHeaderListSize: 65536 });
  const conns: WeftHttp2ServerConnection[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => conns.push(downstream.accept(s, null)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    conns,
    close: () => {
      downstream.close();
      server.close();
    },
  };
}

interface Peer {
  socket: Socket;
  frames: Array<{ type: number; flags: number; id: number; payload: Buffer }>;
  closed: () => boolean;
}

async function peer(port: number): Promise<Peer> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
  socket.on('error', () => {});
  const frames: Peer['frames'] = [];
  const reader = new FrameReader((type, flags, id, payload) => frames.push({ type, flags, id, payload: Buffer.from(payload) }), 1 << 24);
  socket.on('data', (c: Buffer) => reader.push(c));
  let closed = false;
  socket.on('close', () => (closed = true));
  return { socket, frames, closed: () => closed };
}

const ok: Handler = async () => ({ status: 200, headers: [], body: Body.of(Buffer.from('ok')) });

test('a connection that never sends the preface, or never its SETTINGS, is closed by the idle timeout', async () => {
  const sv = await serve(ok, 200);
  const silent = await peer(sv.port);
  const noSettings = await peer(sv.port);
  try {
    const t0 = Date.now();
    noSettings.socket.write(CLIENT_PREFACE);
    await until(() => silent.closed() && noSettings.closed(), 3000, 'both closed');
    const ms = Date.now() - t0;
    console.log(`# idle: a silent connection and one without SETTINGS closed after ${ms} ms (idleTimeoutMs 200)`);
    assert.ok(ms >= 150, `closed after ${ms} ms, before the idle timeout`);
    assert.ok(noSettings.frames.some((f) => f.type === FrameType.GOAWAY));
  } finally {
    silent.socket.destroy();
    noSettings.socket.destroy();
    sv.close();
  }
});

test('drain(): GOAWAY 2^31-1 first (streams opened meanwhile are served), the real last stream id later, then close', async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const sv = await serve(async (req) => {
    if (req.path === '/held') await released;
    return { status: 200, headers: [], body: Body.of(Buffer.from('done')) };
  }, 5000);
  const p = await peer(sv.port);
  try {
    const held = [0x82, 0x86, 0x04, 0x05, ...Buffer.from('/held'), 0x01, 0x01, 0x61];
    p.socket.write(Buffer.concat([CLIENT_PREFACE, frame(FrameType.SETTINGS, 0, 0), frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, held)]));
    await until(() => sv.conns.length === 1, 2000, 'connection');
    await delay(50);
    sv.conns[0]!.drain();
    const goaways = (): Array<{ last: number; code: number }> =>
      p.frames.filter((f) => f.type === FrameType.GOAWAY).map((f) => ({ last: f.payload.readUInt32BE(0), code: f.payload.readUInt32BE(4) }));
    await until(() => goaways().length === 1, 2000, 'first GOAWAY');
    assert.deepEqual(goaways()[0], { last: 2 ** 31 - 1, code: ErrorCode.NO_ERROR });
    // Sent before the client saw the GOAWAY: still served.
    p.socket.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, GET_BLOCK));
    await until(() => p.frames.some((f) => f.type === FrameType.DATA && f.id === 3 && (f.flags & Flag.END_STREAM) !== 0), 2000, 'stream 3 answered');
    await until(() => goaways().length === 2, 3000, 'second GOAWAY');
    assert.deepEqual(goaways()[1], { last: 3, code: ErrorCode.NO_ERROR });
    assert.equal(p.closed(), false, 'stream 1 still in flight');
    release();
    await until(() => p.closed(), 3000, 'close after the last stream');
    assert.ok(p.frames.some((f) => f.type === FrameType.DATA && f.id === 1));
    console.log(`# drain: GOAWAYs ${JSON.stringify(goaways())}; streams 1 and 3 answered, then closed`);
  } finally {
    p.socket.destroy();
    sv.close();
  }
});
