import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import {
  CLIENT_PREFACE, ErrorCode, Flag, FrameReader, FrameType, H2Error, SettingId, headersFragment, headersFrames,
  parseSettings, settingsAckFrame, settingsFrame,
} from './frames.js';
import { HpackDecoder, HpackEncoder, STATIC_TABLE } from './hpack.js';
import { HUFFMAN_CODES, HUFFMAN_LENGTHS, huffmanDecode, huffmanEncode, huffmanEncodedLength } from './huffman.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The dynamic table as [name, value] pairs, newest first, with its size. */
function tableOf(d: HpackDecoder): { entries: string[][]; size: number } {
  const entries: string[][] = [];
  for (let i = 0; i < d.table.count; i++) entries.push([d.table.name(i), d.table.value(i)]);
  return { entries, size: d.table.size };
}

const isCompressionError = (pattern: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof H2Error, `expected H2Error, got ${String(e)}`);
  assert.equal(e.code, ErrorCode.COMPRESSION_ERROR, e.message);
  assert.equal(e.streamId, 0, 'a connection error');
  assert.match(e.message, pattern);
  return true;
};

// ---------------------------------------------------------------------------------------------
// Huffman

test('Huffman: codes match RFC 7541 Appendix B spot checks', () => {
  const spot: Array<[number, number, number]> = [
    [0, 0x1ff8, 13], [10, 0x3ffffffc, 30], [32, 0x14, 6], [48, 0x0, 5], [97, 0x3, 5], [122, 0x7b, 7],
    [127, 0xffffffc, 28], [128, 0xfffe6, 20], [200, 0x3ffffe2, 26], [255, 0x3ffffee, 26], [256, 0x3fffffff, 30],
  ];
  for (const [sym, code, len] of spot) assert.deepEqual([HUFFMAN_CODES[sym], HUFFMAN_LENGTHS[sym]], [code, len], `symbol ${sym}`);
});

test('Huffman: every byte value round-trips, alone and together', () => {
  const all = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join('');
  const cases = [all, all.split('').reverse().join(''), ...all.split(''), '', 'www.example.com', 'no-cache'];
  for (const s of cases) {
    const buf = Buffer.alloc(huffmanEncodedLength(s) + 2, 0x55);
    const end = huffmanEncode(s, buf, 1);
    assert.equal(end, 1 + huffmanEncodedLength(s));
    assert.equal(huffmanDecode(buf, 1, end), s);
  }
  // RFC 7541 C.4.1's www.example.com.
  const b = Buffer.alloc(12);
  huffmanEncode('www.example.com', b, 0);
  assert.equal(b.toString('hex'), 'f1e3c2e5f23a6ba0ab90f4ff');
});

// ---------------------------------------------------------------------------------------------
// RFC 7541 Appendix C

test('RFC 7541 C.2: literal with/without/never indexing and indexed fields', () => {
  let d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')), ['custom-key', 'custom-header']);
  assert.deepEqual(tableOf(d), { entries: [['custom-key', 'custom-header']], size: 55 });
  d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('040c 2f73 616d 706c 652f 7061 7468')), [':path', '/sample/path']);
  assert.deepEqual(tableOf(d), { entries: [], size: 0 });
  d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74')), ['password', 'secret']);
  assert.deepEqual(tableOf(d), { entries: [], size: 0 });
  d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('82')), [':method', 'GET']);
  assert.deepEqual(tableOf(d), { entries: [], size: 0 });
});

