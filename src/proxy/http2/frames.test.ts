import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLIENT_PREFACE, ErrorCode, Flag, FRAME_HEADER_SIZE, FrameReader, FrameType, H2Error, SettingId, errorCodeName,
  goawayFrame, headersFragment, headersFrames, parseSettings, pingFrame, rstStreamFrame, settingsAckFrame,
  settingsFrame, windowUpdateFrame, writeFrameHeader,
} from './frames.js';

interface Frame { type: number; flags: number; streamId: number; payload: Buffer }

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER_SIZE + payload.length);
  writeFrameHeader(buf, 0, payload.length, type, flags, streamId);
  payload.copy(buf, FRAME_HEADER_SIZE);
  return buf;
}

function collector(maxFrameSize?: number): { reader: FrameReader; frames: Frame[] } {
  const frames: Frame[] = [];
  const reader = new FrameReader((type, flags, streamId, payload) => frames.push({ type, flags, streamId, payload }), maxFrameSize);
  return { reader, frames };
}

const isH2Error = (code: number, pattern: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof H2Error, `expected H2Error, got ${String(e)}`);
  assert.equal(e.code, code, `code ${errorCodeName(e.code)}: ${e.message}`);
  assert.match(e.message, pattern);
  return true;
};

// Three frames: HEADERS on stream 1 (reserved bit set on the wire, which readers ignore), an empty
// SETTINGS ACK, and DATA with END_STREAM on stream 3.
const F1 = frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from('a header block'));
F1[5]! |= 0x80;
const F2 = settingsAckFrame();
const F3 = frame(FrameType.DATA, Flag.END_STREAM, 3, Buffer.from('some body bytes, twenty-nine'));
const THREE = Buffer.concat([F1, F2, F3]);

function assertThree(frames: Frame[], where: string): void {
  assert.equal(frames.length, 3, where);
  assert.deepEqual(
    frames.map((f) => [f.type, f.flags, f.streamId, f.payload.toString()]),
    [
      [FrameType.HEADERS, Flag.END_HEADERS, 1, 'a header block'],
      [FrameType.SETTINGS, Flag.ACK, 0, ''],
      [FrameType.DATA, Flag.END_STREAM, 3, 'some body bytes, twenty-nine'],
    ],
    where,
  );
}

