/**
 * Strict HTTP/1.1 message-head parsing (RFC 9112). What the RFC calls invalid is refused with a
 * ParseError naming the fault, never repaired: a proxy that guesses differently from the server
 * behind it is how request smuggling happens.
 *
 * Heads are parsed from a latin1 string of the bytes before the blank line, so every byte maps to
 * one UTF-16 unit and offsets stay byte offsets.
 */
import { MeshError } from '../../core/errors.js';

/** A refused message head: the status and code to answer with, and what was wrong. */
export class ParseError extends MeshError {}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values may hold HTAB, SP, VCHAR and obs-text; every other control byte is refused.
const BAD_VALUE_BYTE = /[\x00-\x08\x0a-\x1f\x7f]/;
const BAD_TARGET_BYTE = /[\x00-\x20\x7f]/;
const DIGITS = /^[0-9]{1,15}$/;
/** tchar (RFC 9110 5.6.2) by character code below 128: 1 allowed, 2 allowed and uppercase, 0 not. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 2;

/**
 * Lowercase field names common enough to be recognised in place, by length, most frequent first:
 * one of these is the constant itself, not a slice of the head (and, with capitals, its lowercase
 * copy), and compares and hashes as an internalized string from then on.
 */
const KNOWN_NAMES: string[][] = [];
for (const n of [
  'host', 'date', 'server', 'connection', 'content-length', 'content-type', 'x-request-id', 'x-forwarded-for',
  'traceparent', 'tracestate', 'user-agent', 'accept', 'accept-encoding', 'accept-language', 'accept-ranges',
  'transfer-encoding', 'keep-alive', 'cache-control', 'content-encoding', 'etag', 'last-modified', 'vary',
  'location', 'expect', 'upgrade', 'te', 'authorization', 'cookie', 'set-cookie', 'x-forwarded-proto',
  'grpc-status', 'weft-error', 'weft-app-port', 'weft-source-service', 'weft-destination-service',
]) (KNOWN_NAMES[n.length] ??= []).push(n);

/**
 * The known name that `head[pos, end)` spells in any case, or null. The bytes are tokens already
 * (checked by the caller), and among token characters `c | 0x20` equals a lowercase letter, a digit
 * or `-` only for that letter in either case, that digit or `-`.
 */
function knownName(head: string, pos: number, end: number): string | null {
  const list = KNOWN_NAMES[end - pos];
  if (list === undefined) return null;
  next: for (let k = 0; k < list.length; k++) {
    const n = list[k]!;
    for (let i = 0; i < n.length; i++) if ((head.charCodeAt(pos + i) | 0x20) !== n.charCodeAt(i)) continue next;
    return n;
  }
  return null;
}

