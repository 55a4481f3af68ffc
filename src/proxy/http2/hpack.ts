/**
 * HPACK (RFC 7541): header blocks to and from flat field lists `[name, value, ...]`. The decoder is
 * complete (static and dynamic table, size updates, Huffman). The encoder is built for cost first:
 * plain strings (no Huffman), static-table matches as indexed fields, and a dynamic table only for
 * pairs that repeat (see HpackEncoder), which makes the peer's decoding of repeated heads cheap too.
 */
import { ErrorCode, H2Error } from './frames.js';
import { huffmanDecode, type Latin1Buffer } from './huffman.js';

/** RFC 7541 Appendix A; index 1 is element 0. */
export const STATIC_TABLE: ReadonlyArray<readonly [name: string, value: string]> = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length;
const STATIC_NAMES: readonly string[] = STATIC_TABLE.map((e) => e[0]);
const STATIC_VALUES: readonly string[] = STATIC_TABLE.map((e) => e[1]);

/** The RFC 7541 4.1 overhead of each table entry, also RFC 9113's per-field header list overhead. */
const ENTRY_OVERHEAD = 32;
/** The dynamic table size every HPACK context starts with (RFC 9113 6.5.2 SETTINGS_HEADER_TABLE_SIZE). */
const INITIAL_TABLE_SIZE = 4096;
/** Continuation bytes an integer may take: 5 carry 35 bits, more than any valid value needs. */
const MAX_INT_CONTINUATIONS = 5;
/** The largest integer accepted (a size or index beyond it is an attack, not a header). */
const MAX_INT = 0x7fffffff;

function compressionError(message: string): H2Error {
  return new H2Error(ErrorCode.COMPRESSION_ERROR, `HPACK: ${message}`);
}

/** The dynamic table (RFC 7541 2.3.2): a ring of entries, newest at dynamic index 0. */
export class DynamicTable {
  /** Sum of the entry sizes (name + value + 32). */
  size = 0;
  /** Entries in the table. */
  count = 0;
  /** The maximum size in effect (set by size updates). */
  capacity: number;
  private names: string[] = new Array<string>(16).fill('');
  private values: string[] = new Array<string>(16).fill('');
  private mask = 15;
  /** Slot the next entry goes to. */
  private head = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Name of the entry at dynamic index `i` (0 = newest); i < count. */
  name(i: number): string {
    return this.names[(this.head - 1 - i) & this.mask]!;
  }

  /** Value of the entry at dynamic index `i`. */
  value(i: number): string {
    return this.values[(this.head - 1 - i) & this.mask]!;
  }

  /** Inserts an entry, evicting the oldest ones to make room; one larger than the table empties it. */
  add(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.capacity) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.capacity - entrySize);
    if (this.count === this.names.length) this.grow();
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.head = (this.head + 1) & this.mask;
    this.count++;
    this.size += entrySize;
  }

  /** A dynamic table size update: evicts until the table fits. */
  setCapacity(capacity: number): void {
    this.capacity = capacity;
    this.evictTo(capacity);
  }

  private evictTo(limit: number): void {
    while (this.size > limit) {
      const slot = (this.head - this.count) & this.mask;
      this.size -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
      this.names[slot] = '';
      this.values[slot] = '';
      this.count--;
    }
  }

  private grow(): void {
    const n = this.names.length;
    const names = new Array<string>(n * 2).fill('');
    const values = new Array<string>(n * 2).fill('');
    // Oldest first, so the newest ends at slot count - 1.
    for (let i = 0; i < this.count; i++) {
      const from = (this.head - this.count + i) & this.mask;
      names[i] = this.names[from]!;
      values[i] = this.values[from]!;
    }
    this.names = names;
    this.values = values;
    this.mask = n * 2 - 1;
    this.head = this.count;
  }
}

/** Decodes header blocks of one connection direction; keeps that direction's dynamic table. */
export class HpackDecoder {
  /** Our SETTINGS_HEADER_TABLE_SIZE: the ceiling for the peer's dynamic table size updates. */
  maxTableSize: number;
  /** Our SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 size: name + value + 32 per field). */
  maxHeaderListSize: number;
  /** The peer's table as we mirror it. It starts at the protocol's 4096 whatever our setting: the
   *  peer may use that much until it has seen our SETTINGS, then shrinks it with a size update. */
  readonly table = new DynamicTable(INITIAL_TABLE_SIZE);
  /** Where the last integer or string read ended (a second return value without allocation). */
  private pos = 0;

  constructor(maxTableSize = INITIAL_TABLE_SIZE, maxHeaderListSize = 65536) {
    this.maxTableSize = maxTableSize;
    this.maxHeaderListSize = maxHeaderListSize;
  }