test('the client preface is the RFC 9113 3.4 string', () => {
  assert.equal(CLIENT_PREFACE.toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  assert.equal(CLIENT_PREFACE.length, 24);
});

test('FrameReader: three frames in one chunk are views into it, in order', () => {
  const { reader, frames } = collector();
  reader.push(THREE);
  assertThree(frames, 'one chunk');
  for (const f of frames) assert.equal(f.payload.buffer, THREE.buffer, 'payload is a view, not a copy');
  assert.equal(frames[0]!.payload.byteOffset, THREE.byteOffset + FRAME_HEADER_SIZE);
});

test('FrameReader: every single split point and every pair of split points', () => {
  let runs = 0;
  for (let a = 0; a <= THREE.length; a++) {
    const { reader, frames } = collector();
    reader.push(THREE.subarray(0, a));
    reader.push(THREE.subarray(a));
    assertThree(frames, `split at ${a}`);
    runs++;
    for (let b = a; b <= THREE.length; b++) {
      const c = collector();
      c.reader.push(THREE.subarray(0, a));
      c.reader.push(THREE.subarray(a, b));
      c.reader.push(THREE.subarray(b));
      assertThree(c.frames, `splits at ${a}, ${b}`);
      runs++;
    }
  }
  assert.ok(runs > 1000);
});

test('FrameReader: only a frame that spans chunks is copied', () => {
  const { reader, frames } = collector();
  const a = THREE.subarray(0, F1.length + 3);   // F1 whole, then part of F2's header
  const b = Buffer.from(THREE.subarray(F1.length + 3));  // a separate allocation
  reader.push(a);
  reader.push(b);
  assertThree(frames, 'two chunks');
  assert.equal(frames[0]!.payload.buffer, a.buffer, 'F1 lies in chunk a: a view');
  assert.equal(frames[2]!.payload.buffer, b.buffer, 'F3 lies in chunk b: a view');
});

test('FrameReader: one byte at a time', () => {
  const { reader, frames } = collector();
  for (let i = 0; i < THREE.length; i++) reader.push(THREE.subarray(i, i + 1));
  assertThree(frames, '1-byte pushes');
  // Twice over: the reader's state is clean after each frame.
  for (let i = 0; i < THREE.length; i++) reader.push(THREE.subarray(i, i + 1));
  assert.equal(frames.length, 6);
  reader.push(Buffer.alloc(0));
  assert.equal(frames.length, 6);
});

test('FrameReader: a frame over maxFrameSize is a FRAME_SIZE_ERROR naming its size, however it arrives', () => {
  const big = frame(FrameType.DATA, 0, 1, Buffer.alloc(16385));
  assert.throws(() => collector().reader.push(big), isH2Error(ErrorCode.FRAME_SIZE_ERROR, /16385 bytes exceeds SETTINGS_MAX_FRAME_SIZE 16384/));
  // Header split across chunks: the length is checked once the header is complete.
  const { reader } = collector();
  reader.push(big.subarray(0, 4));
  assert.throws(() => reader.push(big.subarray(4, 20)), isH2Error(ErrorCode.FRAME_SIZE_ERROR, /16385/));
  // Exactly at the limit is accepted; the limit is settable.
  const ok = collector();
  ok.reader.push(frame(FrameType.DATA, 0, 1, Buffer.alloc(16384)));
  assert.equal(ok.frames[0]!.payload.length, 16384);
  ok.reader.maxFrameSize = 20000;
  ok.reader.push(big);
  assert.equal(ok.frames[1]!.payload.length, 16385);
  const small = collector(100);
  assert.throws(() => small.reader.push(frame(FrameType.DATA, 0, 1, Buffer.alloc(101))), isH2Error(ErrorCode.FRAME_SIZE_ERROR, /101 bytes exceeds SETTINGS_MAX_FRAME_SIZE 100/));
});

test('FrameReader: an exception from the handler stops push and propagates', () => {
  let calls = 0;
  const reader = new FrameReader(() => {
    calls++;
    throw new Error('handler failed');
  });
  assert.throws(() => reader.push(THREE), /handler failed/);
  assert.equal(calls, 1);
});

test('control frames have the RFC 9113 layout', () => {
  const { reader, frames } = collector();
  reader.push(settingsFrame([[SettingId.MAX_CONCURRENT_STREAMS, 100], [SettingId.INITIAL_WINDOW_SIZE, 1 << 20]]));
  reader.push(pingFrame(true, Buffer.from('12345678')));
  reader.push(goawayFrame(7, ErrorCode.ENHANCE_YOUR_CALM, 'too many resets'));
  reader.push(goawayFrame(0x7fffffff, ErrorCode.NO_ERROR));
  reader.push(windowUpdateFrame(5, 0x7fffffff));
  reader.push(rstStreamFrame(9, ErrorCode.CANCEL));
  assert.equal(frames.length, 6);
  const [settings, ping, goaway, goaway2, wu, rst] = frames as [Frame, Frame, Frame, Frame, Frame, Frame];
  assert.deepEqual([settings.type, settings.flags, settings.streamId], [FrameType.SETTINGS, 0, 0]);
  assert.deepEqual(parseSettings(settings.payload), [[3, 100], [4, 1 << 20]]);
  assert.deepEqual([ping.type, ping.flags, ping.payload.toString()], [FrameType.PING, Flag.ACK, '12345678']);
  assert.equal(pingFrame(false, Buffer.from('ab')).subarray(FRAME_HEADER_SIZE).toString('hex'), '6162000000000000');
  assert.deepEqual([goaway.type, goaway.payload.readUInt32BE(0), goaway.payload.readUInt32BE(4), goaway.payload.subarray(8).toString()],
    [FrameType.GOAWAY, 7, ErrorCode.ENHANCE_YOUR_CALM, 'too many resets']);
  assert.deepEqual([goaway2.payload.length, goaway2.payload.readUInt32BE(0)], [8, 0x7fffffff]);
  assert.deepEqual([wu.type, wu.streamId, wu.payload.readUInt32BE(0)], [FrameType.WINDOW_UPDATE, 5, 0x7fffffff]);
  assert.deepEqual([rst.type, rst.streamId, rst.payload.readUInt32BE(0)], [FrameType.RST_STREAM, 9, ErrorCode.CANCEL]);
  assert.equal(errorCodeName(ErrorCode.CANCEL), 'CANCEL');
  assert.equal(errorCodeName(0x42), '0x42');
});

test('parseSettings: boundaries accepted, unknown ids kept, invalid values refused with their code', () => {
  const payload = (pairs: Array<[number, number]>): Buffer => settingsFrame(pairs).subarray(FRAME_HEADER_SIZE);
  assert.deepEqual(parseSettings(Buffer.alloc(0)), []);
  const ok: Array<[number, number]> = [
    [SettingId.ENABLE_PUSH, 0], [SettingId.ENABLE_PUSH, 1], [SettingId.INITIAL_WINDOW_SIZE, 0x7fffffff],
    [SettingId.MAX_FRAME_SIZE, 16384], [SettingId.MAX_FRAME_SIZE, 16777215], [SettingId.HEADER_TABLE_SIZE, 0xffffffff],
    [SettingId.ENABLE_CONNECT_PROTOCOL, 1], [0x42, 7],
  ];
  assert.deepEqual(parseSettings(payload(ok)), ok);
  assert.throws(() => parseSettings(Buffer.alloc(7)), isH2Error(ErrorCode.FRAME_SIZE_ERROR, /7 bytes is not a multiple of 6/));
  assert.throws(() => parseSettings(payload([[SettingId.ENABLE_PUSH, 2]])), isH2Error(ErrorCode.PROTOCOL_ERROR, /SETTINGS_ENABLE_PUSH must be 0 or 1, got 2/));
  assert.throws(() => parseSettings(payload([[SettingId.INITIAL_WINDOW_SIZE, 0x80000000]])), isH2Error(ErrorCode.FLOW_CONTROL_ERROR, /SETTINGS_INITIAL_WINDOW_SIZE 2147483648 exceeds/));
  assert.throws(() => parseSettings(payload([[SettingId.MAX_FRAME_SIZE, 16383]])), isH2Error(ErrorCode.PROTOCOL_ERROR, /SETTINGS_MAX_FRAME_SIZE 16383 is outside/));
  assert.throws(() => parseSettings(payload([[SettingId.MAX_FRAME_SIZE, 16777216]])), isH2Error(ErrorCode.PROTOCOL_ERROR, /SETTINGS_MAX_FRAME_SIZE 16777216 is outside/));
  assert.throws(() => parseSettings(payload([[SettingId.ENABLE_CONNECT_PROTOCOL, 3]])), isH2Error(ErrorCode.PROTOCOL_ERROR, /ENABLE_CONNECT_PROTOCOL/));
});

test('headersFrames splits a block into HEADERS + CONTINUATION; headersFragment strips padding and priority', () => {
  const block = Buffer.from('x'.repeat(25));
  const { reader, frames } = collector();
  reader.push(headersFrames(3, block, true, 10));
  assert.deepEqual(frames.map((f) => [f.type, f.flags, f.streamId, f.payload.length]), [
    [FrameType.HEADERS, Flag.END_STREAM, 3, 10],
    [FrameType.CONTINUATION, 0, 3, 10],
    [FrameType.CONTINUATION, Flag.END_HEADERS, 3, 5],
  ]);
  frames.length = 0;
  reader.push(headersFrames(5, block, false, 16384));
  assert.deepEqual(frames.map((f) => [f.type, f.flags, f.payload.toString()]), [[FrameType.HEADERS, Flag.END_HEADERS, block.toString()]]);
  frames.length = 0;
  reader.push(headersFrames(7, Buffer.alloc(0), true, 16384));
  assert.deepEqual(frames.map((f) => [f.type, f.flags, f.payload.length]), [[FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 0]]);

  // Pad length 3, priority (5 bytes), fragment 'abc', padding.
  const padded = Buffer.from([3, 0, 0, 0, 1, 16, 0x61, 0x62, 0x63, 0, 0, 0]);
  assert.equal(headersFragment(Flag.PADDED | Flag.PRIORITY, padded).toString(), 'abc');
  assert.equal(headersFragment(Flag.PADDED, Buffer.from([2, 0x61, 0, 0])).toString(), 'a');
  assert.equal(headersFragment(0, Buffer.from('abc')).toString(), 'abc');
  assert.throws(() => headersFragment(Flag.PADDED, Buffer.from([5, 0x61])), isH2Error(ErrorCode.PROTOCOL_ERROR, /too short/));
  assert.throws(() => headersFragment(Flag.PADDED, Buffer.alloc(0)), isH2Error(ErrorCode.PROTOCOL_ERROR, /no Pad Length/));
  assert.throws(() => headersFragment(Flag.PRIORITY, Buffer.alloc(4)), isH2Error(ErrorCode.PROTOCOL_ERROR, /too short/));
});
