/**
 * HTTP/2 framing (RFC 9113 sections 4.1 and 6): the frame header, an incremental reader that turns
 * socket chunks into whole frames, and the control frames a connection sends. Frame semantics
 * (which frame is allowed on which stream, flow control) belong to the connection.
 */

/** Bytes in a frame header: length (24 bits), type, flags, reserved bit + stream id (31 bits). */
export const FRAME_HEADER_SIZE = 9;

/** What a client sends first on every HTTP/2 connection (RFC 9113 3.4). */
export const CLIENT_PREFACE: Buffer = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Frame types (RFC 9113 6). */
export const FrameType = {
  DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5,
  PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9,
} as const;

/** Frame flags; END_STREAM and ACK share a bit and differ by frame type. */
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 7). */
export const ErrorCode = {
  NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4, STREAM_CLOSED: 5, FRAME_SIZE_ERROR: 6, REFUSED_STREAM: 7, CANCEL: 8,
  COMPRESSION_ERROR: 9, CONNECT_ERROR: 10, ENHANCE_YOUR_CALM: 11, INADEQUATE_SECURITY: 12,
  HTTP_1_1_REQUIRED: 13,
} as const;

/** SETTINGS identifiers (RFC 9113 6.5.2, RFC 8441 3). */
export const SettingId = {
  HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3,
  INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6, ENABLE_CONNECT_PROTOCOL: 8,
} as const;

/** The smallest SETTINGS_MAX_FRAME_SIZE, and every peer's initial one. */
export const DEFAULT_MAX_FRAME_SIZE = 16384;
/** The largest SETTINGS_MAX_FRAME_SIZE a peer may announce: 2^24 - 1. */
export const MAX_ALLOWED_FRAME_SIZE = 16777215;
/** The largest flow-control window (and window increment): 2^31 - 1. */
export const MAX_WINDOW_SIZE = 2147483647;

const ERROR_NAMES: readonly string[] = Object.keys(ErrorCode);

/** The name of an error code (`PROTOCOL_ERROR`), or `0x…` for codes RFC 9113 does not define. */
export function errorCodeName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/** A protocol error. streamId 0 = connection error (GOAWAY), else a stream error (RST_STREAM). */
export class H2Error extends Error {
  readonly code: number;
  readonly streamId: number;
  constructor(code: number, message: string, streamId = 0) {
    super(message);
    this.name = 'H2Error';
    this.code = code;
    this.streamId = streamId;
  }
}

/** Called once per complete frame. `payload` is exactly the frame's payload (padding NOT removed
 *  here); it may be a view into a socket chunk and may be retained by the callee. */
export type FrameHandler = (type: number, flags: number, streamId: number, payload: Buffer) => void;

const EMPTY = Buffer.alloc(0);

/** Incremental reader: bytes in, whole frames out. */
export class FrameReader {
  /** Largest payload accepted (our SETTINGS_MAX_FRAME_SIZE, 16384 by default); settable. */
  maxFrameSize: number;
  private readonly onFrame: FrameHandler;
  /** Header bytes of a frame that spans chunks (`headerFill` of 9 read so far). */
  private readonly header = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  private headerFill = 0;
  /** Payload of a frame that spans chunks, once its header is complete; `bodyFill` bytes read. */
  private body: Buffer | null = null;
  private bodyFill = 0;
  private type = 0;
  private flags = 0;
  private streamId = 0;

  constructor(onFrame: FrameHandler, maxFrameSize = DEFAULT_MAX_FRAME_SIZE) {
    this.onFrame = onFrame;
    this.maxFrameSize = maxFrameSize;
  }