  /** Decodes one complete header block (HEADERS + CONTINUATION payloads joined, padding and
   *  priority removed) into flat [name, value, ...]. Field bytes are read as latin1 strings.
   *  Throws H2Error(COMPRESSION_ERROR, message naming the byte offset and what is wrong) on any
   *  malformed block (bad index, bad integer, bad Huffman code/padding/EOS, table size update above
   *  maxTableSize or not at the block start, truncated string). Returns null when the list is
   *  larger than maxHeaderListSize — but only after decoding the WHOLE block, so the dynamic table
   *  stays in sync and the connection can go on (the caller answers 431 / resets the stream). */
  decode(block: Buffer): string[] | null {
    const end = block.length;
    const table = this.table;
    let pos = 0;
    // Size updates come first, at most two (the smallest size and the final one, RFC 7541 4.2).
    for (let updates = 0; pos < end && (block[pos]! & 0xe0) === 0x20; updates++) {
      if (updates === 2) throw compressionError(`a third dynamic table size update at byte ${pos}`);
      const at = pos;
      const size = this.integer(block, pos, 5);
      pos = this.pos;
      if (size > this.maxTableSize) {
        throw compressionError(`dynamic table size update to ${size} at byte ${at} exceeds SETTINGS_HEADER_TABLE_SIZE ${this.maxTableSize}`);
      }
      table.setCapacity(size);
    }
    let out: string[] | null = [];
    let listSize = 0;
    const maxList = this.maxHeaderListSize;
    while (pos < end) {
      const at = pos;
      const b = block[pos]!;
      let name: string;
      let value: string;
      if (b & 0x80) {
        // Indexed field (6.1).
        const index = this.integer(block, pos, 7);
        pos = this.pos;
        if (index === 0) throw compressionError(`indexed field with index 0 at byte ${at}`);
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index - 1]!;
          value = STATIC_VALUES[index - 1]!;
        } else {
          const d = index - STATIC_COUNT - 1;
          if (d >= table.count) throw this.badIndex(index, at);
          name = table.name(d);
          value = table.value(d);
        }
      } else if (b & 0x20 && !(b & 0x40)) {
        throw compressionError(`dynamic table size update at byte ${at} after the first field of the block`);
      } else {
        // A literal: with incremental indexing (6.2.1, 01xxxxxx, a 6-bit name index), or without
        // indexing (6.2.2) or never indexed (6.2.3) (0000xxxx / 0001xxxx, 4 bits: the same to a decoder).
        const indexing = (b & 0x40) !== 0;
        const index = this.integer(block, pos, indexing ? 6 : 4);
        pos = this.pos;
        if (index === 0) {
          name = this.string(block, pos);
          pos = this.pos;
        } else {
          name = this.indexedName(index, at);
        }
        value = this.string(block, pos);
        pos = this.pos;
        if (indexing) table.add(name, value);
      }
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (out !== null) {
        // Past the limit the fields are dropped but the block is still decoded, for the table's sake.
        if (listSize > maxList) out = null;
        else out.push(name, value);
      }
    }
    return out;
  }

  private indexedName(index: number, at: number): string {
    if (index <= STATIC_COUNT) return STATIC_NAMES[index - 1]!;
    const d = index - STATIC_COUNT - 1;
    if (d >= this.table.count) throw this.badIndex(index, at);
    return this.table.name(d);
  }

  private badIndex(index: number, at: number): H2Error {
    return compressionError(`index ${index} at byte ${at} is beyond the tables (${STATIC_COUNT} static + ${this.table.count} dynamic entries)`);
  }

  /** An integer with an N-bit prefix (5.1) starting at `pos`; sets this.pos past it. */
  private integer(block: Buffer, pos: number, prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = block[pos]! & max;
    pos++;
    if (value < max) {
      this.pos = pos;
      return value;
    }
    const at = pos - 1;
    const end = block.length;
    let shift = 0;
    for (let i = 0; ; i++) {
      if (pos >= end) throw compressionError(`integer at byte ${at} is truncated by the end of the block`);
      if (i === MAX_INT_CONTINUATIONS) throw compressionError(`integer at byte ${at} has more than ${MAX_INT_CONTINUATIONS} continuation bytes`);
      const c = block[pos++]!;
      value += (c & 0x7f) * 2 ** shift;
      shift += 7;
      if ((c & 0x80) === 0) break;
    }
    if (value > MAX_INT) throw compressionError(`integer ${value} at byte ${at} exceeds 2^31-1`);
    this.pos = pos;
    return value;
  }

  /** A string literal (5.2) starting at `pos`; sets this.pos past it. */
  private string(block: Buffer, pos: number): string {
    if (pos >= block.length) throw compressionError(`string literal missing at byte ${pos}: the block ends`);
    const at = pos;
    const huffman = (block[pos]! & 0x80) !== 0;
    const length = this.integer(block, pos, 7);
    const start = this.pos;
    const end = start + length;
    if (end > block.length) {
      throw compressionError(`string literal of ${length} bytes at byte ${at} runs past the end of the ${block.length}-byte block`);
    }
    this.pos = end;
    if (length === 0) return '';
    return huffman ? huffmanDecode(block, start, end) : (block as Latin1Buffer).latin1Slice(start, end);
  }
}

