/**
 * RESP2, the Redis protocol, as far as a rate limiter needs it: commands out as arrays of bulk
 * strings, replies in through an incremental parser that takes bytes as the socket delivers them
 * (a reply may be split anywhere, and one chunk may hold several replies).
 */

/** An error reply (`-ERR ...`): a value, not an exception, so a pipeline keeps its order. */
export class RespError {
  constructor(readonly message: string) {}
}

/** A decoded reply: simple and bulk strings as strings, integers as numbers, nil as null. */
export type RespValue = string | number | null | RespError | RespValue[];

/** One command as RESP bytes: an array of bulk strings. */
export function encodeCommand(args: ReadonlyArray<string | number>): Buffer {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = typeof a === 'number' ? String(a) : a;
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return Buffer.from(out, 'utf8');
}

/** Marks "not enough bytes yet" while parsing. */
const INCOMPLETE = Symbol('incomplete');
type Parsed = { value: RespValue; end: number } | typeof INCOMPLETE;

/** Most bytes one reply may hold before the stream is judged broken (replies here are tiny). */
const MAX_REPLY_BYTES = 8 * 1024 * 1024;

/** Feeds bytes in, calls `onReply` for each complete reply in order; throws on a malformed stream. */
export class RespParser {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly onReply: (v: RespValue) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let start = 0;
    for (;;) {
      const r = parse(this.buf, start);
      if (r === INCOMPLETE) break;
      start = r.end;
      this.onReply(r.value);
    }
    this.buf = start === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(start);
    if (this.buf.length > MAX_REPLY_BYTES) throw new Error(`RESP: a reply longer than ${MAX_REPLY_BYTES} bytes`);
  }

  /** Drops what is buffered (a new connection starts a new stream). */
  reset(): void {
    this.buf = Buffer.alloc(0);
  }
}

function parse(buf: Buffer, at: number): Parsed {
  if (at >= buf.length) return INCOMPLETE;
  const eol = buf.indexOf('\r\n', at + 1, 'latin1');
  if (eol < 0) return INCOMPLETE;
  const type = buf[at];
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case 0x2b: // +
      return { value: line, end: next };
    case 0x2d: // -
      return { value: new RespError(line), end: next };
    case 0x3a: // :
      return { value: integer(line), end: next };
    case 0x24: {
      // $
      const len = integer(line);
      if (len === -1) return { value: null, end: next };
      if (len < 0) throw new Error(`RESP: bad bulk length ${line}`);
      if (buf.length < next + len + 2) return INCOMPLETE;
      if (buf[next + len] !== 0x0d || buf[next + len + 1] !== 0x0a) throw new Error('RESP: bulk string not followed by CRLF');
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case 0x2a: {
      // *
      const count = integer(line);
      if (count === -1) return { value: null, end: next };
      if (count < 0) throw new Error(`RESP: bad array length ${line}`);
      const items: RespValue[] = [];
      let end = next;
      for (let i = 0; i < count; i++) {
        const r = parse(buf, end);
        if (r === INCOMPLETE) return INCOMPLETE;
        items.push(r.value);
        end = r.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`RESP: unexpected type byte 0x${(type ?? 0).toString(16)}`);
  }
}

function integer(s: string): number {
  if (!/^-?\d+$/.test(s)) throw new Error(`RESP: bad integer ${JSON.stringify(s)}`);
  return Number(s);
}