  /** Feeds bytes (any split); calls onFrame synchronously for each complete frame, in order.
   *  Throws H2Error(FRAME_SIZE_ERROR) naming the size when a frame's length exceeds maxFrameSize.
   *  If onFrame throws, push stops and rethrows (the connection is then dead). */
  push(chunk: Buffer): void {
    const end = chunk.length;
    let off = 0;
    // Finish a frame begun in an earlier chunk: copy its bytes together.
    if (this.headerFill > 0 || this.body !== null) {
      if (this.body === null) {
        const n = Math.min(FRAME_HEADER_SIZE - this.headerFill, end);
        chunk.copy(this.header, this.headerFill, 0, n);
        this.headerFill += n;
        off = n;
        if (this.headerFill < FRAME_HEADER_SIZE) return;
        const h = this.header;
        const length = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
        this.checkLength(length);
        this.type = h[3]!;
        this.flags = h[4]!;
        this.streamId = h.readUInt32BE(5) & 0x7fffffff;
        this.body = length === 0 ? EMPTY : Buffer.allocUnsafe(length);
        this.bodyFill = 0;
      }
      const body = this.body;
      const n = Math.min(body.length - this.bodyFill, end - off);
      if (n > 0) chunk.copy(body, this.bodyFill, off, off + n);
      this.bodyFill += n;
      off += n;
      if (this.bodyFill < body.length) return;
      this.body = null;
      this.headerFill = 0;
      this.onFrame(this.type, this.flags, this.streamId, body);
    }
    // Frames wholly inside this chunk are handed out as views, without copying.
    while (end - off >= FRAME_HEADER_SIZE) {
      const length = (chunk[off]! << 16) | (chunk[off + 1]! << 8) | chunk[off + 2]!;
      this.checkLength(length);
      const start = off + FRAME_HEADER_SIZE;
      if (start + length > end) break;
      const type = chunk[off + 3]!;
      const flags = chunk[off + 4]!;
      const streamId = chunk.readUInt32BE(off + 5) & 0x7fffffff;
      off = start + length;
      this.onFrame(type, flags, streamId, chunk.subarray(start, off));
    }
    if (off < end) {
      // The rest starts a frame that continues in a later chunk.
      const n = Math.min(FRAME_HEADER_SIZE, end - off);
      chunk.copy(this.header, 0, off, off + n);
      this.headerFill = n;
      off += n;
      if (n === FRAME_HEADER_SIZE) {
        const length = (this.header[0]! << 16) | (this.header[1]! << 8) | this.header[2]!;
        this.type = this.header[3]!;
        this.flags = this.header[4]!;
        this.streamId = this.header.readUInt32BE(5) & 0x7fffffff;
        const body = Buffer.allocUnsafe(length);
        chunk.copy(body, 0, off, end);
        this.body = body;
        this.bodyFill = end - off;
      }
    }
  }