const REQ1 = [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com'];
const REQ2 = [...REQ1, 'cache-control', 'no-cache'];
const REQ3 = [':method', 'GET', ':scheme', 'https', ':path', '/index.html', ':authority', 'www.example.com', 'custom-key', 'custom-value'];
const REQ_TABLES = [
  { entries: [[':authority', 'www.example.com']], size: 57 },
  { entries: [['cache-control', 'no-cache'], [':authority', 'www.example.com']], size: 110 },
  { entries: [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']], size: 164 },
];

for (const [name, blocks] of [
  ['C.3 (requests, plain strings)', [
    '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
    '8286 84be 5808 6e6f 2d63 6163 6865',
    '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
  ]],
  ['C.4 (requests, Huffman)', [
    '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
    '8286 84be 5886 a8eb 1064 9cbf',
    '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
  ]],
] as const) {
  test(`RFC 7541 ${name}: fields and dynamic table after each request`, () => {
    const d = new HpackDecoder();
    [REQ1, REQ2, REQ3].forEach((fields, i) => {
      assert.deepEqual(d.decode(hex(blocks[i]!)), fields, `request ${i + 1}`);
      assert.deepEqual(tableOf(d), REQ_TABLES[i], `table after request ${i + 1}`);
    });
  });
}

const DATE1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const LOC = 'https://www.example.com';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const RESP1 = [':status', '302', 'cache-control', 'private', 'date', DATE1, 'location', LOC];
const RESP2 = [':status', '307', 'cache-control', 'private', 'date', DATE1, 'location', LOC];
const RESP3 = [':status', '200', 'cache-control', 'private', 'date', DATE2, 'location', LOC, 'content-encoding', 'gzip', 'set-cookie', COOKIE];
const RESP_TABLES = [
  { entries: [['location', LOC], ['date', DATE1], ['cache-control', 'private'], [':status', '302']], size: 222 },
  { entries: [[':status', '307'], ['location', LOC], ['date', DATE1], ['cache-control', 'private']], size: 222 },
  { entries: [['set-cookie', COOKIE], ['content-encoding', 'gzip'], ['date', DATE2]], size: 215 },
];

for (const [name, blocks] of [
  ['C.5 (responses, plain strings, eviction)', [
    `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768
     7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
    '4803 3330 37c1 c0bf',
    `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153
     444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
  ]],
  ['C.6 (responses, Huffman, eviction)', [
    `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8
     e9ae 82ae 43d3`,
    '4883 640e ffc1 c0bf',
    `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b
     3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
  ]],
] as const) {
  test(`RFC 7541 ${name}: fields and dynamic table after each response`, () => {
    // The examples run with SETTINGS_HEADER_TABLE_SIZE 256, as if already applied.
    const d = new HpackDecoder(256);
    d.table.setCapacity(256);
    [RESP1, RESP2, RESP3].forEach((fields, i) => {
      assert.deepEqual(d.decode(hex(blocks[i]!)), fields, `response ${i + 1}`);
      assert.deepEqual(tableOf(d), RESP_TABLES[i], `table after response ${i + 1}`);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Decoder errors

test('decoder errors: bad indexes, integers and strings name the byte offset and the problem', () => {
  const cases: Array<[string, RegExp]> = [
    ['80', /indexed field with index 0 at byte 0/],
    ['82 be', /index 62 at byte 1 is beyond the tables \(61 static \+ 0 dynamic entries\)/],
    ['0f 40 01 61', /index 79 at byte 0 is beyond the tables/],
    ['7f 00 01 61', /index 63 at byte 0 is beyond the tables/],
    ['ff ff ff ff ff ff 01', /integer at byte 0 has more than 5 continuation bytes/],
    ['82 ff ff ff ff ff 0f', /integer 4294967422 at byte 1 exceeds 2\^31-1/],
    ['82 ff', /integer at byte 1 is truncated by the end of the block/],
    ['00 05 61', /string literal of 5 bytes at byte 1 runs past the end of the 3-byte block/],
    ['00 01 61', /string literal missing at byte 3: the block ends/],
    ['00 7f 80 80 80 08', /string literal of 16777343 bytes at byte 1 runs past the end/],
  ];
  for (const [block, pattern] of cases) {
    assert.throws(() => new HpackDecoder().decode(hex(block)), isCompressionError(pattern), block);
  }
});

test('decoder errors: Huffman EOS, padding over 7 bits, padding not all 1s', () => {
  const cases: Array<[string, RegExp]> = [
    // Value 'ffffffff' Huffman-coded: 30 ones are EOS, complete in the string's 4th byte (block byte 7).
    ['00 01 61 84 ff ff ff ff', /EOS symbol inside a Huffman-coded string at byte 7/],
    // 'a' (00011) then 11 one bits.
    ['00 01 61 82 1f ff', /Huffman padding longer than 7 bits in the string ending at byte 6/],
    // A whole byte of padding.
    ['00 01 61 81 ff', /Huffman padding longer than 7 bits/],
    // 'a' then padding 110.
    ['00 01 61 81 1e', /Huffman padding not all 1s in the string ending at byte 5/],
    // In a name: 'a' then padding 000.
    ['00 81 18 01 61', /Huffman padding not all 1s in the string ending at byte 3/],
  ];
  for (const [block, pattern] of cases) {
    assert.throws(() => new HpackDecoder().decode(hex(block)), isCompressionError(pattern), block);
  }
});

test('decoder: table size updates only at the block start, at most two, within maxTableSize', () => {
  // 4097 = 31 + 0x62 + 0x1f * 128.
  assert.throws(() => new HpackDecoder(4096).decode(hex('3f e2 1f 82')),
    isCompressionError(/dynamic table size update to 4097 at byte 0 exceeds SETTINGS_HEADER_TABLE_SIZE 4096/));
  assert.throws(() => new HpackDecoder(100).decode(hex('20 3f 46 82')),
    isCompressionError(/size update to 101 at byte 1 exceeds SETTINGS_HEADER_TABLE_SIZE 100/));
  assert.throws(() => new HpackDecoder().decode(hex('82 20')), isCompressionError(/dynamic table size update at byte 1 after the first field/));
  assert.throws(() => new HpackDecoder().decode(hex('20 20 20 82')), isCompressionError(/a third dynamic table size update at byte 2/));

  // Two are fine: shrink to 0 (evicting everything), then grow to 256 (= 31 + 0xe1 + 1 * 128).
  const d = new HpackDecoder();
  d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  assert.equal(d.table.count, 1);
  assert.deepEqual(d.decode(hex('20 3f e1 01 82')), [':method', 'GET']);
  assert.deepEqual([d.table.count, d.table.size, d.table.capacity], [0, 0, 256]);
  // An entry larger than the table empties it and is not added (RFC 7541 4.4).
  d.decode(hex('4003 616263 0178'));
  assert.equal(d.table.count, 1);
  const big = 'v'.repeat(250);
  d.decode(Buffer.concat([hex('4001 78 7f 7b'), Buffer.from(big)]));
  assert.deepEqual([d.table.count, d.table.size], [0, 0]);
  // A block of only a size update decodes to no fields.
  assert.deepEqual(d.decode(hex('3f 61')), []);
  assert.equal(d.table.capacity, 128);
});

test('decoder: a list over maxHeaderListSize is null, and the table stays in sync for the next block', () => {
  const d = new HpackDecoder(4096, 100);
  // Two literal-with-indexing fields of 10 + 20 + 32 = 62 bytes each: 124 > 100.
  const field = (name: string, value: string): Buffer =>
    Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  const first = Buffer.concat([field('x-aaaaaaaa', 'a'.repeat(20)), field('x-bbbbbbbb', 'b'.repeat(20))]);
  assert.equal(d.decode(first), null);
  assert.equal(d.table.count, 2, 'both fields were still added to the table');
  // The next block refers to both entries by index: 62 = x-bbbbbbbb (newest), 63 = x-aaaaaaaa.
  assert.deepEqual(d.decode(hex('be')), ['x-bbbbbbbb', 'b'.repeat(20)]);
  assert.deepEqual(d.decode(hex('bf 84')), ['x-aaaaaaaa', 'a'.repeat(20), ':path', '/'], 'exactly 62 + 38 = 100 bytes');
  // Exactly at the limit is accepted: 10 + 58 + 32 = 100.
  assert.deepEqual(d.decode(field('x-cccccccc', 'c'.repeat(58))), ['x-cccccccc', 'c'.repeat(58)]);
  assert.equal(d.decode(field('x-cccccccc', 'c'.repeat(59))), null);
});

// ---------------------------------------------------------------------------------------------
// Encoder

test('encoder: static matches indexed, static names as indexed-name literals, others as new-name literals', () => {
  const e = new HpackEncoder();
  assert.equal(e.encode([':method', 'GET', ':path', '/', ':status', '404', 'accept-encoding', 'gzip, deflate']).toString('hex'), '82848d90');
  assert.equal(e.encode([':path', '/x']).toString('hex'), '0402' + Buffer.from('/x').toString('hex'));
  // content-type is index 31 (>= 15): 0x0f then 16.
  assert.equal(e.encode(['content-type', 'a']).toString('hex'), '0f100161');
  assert.equal(e.encode(['x-a', 'b']).toString('hex'), '0003782d610162');
  // Credentials never indexed: authorization (23) and unknown-name never-indexed literals.
  assert.equal(e.encode(['authorization', 'k']).toString('hex'), '1f08016b');
  // An empty value matches the static name-only entry exactly.
  assert.equal(e.encode([':authority', '']).toString('hex'), '81');
  assert.equal(e.encode([]).length, 0);
  // Long strings: 7-bit prefix length continues.
  const long = 'z'.repeat(300);
  const b = e.encode(['x-long', long]);
  assert.deepEqual(new HpackDecoder().decode(b), ['x-long', long]);
  assert.equal(b.length, 1 + 1 + 6 + 3 + 300);
});

test('encoder: a lowered SETTINGS_HEADER_TABLE_SIZE is announced once at the next block start', () => {
  const e = new HpackEncoder();
  e.setMaxTableSize(8192);
  assert.equal(e.encode([':method', 'GET']).toString('hex'), '82', 'a raise needs no update');
  e.setMaxTableSize(256);
  e.setMaxTableSize(1024);
  const b = e.encode([':method', 'GET']);
  assert.equal(b.toString('hex'), '3fe10182', 'size update to the smallest size asked, then the field');
  const d = new HpackDecoder(256);
  assert.deepEqual(d.decode(b), [':method', 'GET']);
  assert.equal(d.table.capacity, 256);
  assert.equal(e.encode([':method', 'GET']).toString('hex'), '82', 'announced once');
  e.setMaxTableSize(0);
  assert.equal(e.encode([':method', 'POST']).toString('hex'), '2083');
});

test('encoder: a pair repeated for its name goes into the table on the 2nd block and is indexed from the 3rd', () => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  const fields = [':path', '/svc/M', 'x-app', 'v1', 'content-type', 'application/grpc'];
  const hexOf = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
  const b1 = e.encode(fields);
  assert.equal(b1.toString('hex'), `0406${hexOf('/svc/M')}0005${hexOf('x-app')}02${hexOf('v1')}0f1010${hexOf('application/grpc')}`);
  assert.deepEqual(d.decode(b1), fields);
  const b2 = e.encode(fields);
  assert.equal(b2.toString('hex'), `4406${hexOf('/svc/M')}4005${hexOf('x-app')}02${hexOf('v1')}5f10${hexOf('application/grpc')}`);
  assert.deepEqual(d.decode(b2), fields);
  assert.deepEqual([e.dynamicTableCount, e.dynamicTableSize], [3, 43 + 39 + 60]);
  const b3 = e.encode(fields);
  assert.equal(b3.toString('hex'), 'c0bfbe');
  assert.deepEqual(d.decode(b3), fields);
  // A changed value is a literal again (and forgets the old entry); the others stay indexed.
  const b4 = e.encode([':path', '/svc/N', 'x-app', 'v1', 'content-type', 'application/grpc']);
  assert.equal(b4.toString('hex'), `0406${hexOf('/svc/N')}bfbe`);
  assert.deepEqual(d.decode(b4), [':path', '/svc/N', 'x-app', 'v1', 'content-type', 'application/grpc']);
  // Credentials are never indexed, however often they repeat.
  for (let i = 0; i < 3; i++) assert.equal(e.encode(['authorization', 'k'])[0], 0x1f);
  // A peer's smaller limit evicts down to it and is announced.
  e.setMaxTableSize(80);
  const b5 = e.encode(fields);
  assert.equal(b5[0], 0x3f, 'size update first');
  assert.deepEqual(d.decode(b5), fields);
  assert.deepEqual([d.table.count, d.table.size, d.table.capacity], [e.dynamicTableCount, e.dynamicTableSize, 80]);
  // With no table, nothing is indexed and the first block announces size 0.
  const none = new HpackEncoder(0);
  const d0 = new HpackDecoder();
  for (let i = 0; i < 3; i++) assert.deepEqual(d0.decode(none.encode(fields)), fields);
  assert.deepEqual([d0.table.count, d0.table.capacity, none.dynamicTableCount], [0, 0, 0]);
});

test('encoder → decoder: 3,000 blocks of repeating and changing fields, table limits changing, tables in sync', () => {
  const rand = prng(99);
  const names = Array.from({ length: 40 }, (_, i) => (i < 20 ? STATIC_TABLE[i * 3]![0] : `x-n${i}`));
  const values = Array.from({ length: 12 }, (_, i) => `value-${i}-${'v'.repeat(i * 20)}\u00e9`);
  const e = new HpackEncoder();
  const d = new HpackDecoder(4096, 1 << 20);
  let bytes = 0;
  let raw = 0;
  for (let i = 0; i < 3000; i++) {
    if (i % 500 === 499) {
      const limit = Math.floor(rand() * 4096);
      e.setMaxTableSize(limit);
    }
    const fields: string[] = [];
    const count = 1 + Math.floor(rand() * 12);
    // Each name mostly carries its usual value, sometimes another one.
    for (let k = 0; k < count; k++) {
      const n = Math.floor(rand() * names.length);
      fields.push(names[n]!, values[rand() < 0.8 ? n % values.length : Math.floor(rand() * values.length)]!);
    }
    const block = e.encode(fields);
    bytes += block.length;
    for (const f of fields) raw += f.length;
    assert.deepEqual(d.decode(block), fields, `block ${i}`);
    assert.deepEqual([d.table.count, d.table.size], [e.dynamicTableCount, e.dynamicTableSize], `table after block ${i}`);
  }
  assert.ok(bytes < raw * 0.8, `indexing pays: ${bytes} block bytes for ${raw} bytes of fields`);
});

/** A deterministic PRNG, so a failing case can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomString(rand: () => number, maxLength: number, alphabet: 'token' | 'latin1'): string {
  const n = Math.floor(rand() * (maxLength + 1));
  let s = '';
  for (let i = 0; i < n; i++) {
    s += alphabet === 'token'
      ? 'abcdefghijklmnopqrstuvwxyz0123456789-_'[Math.floor(rand() * 38)]
      : String.fromCharCode(rand() < 0.3 ? 0x80 + Math.floor(rand() * 128) : 0x20 + Math.floor(rand() * 95));
  }
  return s;
}

function randomFields(rand: () => number): string[] {
  const fields: string[] = [];
  const count = Math.floor(rand() * 20);
  for (let i = 0; i < count; i++) {
    const r = rand();
    if (r < 0.25) {
      const [name, value] = STATIC_TABLE[Math.floor(rand() * STATIC_TABLE.length)]!;
      fields.push(name, value);
    } else if (r < 0.5) {
      fields.push(STATIC_TABLE[Math.floor(rand() * STATIC_TABLE.length)]![0], randomString(rand, 40, 'latin1'));
    } else {
      fields.push(`x-${randomString(rand, 30, 'token')}`, randomString(rand, rand() < 0.1 ? 400 : 40, 'latin1'));
    }
  }
  return fields;
}

test('encoder → decoder round trips of 2,000 random field lists (latin1 values, long strings)', () => {
  const rand = prng(7);
  const e = new HpackEncoder();
  const d = new HpackDecoder(4096, 1 << 20);
  let bytes = 0;
  for (let i = 0; i < 2000; i++) {
    const fields = randomFields(rand);
    const block = e.encode(fields);
    bytes += block.length;
    assert.ok(block.length <= e.maxEncodedLength(fields));
    assert.deepEqual(d.decode(block), fields, `list ${i}`);
  }
  assert.equal(d.table.count, e.dynamicTableCount, 'the tables agree');
  assert.equal(d.table.size, e.dynamicTableSize);
  assert.ok(bytes > 0);
});

/**
 * A reference encoder for the decoder's dynamic-table paths: random indexed references to a model
 * of the table, literals with incremental indexing (Huffman or plain), size updates; the model
 * evicts as RFC 7541 4.4 says.
 */
test('decoder against a model table: 1,000 random blocks with indexing, eviction, Huffman and size updates', () => {
  const rand = prng(42);
  const d = new HpackDecoder(1024, 1 << 20);
  let model: Array<[string, string]> = [];
  let capacity = 4096;
  const modelSize = (): number => model.reduce((n, [a, b]) => n + a.length + b.length + 32, 0);
  const evict = (): void => {
    while (modelSize() > capacity) model.pop();
  };
  const out: number[] = [];
  const int = (first: number, prefix: number, value: number): void => {
    const max = (1 << prefix) - 1;
    if (value < max) return void out.push(first | value);
    out.push(first | max);
    value -= max;
    while (value >= 128) {
      out.push((value & 0x7f) | 0x80);
      value = Math.floor(value / 128);
    }
    out.push(value);
  };
  const str = (s: string): void => {
    if (rand() < 0.5) {
      const b = Buffer.alloc(huffmanEncodedLength(s));
      huffmanEncode(s, b, 0);
      int(0x80, 7, b.length);
      out.push(...b);
    } else {
      int(0, 7, s.length);
      out.push(...Buffer.from(s, 'latin1'));
    }
  };
  let evictions = 0;
  for (let i = 0; i < 1000; i++) {
    out.length = 0;
    const expected: string[] = [];
    if (rand() < 0.1) {
      capacity = Math.floor(rand() * 1025);
      int(0x20, 5, capacity);
      evict();
    }
    const count = 1 + Math.floor(rand() * 8);
    for (let k = 0; k < count; k++) {
      const r = rand();
      if (r < 0.35 && model.length > 0) {
        const di = Math.floor(rand() * model.length);
        int(0x80, 7, 62 + di);
        expected.push(...model[di]!);
      } else if (r < 0.75) {
        const useIndex = rand() < 0.4 && model.length > 0;
        const di = Math.floor(rand() * model.length);
        const name = useIndex ? model[di]![0] : `x-${randomString(rand, 12, 'token')}`;
        const value = randomString(rand, rand() < 0.1 ? 300 : 30, 'latin1');
        if (useIndex) int(0x40, 6, 62 + di);
        else {
          out.push(0x40);
          str(name);
        }
        str(value);
        expected.push(name, value);
        const before = model.length;
        model = [[name, value], ...model];
        evict();
        if (model.length <= before) evictions++;
      } else {
        const never = rand() < 0.5;
        const s = STATIC_TABLE[Math.floor(rand() * STATIC_TABLE.length)]!;
        const value = randomString(rand, 20, 'latin1');
        int(never ? 0x10 : 0, 4, STATIC_TABLE.indexOf(s) + 1);
        str(value);
        expected.push(s[0], value);
      }
    }
    assert.deepEqual(d.decode(Buffer.from(out)), expected, `block ${i}`);
    assert.deepEqual(tableOf(d).entries, model, `table after block ${i}`);
    assert.equal(d.table.size, modelSize());
  }
  assert.ok(evictions > 50, `evictions exercised (${evictions})`);
});

// ---------------------------------------------------------------------------------------------
// Interop with Node's own HPACK (nghttp2)

/** Runs `fn` with a raw TCP server on loopback whose connections are given to `onSocket`. */
async function withRawServer(onSocket: (s: net.Socket) => void, fn: (port: number) => Promise<void>): Promise<void> {
  const server = net.createServer(onSocket);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await fn((server.address() as net.AddressInfo).port);
  } finally {
    server.close();
  }
}

/**
 * Reads client frames off a raw socket after the preface; calls onHeaders with each complete
 * header block (HEADERS + CONTINUATION). Answers the client's SETTINGS with an ACK.
 */
function readClient(socket: net.Socket, onHeaders: (streamId: number, block: Buffer, settings: Array<[number, number]>) => void): void {
  let preface: Buffer | null = Buffer.alloc(0);
  let pending: Buffer[] = [];
  let settings: Array<[number, number]> = [];
  const reader = new FrameReader((type, flags, streamId, payload) => {
    if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) {
      settings = parseSettings(payload);
      socket.write(settingsAckFrame());
    } else if (type === FrameType.HEADERS || type === FrameType.CONTINUATION) {
      pending.push(type === FrameType.HEADERS ? headersFragment(flags, payload) : payload);
      if (flags & Flag.END_HEADERS) {
        const block = Buffer.concat(pending);
        pending = [];
        onHeaders(streamId, block, settings);
      }
    }
  });
  socket.on('data', (chunk: Buffer) => {
    if (preface !== null) {
      preface = Buffer.concat([preface, chunk]);
      if (preface.length < CLIENT_PREFACE.length) return;
      if (!preface.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE)) throw new Error('no client preface');
      chunk = preface.subarray(CLIENT_PREFACE.length);
      preface = null;
    }
    reader.push(chunk);
  });
  socket.on('error', () => {});
}

for (const tableSize of [4096, 256]) {
  test(`interop: decodes node:http2 client request heads (Huffman, dynamic table; our table size ${tableSize})`, async () => {
    const decoder = new HpackDecoder(tableSize);
    const decoded: string[][] = [];
    let failure: Error | null = null;
    const blocks: Buffer[] = [];
    let gotAll: () => void;
    const all = new Promise<void>((resolve) => (gotAll = resolve));
    const N = 30;
    await withRawServer((socket) => {
      socket.write(settingsFrame([[SettingId.HEADER_TABLE_SIZE, tableSize]]));
      readClient(socket, (_id, block) => {
        blocks.push(block);
        try {
          decoded.push(decoder.decode(block)!);
        } catch (err) {
          failure = err as Error;
          gotAll();
        }
        if (decoded.length === N) gotAll();
      });
    }, async (port) => {
      const client = http2.connect(`http://127.0.0.1:${port}`);
      client.on('error', () => {});
      const sent: Array<Record<string, string>> = [];
      for (let i = 0; i < N; i++) {
        const headers: Record<string, string> = {
          ':method': i % 3 === 0 ? 'POST' : 'GET',
          ':path': `/svc.Echo/Call?i=${i % 4}`,
          'content-type': 'application/grpc',
          'te': 'trailers',
          'x-request-id': `req-${i}-${'r'.repeat(i)}`,
          'x-latin': 'caf\u00e9 \u00ff\u0080',
          'x-big': 'b'.repeat(100 + i * 10),
        };
        sent.push(headers);
        const req = client.request(headers, { endStream: true });
        req.on('error', () => {});
        // Let some requests go alone and some batched, so blocks vary.
        if (i % 5 === 0) await new Promise((r) => setImmediate(r));
      }
      const timer = setTimeout(() => gotAll(), 10_000);
      await all;
      clearTimeout(timer);
      client.destroy();
      if (failure) throw failure;
      assert.equal(decoded.length, N);
      decoded.forEach((fields, i) => {
        const map = new Map<string, string>();
        for (let k = 0; k < fields.length; k += 2) map.set(fields[k]!, fields[k + 1]!);
        for (const [name, value] of Object.entries(sent[i]!)) assert.equal(map.get(name), value, `request ${i} ${name}`);
        assert.equal(map.get(':scheme'), 'http');
        assert.equal(map.get(':authority'), `127.0.0.1:${port}`);
        assert.ok(fields[0]!.startsWith(':'), 'pseudo-headers first');
      });
      // Node's encoder Huffman-coded the strings (no plain copy in the first block) and indexed repeated fields.
      assert.ok(!blocks[0]!.includes(Buffer.from('application/grpc')), 'Huffman-coded');
      const dynamicHits = decoder.table.count;
      assert.ok(dynamicHits > 0, 'the dynamic table was used');
      assert.ok(decoder.table.size <= decoder.table.capacity);
      if (tableSize < 4096) assert.equal(decoder.table.capacity, tableSize, 'Node announced the smaller table size');
      console.log(`interop decode (table ${tableSize}): ${N} Node request heads decoded, ${dynamicHits} dynamic entries, table ${decoder.table.size}/${decoder.table.capacity} bytes`);
    });
  });
}

for (const clientTableSize of [4096, 100, 0]) {
  test(`interop: node:http2 client reads response heads from our encoder (client table size ${clientTableSize})`, async () => {
    const long = 'L'.repeat(20_000);
    const blockBytes: number[] = [];
    const response = (i: number): string[] => [
      ':status', i === 2 ? '404' : '200',
      'content-type', 'application/grpc',
      'x-latin', 'caf\u00e9 \u00ff\u0080',
      'x-index', String(i),
      'x-long', i === 1 ? long : 'short',
      'authorization', 'Bearer secret',
      'set-cookie', 'a=b',
    ];
    await withRawServer((socket) => {
      const encoder = new HpackEncoder();
      let count = 0;
      socket.write(settingsFrame([]));
      readClient(socket, (streamId, _block, settings) => {
        for (const [id, value] of settings) if (id === SettingId.HEADER_TABLE_SIZE) encoder.setMaxTableSize(value);
        // The 20 kB head spans a HEADERS and CONTINUATION frames at the default 16384 frame size.
        const block = encoder.encode(response(count++));
        blockBytes.push(block.length);
        socket.write(headersFrames(streamId, block, true, 16384));
      });
    }, async (port) => {
      const client = http2.connect(`http://127.0.0.1:${port}`, { settings: { headerTableSize: clientTableSize }, maxHeaderListPairs: 256 });
      client.on('error', () => {});
      try {
        for (let i = 0; i < 8; i++) {
          const req = client.request({ ':path': `/r${i}` }, { endStream: true });
          // A head the client cannot decode resets the session: fail rather than wait.
          const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no response ${i} within 5 s`)), 5000);
            req.on('response', (h) => (clearTimeout(timer), resolve(h)));
            req.on('close', () => (clearTimeout(timer), reject(new Error(`stream ${i} closed without a response (rstCode ${req.rstCode})`))));
          });
          req.resume();
          await once(req, 'end');
          const expected = response(i);
          for (let k = 0; k < expected.length; k += 2) {
            const got = headers[expected[k]!];
            const value = Array.isArray(got) ? got.join(', ') : String(got);
            assert.equal(value, expected[k + 1], `response ${i} ${expected[k]}`);
          }
        }
        console.log(`interop encode (client table ${clientTableSize}): 8 response heads read by node:http2, one of ${long.length} bytes over CONTINUATION, ${blockBytes.join('/')} block bytes`);
      } finally {
        client.destroy();
      }
    });
  });
}