/** A Content-Length of 1 to 15 digits as a number, or -1 (for anything else, including a list). */
function plainLength(s: string): number {
  const n = s.length;
  if (n === 0 || n > 15) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

// The two Connection values nearly every message carries, shared: a parsed head's `connection` is
// never written to.
const KEEP_ALIVE: readonly string[] = ['keep-alive'];
const CLOSE: readonly string[] = ['close'];

/** Limits applied while reading a head. */
export interface HeadLimits {
  /** Largest head in bytes, request line and headers together. */
  maxHeadBytes: number;
  /** Most header fields. */
  maxHeaders: number;
}

/** Envoy's edge defaults: 60 KiB of headers, 100 fields. */
export const defaultHeadLimits: HeadLimits = { maxHeadBytes: 60 * 1024, maxHeaders: 100 };

/** Framing and connection facts every message head carries. */
interface HeadCommon {
  /** HTTP/1.<minor>. */
  minor: number;
  /** Header fields flattened as [name, value, name, value, …]; names lowercase. */
  headers: string[];
  /** Content-Length, or -1 when absent. */
  contentLength: number;
  chunked: boolean;
  /** Tokens of the Connection header (lowercase), or null when absent. */
  connection: readonly string[] | null;
}

/** A parsed request line and header section. */
export interface RequestHead extends HeadCommon {
  method: string;
  target: string;
  /** The single Host value, or null (HTTP/1.0 only). */
  host: string | null;
  expectContinue: boolean;
}

/** A parsed status line and header section. */
export interface ResponseHead extends HeadCommon {
  status: number;
  reason: string;
}

function bad(message: string): ParseError {
  return new ParseError('BAD_REQUEST', message);
}

/**
 * Parses header lines starting at `pos` (just after the first line's CRLF) to the end of `head`.
 * `head` excludes the final blank line, so its last line has no CRLF. With `request` set, Host and
 * Expect are read into it; returns how many Host fields there were.
 */
function parseFields(head: string, pos: number, limits: HeadLimits, out: HeadCommon, request: RequestHead | null): number {
  const headers = out.headers;
  let count = 0;
  let hosts = 0;
  let sawTe = false;
  const end = head.length;
  while (pos < end) {
    let eol = head.indexOf('\r\n', pos);
    if (eol === -1) eol = end;
    const c0 = head.charCodeAt(pos);
    if (c0 === 0x20 || c0 === 0x09) throw bad('obsolete line folding in header section');
    const colon = head.indexOf(':', pos);
    if (colon === -1 || colon > eol) throw bad(`header line without ":": ${JSON.stringify(head.slice(pos, Math.min(eol, pos + 40)))}`);
    // The name is a token; a table per character, not a regular expression per field.
    let upper = false;
    for (let i = pos; i < colon; i++) {
      const c = head.charCodeAt(i);
      const k = c < 128 ? TCHAR[c]! : 0;
      if (k === 0) throw bad(`invalid header name ${JSON.stringify(head.slice(pos, Math.min(colon, pos + 40)))}`);
      if (k === 2) upper = true;
    }
    if (colon === pos) throw bad('invalid header name ""');
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (head.charCodeAt(vs) === 0x20 || head.charCodeAt(vs) === 0x09)) vs++;
    while (ve > vs && (head.charCodeAt(ve - 1) === 0x20 || head.charCodeAt(ve - 1) === 0x09)) ve--;
    // HTAB, SP, VCHAR and obs-text only: a bare CR or LF inside a line shows up here as a control byte.
    for (let i = vs; i < ve; i++) {
      const c = head.charCodeAt(i);
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw bad(`invalid byte in value of header "${head.slice(pos, colon)}"`);
    }
    if (++count > limits.maxHeaders) throw new ParseError('HEADERS_TOO_LARGE', `more than ${limits.maxHeaders} header fields`);
    const value = head.slice(vs, ve);
    const name = upper ? (knownName(head, pos, colon) ?? head.slice(pos, colon).toLowerCase()) : head.slice(pos, colon);
    headers.push(name, value);
    switch (name) {
      case 'content-length': {
        const plain = plainLength(value);
        if (plain !== -1) {
          if (out.contentLength !== -1 && out.contentLength !== plain) throw bad('conflicting Content-Length values');
          out.contentLength = plain;
          break;
        }
        // A list of identical values is one length (RFC 9110 8.6); differing values are refused.
        const parts = value.indexOf(',') === -1 ? [value] : value.split(',').map((s) => s.trim());
        for (const p of parts) {
          if (!DIGITS.test(p)) throw bad(`invalid Content-Length ${JSON.stringify(value)}`);
          const n = Number(p);
          if (out.contentLength !== -1 && out.contentLength !== n) throw bad('conflicting Content-Length values');
          out.contentLength = n;
        }
        break;
      }
      case 'transfer-encoding':
        if (sawTe) throw bad('more than one Transfer-Encoding field');
        sawTe = true;
        // Only "chunked" is understood; any other coding cannot be framed safely.
        if (value.toLowerCase() !== 'chunked') throw new ParseError('NOT_IMPLEMENTED', `unsupported Transfer-Encoding ${JSON.stringify(value)}`);
        out.chunked = true;
        break;
      case 'connection': {
        const lower = value.toLowerCase();
        let tokens: readonly string[];
        if (lower === 'keep-alive') tokens = KEEP_ALIVE;
        else if (lower === 'close') tokens = CLOSE;
        else {
          const list = lower.split(',');
          for (let i = 0; i < list.length; i++) list[i] = list[i]!.trim();
          tokens = list;
        }
        out.connection = out.connection ? out.connection.concat(tokens) : tokens;
        break;
      }
      case 'host':
        if (request !== null) {
          hosts++;
          request.host = value;
        }
        break;
      case 'expect':
        if (request !== null) {
          if (value.toLowerCase() !== '100-continue') throw new ParseError('EXPECTATION_FAILED', `unsupported expectation ${JSON.stringify(value)}`);
          request.expectContinue = true;
        }
        break;
    }
    pos = eol + 2;
  }
  if (out.chunked && out.contentLength !== -1) throw bad('both Content-Length and Transfer-Encoding');
  return hosts;
}