/** Names whose values go out as never-indexed literals (RFC 7541 7.1.3), so no intermediary after
 *  us puts credentials into a compression table. Both are static-table names. */
const NEVER_INDEXED: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization']);

/** Per static name: its first index, the static (value, index) pairs for that name, and its slot
 *  in an encoder's per-name state. */
interface StaticName {
  readonly index: number;
  readonly values: readonly string[];
  readonly indexes: readonly number[];
  readonly slot: number;
  readonly never: boolean;
}

const STATIC_BY_NAME: ReadonlyMap<string, StaticName> = (() => {
  const m = new Map<string, { index: number; values: string[]; indexes: number[]; slot: number; never: boolean }>();
  STATIC_TABLE.forEach(([name, value], i) => {
    let e = m.get(name);
    if (!e) m.set(name, (e = { index: i + 1, values: [], indexes: [], slot: m.size, never: NEVER_INDEXED.has(name) }));
    // An empty static value is a name-only entry; a field with an empty value still matches it.
    e.values.push(value);
    e.indexes.push(i + 1);
  });
  return m;
})();
const STATIC_NAME_COUNT = STATIC_BY_NAME.size;

/** Strings up to this length are written byte by byte; longer ones through latin1Write. */
const SHORT_STRING = 32;
/** Names not in the static table whose last value an encoder remembers; past it, it forgets them all. */
const MAX_TRACKED_NAMES = 128;

/** An encoder's memory of one field name: the last value sent and the table entry holding it. */
interface NameState {
  value: string | null;
  /** Insertion number of the dynamic table entry (name, value), or -1. */
  entry: number;
}

/**
 * Encodes header blocks of one connection direction. With a dynamic table (the default, at most
 * 4096 bytes) a (name, value) pair goes into the table the second time it is sent in a row for
 * that name and is an indexed field (one or two bytes) from the third on; values that change (ids,
 * timeouts) never enter the table, so they cannot push the stable ones out. Static-table matches
 * are indexed; everything else is a plain-string literal without indexing. Because of the table,
 * every block encoded must reach the peer, in the order encoded: encode when sending, never
 * encode and drop. `new HpackEncoder(0)` uses no table and has no such constraint.
 */
export class HpackEncoder {
  /** The dynamic table size the peer's decoder holds us to: the protocol's 4096 until it says less. */
  private peerLimit = INITIAL_TABLE_SIZE;
  /** Our table's maximum size: at most the peer's limit. */
  private capacity: number;
  /** A size update owed at the start of the next block, or -1. */
  private pendingUpdate = -1;
  /** Entries ever inserted and ever evicted: entry n is in the table while evicted <= n < inserted. */
  private inserted = 0;
  private evicted = 0;
  private size = 0;
  /** Size of entry n at [n % length] (a ring; an entry takes at least 32 bytes). */
  private readonly sizes: Int32Array;
  private readonly staticNames: NameState[] = [];
  private readonly otherNames = new Map<string, NameState>();