  private checkLength(length: number): void {
    if (length > this.maxFrameSize) {
      throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds SETTINGS_MAX_FRAME_SIZE ${this.maxFrameSize}`);
    }
  }
}

/** Writes a 9-byte frame header into `buf` at `offset`; returns offset + 9. */
export function writeFrameHeader(buf: Buffer, offset: number, length: number, type: number, flags: number, streamId: number): number {
  buf[offset] = length >>> 16;
  buf[offset + 1] = (length >>> 8) & 0xff;
  buf[offset + 2] = length & 0xff;
  buf[offset + 3] = type;
  buf[offset + 4] = flags;
  buf.writeUInt32BE(streamId & 0x7fffffff, offset + 5);
  return offset + FRAME_HEADER_SIZE;
}

/** Whole control frames, ready to send. */
export function settingsFrame(settings: ReadonlyArray<readonly [id: number, value: number]>): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE + 6 * settings.length);
  let off = writeFrameHeader(buf, 0, 6 * settings.length, FrameType.SETTINGS, 0, 0);
  for (const [id, value] of settings) {
    buf.writeUInt16BE(id, off);
    buf.writeUInt32BE(value, off + 2);
    off += 6;
  }
  return buf;
}

/** SETTINGS with ACK and no payload. */
export function settingsAckFrame(): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  writeFrameHeader(buf, 0, 0, FrameType.SETTINGS, Flag.ACK, 0);
  return buf;
}

/** PING carrying 8 opaque bytes (`opaque` shorter than 8 is zero-padded, longer is cut). */
export function pingFrame(ack: boolean, opaque: Buffer): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER_SIZE + 8);
  writeFrameHeader(buf, 0, 8, FrameType.PING, ack ? Flag.ACK : 0, 0);
  opaque.copy(buf, FRAME_HEADER_SIZE, 0, Math.min(8, opaque.length));
  return buf;
}

/** GOAWAY with the last stream id we processed, the error code and optional debug text (UTF-8). */
export function goawayFrame(lastStreamId: number, code: number, debug?: string): Buffer {
  const debugLength = debug ? Buffer.byteLength(debug, 'utf8') : 0;
  const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE + 8 + debugLength);
  writeFrameHeader(buf, 0, 8 + debugLength, FrameType.GOAWAY, 0, 0);
  buf.writeUInt32BE(lastStreamId & 0x7fffffff, FRAME_HEADER_SIZE);
  buf.writeUInt32BE(code >>> 0, FRAME_HEADER_SIZE + 4);
  if (debug) buf.write(debug, FRAME_HEADER_SIZE + 8, 'utf8');
  return buf;
}

/** WINDOW_UPDATE for a stream (0 = the connection); `increment` 1..2^31-1. */
export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE + 4);
  writeFrameHeader(buf, 0, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  buf.writeUInt32BE(increment & 0x7fffffff, FRAME_HEADER_SIZE);
  return buf;
}

/** RST_STREAM with an error code. */
export function rstStreamFrame(streamId: number, code: number): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE + 4);
  writeFrameHeader(buf, 0, 4, FrameType.RST_STREAM, 0, streamId);
  buf.writeUInt32BE(code >>> 0, FRAME_HEADER_SIZE);
  return buf;
}

/**
 * A header block as frames: one HEADERS frame and as many CONTINUATION frames as `maxFrameSize`
 * requires (RFC 9113 4.3), in one buffer. END_STREAM goes on the HEADERS frame, END_HEADERS on the
 * last frame.
 */
export function headersFrames(streamId: number, block: Buffer, endStream: boolean, maxFrameSize: number): Buffer {
  const frames = block.length <= maxFrameSize ? 1 : Math.ceil(block.length / maxFrameSize);
  const buf = Buffer.allocUnsafe(block.length + frames * FRAME_HEADER_SIZE);
  let off = 0;
  let from = 0;
  for (let i = 0; i < frames; i++) {
    const n = Math.min(maxFrameSize, block.length - from);
    const last = i === frames - 1;
    const flags = (last ? Flag.END_HEADERS : 0) | (i === 0 && endStream ? Flag.END_STREAM : 0);
    off = writeFrameHeader(buf, off, n, i === 0 ? FrameType.HEADERS : FrameType.CONTINUATION, flags, streamId);
    block.copy(buf, off, from, from + n);
    off += n;
    from += n;
  }
  return buf;
}

/**
 * The header block fragment of a HEADERS payload: padding (PADDED) and the priority fields
 * (PRIORITY) removed. A view, not a copy. H2Error(PROTOCOL_ERROR) when the padding or priority
 * fields do not fit the payload (RFC 9113 6.2).
 */
export function headersFragment(flags: number, payload: Buffer): Buffer {
  let start = 0;
  let end = payload.length;
  if (flags & Flag.PADDED) {
    if (end < 1) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'HEADERS frame with PADDED flag has no Pad Length');
    const pad = payload[0]!;
    start = 1;
    end -= pad;
  }
  if (flags & Flag.PRIORITY) start += 5;
  if (end < start) {
    throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame of ${payload.length} bytes is too short for its padding and priority fields`);
  }
  return payload.subarray(start, end);
}

/** Parses a SETTINGS payload into [id, value] pairs; H2Error on a length not a multiple of 6 or an
 *  invalid value (ENABLE_PUSH not 0/1, INITIAL_WINDOW_SIZE > 2^31-1 → FLOW_CONTROL_ERROR,
 *  MAX_FRAME_SIZE outside 16384..16777215). Unknown ids are kept (the caller ignores them). */
export function parseSettings(payload: Buffer): Array<[number, number]> {
  if (payload.length % 6 !== 0) {
    throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `SETTINGS payload of ${payload.length} bytes is not a multiple of 6`);
  }
  const out: Array<[number, number]> = [];
  for (let off = 0; off < payload.length; off += 6) {
    const id = payload.readUInt16BE(off);
    const value = payload.readUInt32BE(off + 2);
    switch (id) {
      case SettingId.ENABLE_PUSH:
        if (value > 1) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH must be 0 or 1, got ${value}`);
        break;
      case SettingId.INITIAL_WINDOW_SIZE:
        if (value > MAX_WINDOW_SIZE) {
          throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value} exceeds 2^31-1`);
        }
        break;
      case SettingId.MAX_FRAME_SIZE:
        if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) {
          throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value} is outside 16384..16777215`);
        }
        break;
      case SettingId.ENABLE_CONNECT_PROTOCOL:
        if (value > 1) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_CONNECT_PROTOCOL must be 0 or 1, got ${value}`);
        break;
    }
    out.push([id, value]);
  }
  return out;
}
