/**
 * The HPACK Huffman code (RFC 7541 5.2 and Appendix B). The code is canonical, so the table is kept
 * as code lengths only and the codes are derived at load. Decoding runs a 4-bit state machine built
 * once at load (after nghttp2's): each state is an inner node of the code tree, and one lookup per
 * nibble gives the next state and at most one decoded symbol (no code is shorter than 5 bits).
 */
import { ErrorCode, H2Error } from './frames.js';

/** Code length in bits of each symbol 0..255 and of EOS (256), RFC 7541 Appendix B. */
const CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;

/** The code of each symbol, right-aligned (canonical order: by length, then by symbol). */
export const HUFFMAN_CODES: Uint32Array = new Uint32Array(257);
/** The code length of each symbol. */
export const HUFFMAN_LENGTHS: Uint8Array = Uint8Array.from(CODE_LENGTHS);

{
  const order = Array.from({ length: 257 }, (_, i) => i).sort((a, b) => CODE_LENGTHS[a]! - CODE_LENGTHS[b]! || a - b);
  let code = 0;
  let len = CODE_LENGTHS[order[0]!]!;
  for (const sym of order) {
    code *= 2 ** (CODE_LENGTHS[sym]! - len);
    len = CODE_LENGTHS[sym]!;
    HUFFMAN_CODES[sym] = code++;
  }
}

// Decoding state machine. Transition entry: next state (bits 0-8), symbol (bits 9-16), and bit 17
// set when the nibble completed a symbol — so the loop emits without branching. State 256 is a sink
// that EOS leads to; the offset of the EOS is found again only when reporting it.
const SINK = 256;
const EMIT_SHIFT = 17;
/** [state * 16 + nibble] → transition. */
const TRANSITIONS = new Uint32Array(257 * 16);
/** Per state: bits read since the last symbol, and whether they were all 1s (valid padding). */
const DEPTH = new Uint8Array(257);
const ALL_ONES = new Uint8Array(257);

{
  // The code tree: inner nodes 0..255 (0 = root); a child >= 0 is an inner node, < 0 is leaf -(symbol + 1).
  const child = new Int32Array(256 * 2);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const len = CODE_LENGTHS[sym]!;
    const code = HUFFMAN_CODES[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) & 1;
      const slot = node * 2 + bit;
      if (i === 0) {
        child[slot] = -(sym + 1);
      } else {
        if (child[slot] === 0) {
          DEPTH[nodes] = DEPTH[node]! + 1;
          ALL_ONES[nodes] = bit === 1 && (node === 0 || ALL_ONES[node] === 1) ? 1 : 0;
          child[slot] = nodes++;
        }
        node = child[slot]!;
      }
    }
  }
  if (nodes !== 256) throw new Error(`HPACK Huffman tree has ${nodes} inner nodes, expected 256`);
  ALL_ONES[0] = 1;
  for (let nibble = 0; nibble < 16; nibble++) TRANSITIONS[SINK * 16 + nibble] = SINK;
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const c = child[node * 2 + ((nibble >> i) & 1)]!;
        if (c >= 0) {
          node = c;
          continue;
        }
        const sym = -c - 1;
        if (sym === EOS) {
          node = SINK;
          entry = 0;
          break;
        }
        entry = (1 << EMIT_SHIFT) | (sym << 9);
        node = 0;
      }
      TRANSITIONS[state * 16 + nibble] = entry | node;
    }
  }
}

/** Buffer methods Node has but does not type: the fast paths behind toString/write('latin1'). */
export interface Latin1Buffer extends Buffer {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length?: number): number;
}

let scratch = Buffer.allocUnsafe(4096) as Latin1Buffer;

/**
 * Decodes the Huffman-coded string in `src[start..end)` as latin1. Throws H2Error(COMPRESSION_ERROR)
 * naming the byte offset (in `src`) of an EOS symbol, padding longer than 7 bits, or padding that
 * is not all 1s.
 */
export function huffmanDecode(src: Buffer, start: number, end: number): string {
  const max = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < max) scratch = Buffer.allocUnsafe(Math.max(max, scratch.length * 2)) as Latin1Buffer;
  const out = scratch;
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    let t = TRANSITIONS[(state << 4) | (b >> 4)]!;
    out[n] = t >> 9;
    n += t >>> EMIT_SHIFT;
    t = TRANSITIONS[((t & 0x1ff) << 4) | (b & 0xf)]!;
    out[n] = t >> 9;
    n += t >>> EMIT_SHIFT;
    state = t & 0x1ff;
  }
  if (state !== 0) {
    if (state === SINK) throw huffmanError(`EOS symbol inside a Huffman-coded string at byte ${eosOffset(src, start, end)}`);
    if (ALL_ONES[state] === 0) throw huffmanError(`Huffman padding not all 1s in the string ending at byte ${end}`);
    if (DEPTH[state]! > 7) throw huffmanError(`Huffman padding longer than 7 bits in the string ending at byte ${end}`);
  }
  return out.latin1Slice(0, n);
}

/** The offset of the byte in which the state machine first reached the EOS sink. */
function eosOffset(src: Buffer, start: number, end: number): number {
  let state = 0;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    state = TRANSITIONS[(state << 4) | (b >> 4)]! & 0x1ff;
    state = TRANSITIONS[(state << 4) | (b & 0xf)]! & 0x1ff;
    if (state === SINK) return i;
  }
  return end;
}

function huffmanError(message: string): H2Error {
  return new H2Error(ErrorCode.COMPRESSION_ERROR, `HPACK: ${message}`);
}

/** Bytes `s` (latin1) takes Huffman-coded. */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTHS[s.charCodeAt(i) & 0xff]!;
  return Math.ceil(bits / 8);
}

/** Writes `s` (latin1) Huffman-coded into `buf` at `offset`, padded with 1s; returns the end offset. */
export function huffmanEncode(s: string, buf: Buffer, offset: number): number {
  let acc = 0; // pending bits, fewer than 8 after each symbol; arithmetic, since codes reach 30 bits
  let pending = 0;
  let off = offset;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    const len = HUFFMAN_LENGTHS[sym]!;
    acc = acc * 2 ** len + HUFFMAN_CODES[sym]!;
    pending += len;
    while (pending >= 8) {
      pending -= 8;
      const div = 2 ** pending;
      const byte = Math.floor(acc / div);
      buf[off++] = byte;
      acc -= byte * div;
    }
  }
  if (pending > 0) buf[off++] = (acc << (8 - pending)) | (0xff >> pending);
  return off;
}
