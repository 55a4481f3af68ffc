/**
 * HPACK micro-benchmark — `npm run build && node dist/bench/hpack.js [loops]`.
 *
 * Times Weft's HPACK decoder and encoder on a typical gRPC request head, in ns per header block:
 *   decode-first:   a peer's first block (literals with incremental indexing, Huffman strings), so
 *                   every iteration also inserts into and evicts from the dynamic table;
 *   decode-indexed: a peer's steady-state block (every field a dynamic-table reference);
 *   encode:         Weft's encoder on the same head with a changing grpc-timeout, with its dynamic
 *                   table (4096) and without (0);
 *   decode-weft:    decoding what that encoder sends, in the steady state.
 */
import { HpackDecoder, HpackEncoder, STATIC_TABLE } from '../src/proxy/http2/hpack.js';
import { huffmanEncode, huffmanEncodedLength } from '../src/proxy/http2/huffman.js';

const FIELDS = [
  ':method', 'POST', ':scheme', 'http', ':path', '/helloworld.Greeter/SayHello', ':authority', '127.0.0.1:8080',
  'content-type', 'application/grpc', 'te', 'trailers', 'grpc-accept-encoding', 'identity,deflate,gzip',
  'user-agent', 'grpc-node-js/1.14.7', 'grpc-timeout', '9996m',
];

function int(out: number[], first: number, prefix: number, value: number): void {
  const max = (1 << prefix) - 1;
  if (value < max) return void out.push(first | value);
  out.push(first | max);
  for (value -= max; value >= 128; value >>>= 7) out.push((value & 0x7f) | 0x80);
  out.push(value);
}

function huffman(out: number[], s: string): void {
  const b = Buffer.alloc(huffmanEncodedLength(s));
  huffmanEncode(s, b, 0);
  int(out, 0x80, 7, b.length);
  out.push(...b);
}

/** The first block: static name where there is one, Huffman value, incremental indexing. */
function firstBlock(): Buffer {
  const out: number[] = [];
  for (let i = 0; i < FIELDS.length; i += 2) {
    const nameIndex = STATIC_TABLE.findIndex(([n]) => n === FIELDS[i]) + 1;
    int(out, 0x40, 6, nameIndex);
    if (nameIndex === 0) huffman(out, FIELDS[i]!);
    huffman(out, FIELDS[i + 1]!);
  }
  return Buffer.from(out);
}

/** The steady-state block: each field is the dynamic entry the first block made (newest = 62). */
function indexedBlock(): Buffer {
  const n = FIELDS.length / 2;
  return Buffer.from(Array.from({ length: n }, (_, i) => 0x80 | (62 + n - 1 - i)));
}

function time(name: string, loops: number, fn: () => unknown): void {
  for (let i = 0; i < Math.min(loops, 100_000); i++) fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < loops; i++) fn();
  const ns = Number(process.hrtime.bigint() - start) / loops;
  console.log(`${name.padEnd(20)} ${ns.toFixed(0).padStart(6)} ns/op`);
}

const loops = Number(process.argv[2] ?? 1_000_000);
const first = firstBlock();
const indexed = indexedBlock();
// Weft's encoder on a stream of such heads whose grpc-timeout differs each time (as it does).
const LISTS = ['9996m', '9997m', '9998m', '9999m'].map((t) => [...FIELDS.slice(0, -1), t]);
const check = new HpackDecoder();
for (const block of [first, indexed]) {
  if (JSON.stringify(check.decode(block)) !== JSON.stringify(FIELDS)) throw new Error('benchmark blocks do not decode to FIELDS');
}

console.log(`gRPC request head: ${FIELDS.length / 2} fields; peer blocks: first ${first.length} B, indexed ${indexed.length} B; ${loops} loops`);
const d1 = new HpackDecoder();
time('decode-first', loops, () => d1.decode(first));
const d2 = new HpackDecoder();
d2.decode(first);
time('decode-indexed', loops, () => d2.decode(indexed));
for (const tableSize of [4096, 0]) {
  const encoder = new HpackEncoder(tableSize);
  let n = 0;
  time(`encode (table ${tableSize})`, loops, () => encoder.encode(LISTS[n++ & 3]!));
  // What the peer decodes in the steady state: blocks of a warmed-up encoder, decoded in order.
  const e = new HpackEncoder(tableSize);
  const d = new HpackDecoder();
  const blocks = Array.from({ length: 1024 }, (_, i) => e.encode(LISTS[i & 3]!));
  for (const b of blocks.slice(0, 8)) d.decode(b);
  const steady = blocks.slice(8, 1024 - 120);   // 896 blocks, a multiple of 4
  let k = 0;
  // Replaying the same steady blocks is valid: after warm-up each block leaves the table unchanged.
  time(`decode-weft (${tableSize})`, loops, () => d.decode(steady[k++ % steady.length]!));
  console.log(`  weft blocks: ${blocks[0]!.length} B first, ${steady[0]!.length} B steady`);
}