/** Parses a request head (request line and fields, without the terminating blank line). */
export function parseRequestHead(head: string, limits: HeadLimits = defaultHeadLimits): RequestHead {
  let eol = head.indexOf('\r\n');
  if (eol === -1) eol = head.length;
  const line = head.slice(0, eol);
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 === -1 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || line.indexOf(' ', sp2 + 1) !== -1) throw bad('malformed request line');
  const method = line.slice(0, sp1);
  const target = line.slice(sp1 + 1, sp2);
  const version = line.slice(sp2 + 1);
  if (!TOKEN.test(method)) throw bad(`invalid method ${JSON.stringify(method.slice(0, 20))}`);
  if (target.length === 0 || BAD_TARGET_BYTE.test(target)) throw bad('invalid request target');
  let minor: number;
  if (version === 'HTTP/1.1') minor = 1;
  else if (version === 'HTTP/1.0') minor = 0;
  else if (/^HTTP\/[0-9]\.[0-9]$/.test(version)) throw new ParseError('VERSION_NOT_SUPPORTED', `unsupported version ${version}`);
  else throw bad('malformed HTTP version');

  const out: RequestHead = {
    method, target, minor, headers: [], contentLength: -1, chunked: false, connection: null, host: null, expectContinue: false,
  };
  const hosts = parseFields(head, eol + 2, limits, out, out);
  if (hosts > 1) throw bad('more than one Host field');
  if (minor === 1 && hosts === 0) throw bad('missing Host field');
  if (out.chunked && minor === 0) throw bad('Transfer-Encoding in an HTTP/1.0 request');
  return out;
}

/** Parses a response head (status line and fields, without the terminating blank line). */
export function parseResponseHead(head: string, limits: HeadLimits = defaultHeadLimits): ResponseHead {
  let eol = head.indexOf('\r\n');
  if (eol === -1) eol = head.length;
  if (!head.startsWith('HTTP/1.') || head.charCodeAt(8) !== 0x20) throw upstreamBad('malformed status line');
  const minorCode = head.charCodeAt(7) - 0x30;
  if (minorCode !== 0 && minorCode !== 1) throw upstreamBad('unsupported response version');
  const c0 = head.charCodeAt(9) - 0x30;
  const c1 = head.charCodeAt(10) - 0x30;
  const c2 = head.charCodeAt(11) - 0x30;
  // Out of range reads NaN, which fails every comparison.
  if (!(c0 >= 1 && c0 <= 9 && c1 >= 0 && c1 <= 9 && c2 >= 0 && c2 <= 9)) throw upstreamBad('malformed status code');
  // The space before an empty reason phrase is often omitted by servers; accept its absence.
  if (eol > 12 && head.charCodeAt(12) !== 0x20) throw upstreamBad('malformed status line');
  const reason = head.slice(13, eol);
  if (BAD_VALUE_BYTE.test(reason)) throw upstreamBad('invalid byte in reason phrase');
  const out: ResponseHead = {
    minor: minorCode, status: c0 * 100 + c1 * 10 + c2, reason, headers: [], contentLength: -1, chunked: false, connection: null,
  };
  try {
    parseFields(head, eol + 2, limits, out, null);
  } catch (err) {
    throw upstreamBad((err as Error).message);
  }
  return out;
}

function upstreamBad(message: string): ParseError {
  return new ParseError('UPSTREAM_PROTOCOL_ERROR', `upstream sent an invalid response: ${message}`);
}

/** A Buffer needle: a string one is re-encoded on every search. */
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/**
 * Finds the end of a head in `buf` from `from`: the index just past CRLFCRLF, or -1.
 * A bare LF LF is not a terminator; strict parsing then refuses the lone LFs inside the head.
 */
export function findHeadEnd(buf: Buffer, from: number): number {
  const i = buf.indexOf(HEAD_END, from);
  return i === -1 ? -1 : i + 4;
}

const enum ChunkState {
  Size,
  SizeWs,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
}

/** Receives the decoded payload and the end of a chunked body. */
export interface ChunkSink {
  data(chunk: Buffer): void;
  /** Trailer fields flattened like headers (lowercase names), or null when there were none. */
  end(trailers: string[] | null): void;
}