  /** `tableSize`: the most dynamic table we use (0: none; never above the peer's limit). */
  constructor(tableSize = INITIAL_TABLE_SIZE) {
    this.capacity = Math.min(tableSize, INITIAL_TABLE_SIZE);
    this.sizes = new Int32Array(Math.floor(this.capacity / ENTRY_OVERHEAD) + 1);
    for (let i = 0; i < STATIC_NAME_COUNT; i++) this.staticNames.push({ value: null, entry: -1 });
    // The peer's decoder starts at 4096; a smaller table of ours is announced like a reduction.
    if (this.capacity < INITIAL_TABLE_SIZE) this.setMaxTableSize(this.capacity);
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE; the encoder may use less (it must announce a change
   *  with a size update at the start of the next block). */
  setMaxTableSize(n: number): void {
    // Only a reduction needs announcing (decoders expect it, RFC 7541 4.2); we never grow back.
    if (n < this.peerLimit) {
      this.peerLimit = n;
      this.pendingUpdate = n;
      if (n < this.capacity) {
        this.capacity = n;
        this.evictTo(n);
      }
    }
  }

  /** Bytes in our dynamic table (as the peer's decoder holds it after our last block). */
  get dynamicTableSize(): number {
    return this.size;
  }

  /** Entries in our dynamic table. */
  get dynamicTableCount(): number {
    return this.inserted - this.evicted;
  }

  /** One header block for flat [name, value, ...] (names already lowercase, pseudo-headers first,
   *  as given). Must be cheap: this runs twice per proxied request. */
  encode(fields: readonly string[]): Buffer {
    const buf = Buffer.allocUnsafe(this.maxEncodedLength(fields));
    return buf.subarray(0, this.encodeInto(fields, buf, 0));
  }

  /** An upper bound of the bytes encode(fields) produces, for encodeInto's buffer. */
  maxEncodedLength(fields: readonly string[]): number {
    // Per field: one representation byte + one index continuation, two string lengths of at most
    // 1 + 4 bytes; plus a size update (1 + 5).
    let n = 6;
    for (let i = 0; i < fields.length; i++) n += fields[i]!.length;
    return n + 6 * fields.length;
  }

  /** Writes the block for `fields` into `buf` at `offset` (room: maxEncodedLength); returns the end. */
  encodeInto(fields: readonly string[], buf: Buffer, offset: number): number {
    let pos = offset;
    if (this.pendingUpdate >= 0) {
      pos = writeInteger(buf, pos, 0x20, 5, this.pendingUpdate);
      this.pendingUpdate = -1;
    }
    const useTable = this.capacity > 0;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!;
      const value = fields[i + 1]!;
      const s = STATIC_BY_NAME.get(name);
      let state: NameState | undefined;
      let nameIndex = 0;
      if (s !== undefined) {
        const values = s.values;
        let indexed = 0;
        for (let k = 0; k < values.length; k++) {
          if (values[k] === value) {
            indexed = s.indexes[k]!;
            break;
          }
        }
        if (indexed !== 0) {
          buf[pos++] = 0x80 | indexed; // static indexes are < 127: one byte
          continue;
        }
        if (s.never) {
          pos = writeInteger(buf, pos, 0x10, 4, s.index);
          pos = writeString(buf, pos, value);
          continue;
        }
        nameIndex = s.index;
        if (useTable) state = this.staticNames[s.slot]!;
      } else if (useTable) {
        state = this.otherNames.get(name);
        if (state === undefined) {
          if (this.otherNames.size >= MAX_TRACKED_NAMES) this.otherNames.clear();
          this.otherNames.set(name, (state = { value, entry: -1 }));
          pos = writeLiteral(buf, pos, 0x00, 4, nameIndex, name, value);
          continue;
        }
      }
      if (state !== undefined) {
        if (state.value === value) {
          if (state.entry >= this.evicted) {
            pos = writeInteger(buf, pos, 0x80, 7, STATIC_COUNT + this.inserted - state.entry);
            continue;
          }
          // The second time in a row: into the table, if it fits.
          const entrySize = name.length + value.length + ENTRY_OVERHEAD;
          if (entrySize <= this.capacity) {
            this.evictTo(this.capacity - entrySize);
            this.sizes[this.inserted % this.sizes.length] = entrySize;
            this.size += entrySize;
            state.entry = this.inserted++;
            pos = writeLiteral(buf, pos, 0x40, 6, nameIndex, name, value);
            continue;
          }
        } else {
          state.value = value;
          state.entry = -1;
        }
      }
      pos = writeLiteral(buf, pos, 0x00, 4, nameIndex, name, value);
    }
    return pos;
  }

  private evictTo(limit: number): void {
    while (this.size > limit) {
      this.size -= this.sizes[this.evicted % this.sizes.length]!;
      this.evicted++;
    }
  }
}

/** A literal field: static name index (or 0 and the name as a string), then the value. */
function writeLiteral(buf: Buffer, pos: number, first: number, prefixBits: number, nameIndex: number, name: string, value: string): number {
  if (nameIndex !== 0) {
    pos = writeInteger(buf, pos, first, prefixBits, nameIndex);
  } else {
    buf[pos++] = first;
    pos = writeString(buf, pos, name);
  }
  return writeString(buf, pos, value);
}

/** An integer with an N-bit prefix (5.1), `first` holding the representation's high bits. */
function writeInteger(buf: Buffer, pos: number, first: number, prefixBits: number, value: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    buf[pos] = first | value;
    return pos + 1;
  }
  buf[pos++] = first | max;
  value -= max;
  while (value >= 0x80) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos] = value;
  return pos + 1;
}

/** A plain (not Huffman-coded) string literal, latin1. */
function writeString(buf: Buffer, pos: number, s: string): number {
  const n = s.length;
  if (n < 0x7f) buf[pos++] = n;
  else pos = writeInteger(buf, pos, 0, 7, n);
  if (n <= SHORT_STRING) {
    for (let k = 0; k < n; k++) buf[pos + k] = s.charCodeAt(k);
  } else {
    (buf as Latin1Buffer).latin1Write(s, pos, n);
  }
  return pos + n;
}