const MAX_CHUNK_EXT = 4096;
const MAX_TRAILER = 16 * 1024;

/**
 * An incremental, strict decoder of the chunked transfer coding. Payload slices are views into the
 * input buffers, never copies.
 */
export class ChunkedDecoder {
  private state = ChunkState.Size;
  private size = 0;
  private digits = 0;
  private extBytes = 0;
  private trailer = '';
  private readonly sink: ChunkSink;
  private readonly onError: (err: ParseError) => ParseError;

  constructor(sink: ChunkSink, upstream = false) {
    this.sink = sink;
    this.onError = upstream ? (e) => upstreamBad(e.message) : (e) => e;
  }

  /**
   * Consumes bytes of `buf` from `offset`. Returns the index just past the end of the body when it
   * ended inside `buf`, or -1 when every byte was consumed and more are needed.
   */
  push(buf: Buffer, offset: number): number {
    try {
      return this.run(buf, offset);
    } catch (err) {
      throw err instanceof ParseError ? this.onError(err) : err;
    }
  }

  private run(buf: Buffer, i: number): number {
    const n = buf.length;
    while (i < n) {
      switch (this.state) {
        case ChunkState.Size: {
          const c = buf[i]!;
          const v = hexValue(c);
          if (v !== -1) {
            if (++this.digits > 12) throw bad('chunk size too large');
            this.size = this.size * 16 + v;
            i++;
          } else if (this.digits === 0) {
            throw bad('invalid chunk size');
          } else if (c === 0x0d) {
            this.state = ChunkState.SizeLf;
            i++;
          } else if (c === 0x3b) {
            this.state = ChunkState.Ext;
            i++;
          } else if (c === 0x20 || c === 0x09) {
            this.state = ChunkState.SizeWs;
            i++;
          } else {
            throw bad('invalid chunk size');
          }
          break;
        }
        case ChunkState.SizeWs: {
          const c = buf[i++]!;
          if (c === 0x3b) this.state = ChunkState.Ext;
          else if (c !== 0x20 && c !== 0x09) throw bad('invalid chunk size');
          break;
        }
        case ChunkState.Ext: {
          const c = buf[i++]!;
          if (c === 0x0d) this.state = ChunkState.SizeLf;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw bad('invalid byte in chunk extension');
          else if (++this.extBytes > MAX_CHUNK_EXT) throw bad('chunk extension too long');
          break;
        }
        case ChunkState.SizeLf:
          if (buf[i++] !== 0x0a) throw bad('chunk size line not ended by CRLF');
          this.digits = 0;
          if (this.size === 0) {
            this.state = ChunkState.Trailer;
          } else {
            this.state = ChunkState.Data;
          }
          break;
        case ChunkState.Data: {
          const take = Math.min(this.size, n - i);
          this.sink.data(buf.subarray(i, i + take));
          i += take;
          this.size -= take;
          if (this.size === 0) this.state = ChunkState.DataCr;
          break;
        }
        case ChunkState.DataCr:
          if (buf[i++] !== 0x0d) throw bad('chunk data not followed by CRLF');
          this.state = ChunkState.DataLf;
          break;
        case ChunkState.DataLf:
          if (buf[i++] !== 0x0a) throw bad('chunk data not followed by CRLF');
          this.state = ChunkState.Size;
          this.extBytes = 0;
          break;
        case ChunkState.Trailer: {
          // Collect the trailer section up to its blank line; usually it is just CRLF.
          const text = this.trailer + buf.toString('latin1', i, n);
          const endBlank = text.startsWith('\r\n') ? 0 : text.indexOf('\r\n\r\n');
          if (endBlank === -1) {
            if (text.length > MAX_TRAILER) throw new ParseError('HEADERS_TOO_LARGE', 'trailer section too large');
            this.trailer = text;
            return -1;
          }
          const consumedFromBuf = (endBlank === 0 ? 2 : endBlank + 4) - this.trailer.length;
          let trailers: string[] | null = null;
          if (endBlank > 0) {
            const t: HeadCommon = { minor: 1, headers: [], contentLength: -1, chunked: false, connection: null };
            parseFields(text.slice(0, endBlank), 0, { maxHeadBytes: MAX_TRAILER, maxHeaders: 100 }, t, null);
            trailers = t.headers;
          }
          this.sink.end(trailers);
          return i + consumedFromBuf;
        }
      }
    }
    return -1;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
