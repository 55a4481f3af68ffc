/**
 * One HTTP/2 connection on a raw socket (RFC 9113 sections 3.4, 5, 6 and 8), either role: the
 * connection preface, SETTINGS, stream states and ids, header blocks and their field rules, flow
 * control both ways, RST_STREAM, GOAWAY, PING, and the limits a proxy facing the internet needs
 * (concurrency, rapid reset, control-frame and empty-frame floods, CONTINUATION floods).
 *
 * Streams are plain objects with nullable callback properties: no EventEmitter, Duplex, Promise or
 * AsyncResource per stream. Everything sent during one turn is gathered and written to the socket
 * in one write on the next tick (or at once past FLUSH_AT bytes), so a small answer's HEADERS and
 * DATA share a TCP segment. DATA bodies are never copied: each frame is a 9-byte header buffer
 * followed by the caller's chunk (or a view of it).
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  ErrorCode,
  FRAME_HEADER_SIZE,
  Flag,
  FrameReader,
  FrameType,
  H2Error,
  MAX_WINDOW_SIZE,
  SettingId,
  goawayFrame,
  headersFragment,
  headersFrames,
  parseSettings,
  pingFrame,
  rstStreamFrame,
  settingsAckFrame,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
} from './frames.js';
import { HpackDecoder, HpackEncoder } from './hpack.js';

/** The settings one side announces (RFC 9113 6.5.2). */
export interface H2Settings {
  headerTableSize: number;
  enablePush: boolean;
  maxConcurrentStreams: number;
  initialWindowSize: number;
  maxFrameSize: number;
  maxHeaderListSize: number;
}

/** How a connection is built: its role, our settings and the connection-level callbacks. */
export interface H2ConnectionOptions {
  role: 'server' | 'client';
  /** Our settings (defaults: DEFAULT_SETTINGS: table 4096, push off, 100 streams, window 1 MiB,
   *  frame 16384, header list 65536). */
  settings?: Partial<H2Settings>;
  /** Our connection-level receive window (default 4 MiB), announced with a WINDOW_UPDATE at start. */
  connectionWindowSize?: number;
  /** Server: a new stream's complete head arrived (fields flat, pseudo-headers included and
   *  checked per RFC 9113 8.3.1). endStream: no body follows, and onEnd will not be called. */
  onStream?: (stream: H2Stream, fields: string[], endStream: boolean) => void;
  /** The peer's SETTINGS were applied (the first time: the connection is established). */
  onSettings?: () => void;
  /** The peer sent GOAWAY (client: stop opening streams on this connection). */
  onGoaway?: (code: number, lastStreamId: number) => void;
  /** The connection is closed (err null for a clean close); every open stream got onClose first. */
  onClose?: (err: Error | null) => void;
}

/** Our settings when the options leave them out. The receive window is larger than the protocol's
 *  65,535 so one stream can fill a fast link; paused streams still hold at most this much. */
export const DEFAULT_SETTINGS: Readonly<H2Settings> = {
  headerTableSize: 4096,
  enablePush: false,
  maxConcurrentStreams: 100,
  initialWindowSize: 1 << 20,
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  maxHeaderListSize: 65536,
};
/** Our default connection-level receive window. It is returned as soon as data arrives (a paused
 *  stream's bytes too), so it bounds bytes in flight, not memory. */
export const DEFAULT_CONNECTION_WINDOW = 4 << 20;

/** The protocol's initial window for both sides until SETTINGS say otherwise. */
const SPEC_WINDOW = 65535;
/** Pending output at which we write at once instead of waiting for the end of the turn. */
const FLUSH_AT = 64 * 1024;
/** Pending output up to this size is joined into one buffer; larger goes out corked (writev). */
const CONCAT_MAX = 16 * 1024;
/** Queued bytes per stream past which write() returns false. */
const STREAM_HIGH_WATER = 64 * 1024;
/** SETTINGS/PING answers queued while the socket does not drain before the peer is cut off. */
const MAX_CONTROL_BACKLOG = 1000;
/** Rapid reset (CVE-2023-44487): a token bucket of stream resets the peer causes (its RST_STREAMs
 *  on streams we still answer, streams we refuse or reset for malformed heads). */
const RESET_BURST = 400;
const RESET_RATE_PER_S = 200;
/** Empty DATA frames (no END_STREAM) in a row before the peer is cut off. */
const MAX_EMPTY_DATA = 1000;
/** CONTINUATION frames per header block before the peer is cut off. */
const MAX_CONTINUATIONS = 128;
/** Recently closed streams remembered, to tell late frames (ignored) from protocol errors. */
const CLOSED_RING = 256;
/** How long a closing socket may take to flush before it is destroyed. */
const CLOSE_LINGER_MS = 2000;

/** How a remembered stream was closed. */
const CLOSED_BY_US = 1; // we sent RST_STREAM (or refused it): the peer may still have frames in flight
const CLOSED_BY_PEER = 2; // the peer sent RST_STREAM: later frames are a stream error
const CLOSED_ENDED = 3; // both sides ended: later frames are a connection error

/** Fields that belong to one HTTP/1.1 connection and are malformed in HTTP/2 (RFC 9113 8.2.2). */
const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
/** Characters a field name must not hold (RFC 9113 8.2.1): controls, space, uppercase, colon, DEL and above. */
const BAD_NAME = /[\x00-\x20:A-Z\x7f-\uffff]/;
/** Characters a field value must not hold anywhere (RFC 9113 8.2.1). */
const BAD_VALUE = /[\0\r\n]/;
const DIGITS = /^[0-9]+$/;

/** One stream: the caller's view of one exchange. Callbacks are plain nullable properties. */
export class H2Stream {
  readonly id: number;
  /** Client: the response head (also each 1xx interim head, with endStream false). When endStream
   *  is true, onEnd is not called. */
  onHeaders: ((fields: string[], endStream: boolean) => void) | null = null;
  /** DATA payload, padding removed; a view into the socket's chunk. */
  onData: ((chunk: Buffer) => void) | null = null;
  /** The peer ended its side: trailers (flat) or null. */
  onEnd: ((trailers: string[] | null) => void) | null = null;
  /** The stream is gone: peer reset (its code), our reset, or the connection died. Called once,
   *  also after a normal finish (code 0: the peer's side arrived whole; a peer's RST_STREAM
   *  NO_ERROR before its END_STREAM is reported as CANCEL). */
  onClose: ((code: number) => void) | null = null;
  /** The send side can take more after write() returned false. */
  onDrain: (() => void) | null = null;

  /** @internal */ readonly conn: H2Connection;
  /** @internal Our head is out (client: always). */ headSent = false;
  /** @internal */ done = false;
  /** @internal The peer sent END_STREAM. */ remoteEnded = false;
  /** @internal end() was called (or respond/request with endStream). */ endPending = false;
  /** @internal END_STREAM is out. */ endSent = false;
  /** @internal Server: the request head; client: the final response head. */ headReceived = false;
  /** @internal */ paused = false;
  /** @internal */ needDrain = false;
  /** @internal */ inSendQueue = false;
  /** @internal Client: the request is HEAD, so content-length does not describe the body. */ headRequest = false;
  /** @internal What we may still send (the peer's stream window). */ sendWindow: number;
  /** @internal What the peer may still send us. */ recvWindow: number;
  /** @internal Bytes received and not yet returned with a WINDOW_UPDATE. */ recvUnacked = 0;
  /** @internal DATA waiting for window or socket. */ queue: Buffer[] = [];
  /** @internal */ queuedBytes = 0;
  /** @internal Trailers to send once the queue is empty. */ trailers: readonly string[] | null = null;
  /** @internal The peer's content-length, or -1. */ contentLength = -1;
  /** @internal DATA bytes received (padding excluded). */ received = 0;

  /** @internal Made by the connection only. */
  constructor(conn: H2Connection, id: number, sendWindow: number, recvWindow: number) {
    this.conn = conn;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  get sentHead(): boolean {
    return this.headSent;
  }

  get closed(): boolean {
    return this.done;
  }

  /** Server: sends the response head (HEADERS + CONTINUATION as needed); also 1xx interim heads. */
  respond(fields: readonly string[], endStream: boolean): void {
    if (this.done) return;
    const conn = this.conn;
    if (!conn.isServer) throw new Error(`stream ${this.id}: respond() is for the server role`);
    if (this.headSent) throw new Error(`stream ${this.id}: the response head was sent already`);
    const status = fields[0] === ':status' ? fields[1]! : '';
    const interim = status.length === 3 && status.charCodeAt(0) === 0x31; // 1xx
    if (interim && endStream) throw new Error(`stream ${this.id}: a ${status} interim head cannot end the stream`);
    if (!interim) this.headSent = true;
    if (endStream) this.endPending = this.endSent = true;
    conn.sendHeaders(this.id, fields, endStream);
    if (endStream) conn.localEnded(this);
  }

  /** DATA within the peer's stream and connection windows; excess is queued and sent as
   *  WINDOW_UPDATEs arrive. Returns false once queued bytes reach STREAM_HIGH_WATER (then wait for
   *  onDrain). Writes on a closed stream are dropped. */
  write(chunk: Buffer): boolean {
    if (this.done || this.endPending) return true;
    if (!this.headSent) throw new Error(`stream ${this.id}: write() before the response head`);
    if (chunk.length === 0) return true;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.conn.sendQueued(this, 1 << 30);
    if (this.queuedBytes >= STREAM_HIGH_WATER) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** Ends our side: optional last chunk, then trailers (HEADERS with END_STREAM) or END_STREAM on
   *  the last DATA frame (an empty one when nothing is queued). */
  end(chunk?: Buffer | null, trailers?: readonly string[] | null): void {
    if (this.done || this.endPending) return;
    if (!this.headSent) throw new Error(`stream ${this.id}: end() before the response head`);
    if (chunk != null && chunk.length > 0) {
      this.queue.push(chunk);
      this.queuedBytes += chunk.length;
    }
    this.endPending = true;
    this.trailers = trailers != null && trailers.length > 0 ? trailers : null;
    this.conn.sendQueued(this, 1 << 30);
  }

  /** RST_STREAM with the code; onClose(code) follows at once. */
  reset(code: number): void {
    if (this.done) return;
    this.conn.resetStream(this, code, false);
  }

  /** Flow control for what we receive: while paused no WINDOW_UPDATE for this stream is sent, so
   *  the peer stops once its window is used. The connection window is still returned. */
  pause(): void {
    this.paused = true;
  }

  /** Returns everything received while paused to the peer's stream window. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.recvUnacked > 0 && !this.remoteEnded && !this.done) this.conn.returnStreamWindow(this);
  }
}

/** One HTTP/2 connection, server or client role. */
export class H2Connection {
  /** @internal */ readonly isServer: boolean;
  private readonly socket: Socket | TLSSocket;
  private readonly opts: H2ConnectionOptions;
  private readonly local: H2Settings;
  private readonly reader: FrameReader;
  private readonly decoder: HpackDecoder;
  private readonly encoder = new HpackEncoder();
  private readonly streams = new Map<number, H2Stream>();

  // Peer settings.
  private peerInitialWindow = SPEC_WINDOW;
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private peerMaxStreams = 100; // assumed until the peer's SETTINGS (as nghttp2 does)
  private peerSettingsSeen = false;
  /** The receive window a new stream starts with: until the peer acknowledged our SETTINGS it may
   *  still use the protocol's 65,535, so never less than that. */
  private recvInitialWindow: number;

  // Connection state.
  /** Server: bytes of the client preface still to check. */
  private prefaceLeft: number;
  /** Highest stream id the peer opened. */
  private lastPeerStreamId = 0;
  /** Client: the id of our next stream. */
  private nextStreamId = 1;
  private goawaySent = false;
  private goawayReceived = false;
  private dead = false;
  private closeReported = false;

  // Flow control.
  private connSendWindow = SPEC_WINDOW;
  private connRecvWindow: number;
  private connRecvUnacked = 0;
  private readonly connWindow: number;
  private readonly streamUpdateAt: number;
  private readonly connUpdateAt: number;

  // Header block being assembled (HEADERS without END_HEADERS, then CONTINUATION).
  private contId = 0;
  private contEndStream = false;
  private contParts: Buffer[] = [];
  private contBytes = 0;
  private contFrames = 0;
  private readonly maxBlockBytes: number;
  /** The HEADERS frame made its stream depend on itself (a stream error once the block is decoded). */
  private selfDependent = false;

  // Output.
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  private socketBlocked = false;
  private sendQueue: H2Stream[] = [];
  private pumping = false;
  private readonly flushTick: () => void;

  // Abuse accounting.
  private controlBacklog = 0;
  private emptyData = 0;
  private resetTokens = RESET_BURST;
  private resetStamp = 0;
  private readonly closedIds = new Int32Array(CLOSED_RING);
  private readonly closedHow = new Uint8Array(CLOSED_RING);
  private closedNext = 0;

  constructor(socket: Socket | TLSSocket, opts: H2ConnectionOptions) {
    this.socket = socket;
    this.opts = opts;
    this.isServer = opts.role === 'server';
    const local = (this.local = { ...DEFAULT_SETTINGS, ...opts.settings });
    this.prefaceLeft = this.isServer ? CLIENT_PREFACE.length : 0;
    this.reader = new FrameReader((type, flags, id, payload) => this.onFrame(type, flags, id, payload), local.maxFrameSize);
    this.decoder = new HpackDecoder(local.headerTableSize, local.maxHeaderListSize);
    this.maxBlockBytes = 2 * local.maxHeaderListSize;
    this.connWindow = Math.max(SPEC_WINDOW, Math.min(MAX_WINDOW_SIZE, opts.connectionWindowSize ?? DEFAULT_CONNECTION_WINDOW));
    this.connRecvWindow = this.connWindow;
    this.recvInitialWindow = Math.max(SPEC_WINDOW, local.initialWindowSize);
    this.streamUpdateAt = Math.max(1, local.initialWindowSize >>> 1);
    this.connUpdateAt = this.connWindow >>> 1;
    this.flushTick = () => {
      this.flushScheduled = false;
      this.flush();
    };

    if (!this.isServer) this.out(CLIENT_PREFACE);
    const settings: Array<[number, number]> = [];
    if (local.headerTableSize !== 4096) settings.push([SettingId.HEADER_TABLE_SIZE, local.headerTableSize]);
    if (!this.isServer || local.enablePush) settings.push([SettingId.ENABLE_PUSH, local.enablePush ? 1 : 0]);
    settings.push([SettingId.MAX_CONCURRENT_STREAMS, local.maxConcurrentStreams]);
    if (local.initialWindowSize !== SPEC_WINDOW) settings.push([SettingId.INITIAL_WINDOW_SIZE, local.initialWindowSize]);
    if (local.maxFrameSize !== DEFAULT_MAX_FRAME_SIZE) settings.push([SettingId.MAX_FRAME_SIZE, local.maxFrameSize]);
    settings.push([SettingId.MAX_HEADER_LIST_SIZE, local.maxHeaderListSize]);
    this.out(settingsFrame(settings));
    if (this.connWindow > SPEC_WINDOW) this.out(windowUpdateFrame(0, this.connWindow - SPEC_WINDOW));

    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.onSocketDrain());
    socket.on('error', (err: Error) => this.onSocketGone(err));
    socket.on('close', () => this.onSocketGone(null));
    socket.resume();
  }

  /** Open streams. */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** The peer's MAX_CONCURRENT_STREAMS (100 assumed until its SETTINGS arrive). */
  get peerMaxConcurrentStreams(): number {
    return this.peerMaxStreams;
  }

  /** No new streams may be opened (GOAWAY either way, or closed). */
  get closed(): boolean {
    return this.dead || this.goawaySent || this.goawayReceived;
  }

  /** Feeds bytes read off the socket (server: also bytes already read for protocol detection). */
  receive(chunk: Buffer): void {
    if (this.dead) return;
    try {
      if (this.prefaceLeft > 0) {
        const at = CLIENT_PREFACE.length - this.prefaceLeft;
        const n = Math.min(this.prefaceLeft, chunk.length);
        for (let i = 0; i < n; i++) {
          if (chunk[i] !== CLIENT_PREFACE[at + i]) {
            throw new H2Error(ErrorCode.PROTOCOL_ERROR, `bad connection preface: byte ${at + i} is 0x${chunk[i]!.toString(16)}, not the HTTP/2 client preface`);
          }
        }
        this.prefaceLeft -= n;
        if (n === chunk.length) return;
        chunk = chunk.subarray(n);
      }
      this.reader.push(chunk);
    } catch (err) {
      // A protocol error, or a caller's callback that threw: either way the connection is done.
      if (err instanceof H2Error) this.connectionError(err.code, err.message, err);
      else this.connectionError(ErrorCode.INTERNAL_ERROR, 'internal error', err as Error);
    }
  }

  /** Client: opens a stream and sends its head. Throws when closed/going away or at the peer's
   *  MAX_CONCURRENT_STREAMS. */
  request(fields: readonly string[], endStream: boolean): H2Stream {
    if (this.isServer) throw new Error('request() is for the client role');
    if (this.closed) throw new Error(this.dead ? 'the HTTP/2 connection is closed' : 'the HTTP/2 connection is going away');
    if (this.streams.size >= this.peerMaxStreams) {
      throw new Error(`the peer's SETTINGS_MAX_CONCURRENT_STREAMS (${this.peerMaxStreams}) is reached`);
    }
    const id = this.nextStreamId;
    if (id > MAX_WINDOW_SIZE) throw new Error('stream ids of this HTTP/2 connection are used up');
    this.nextStreamId = id + 2;
    const s = new H2Stream(this, id, this.peerInitialWindow, this.recvInitialWindow);
    s.headSent = true;
    for (let i = 0; i < fields.length && fields[i]!.charCodeAt(0) === 0x3a; i += 2) {
      if (fields[i] === ':method') s.headRequest = fields[i + 1] === 'HEAD';
    }
    this.streams.set(id, s);
    if (endStream) s.endPending = s.endSent = true;
    this.sendHeaders(id, fields, endStream);
    return s;
  }

  /** Graceful: GOAWAY(code, last stream id), finish streams in flight, then close. */
  goaway(code: number = ErrorCode.NO_ERROR): void {
    if (this.dead || this.goawaySent) return;
    this.goawaySent = true;
    this.out(goawayFrame(this.lastPeerStreamId, code));
    this.maybeFinish();
  }

  /** At once: every stream gets onClose (CANCEL, or INTERNAL_ERROR with an error), the socket is destroyed. */
  destroy(err?: Error): void {
    if (this.dead) return;
    this.dead = true;
    this.pending.length = 0;
    this.pendingBytes = 0;
    this.closeAll(err ? ErrorCode.INTERNAL_ERROR : ErrorCode.CANCEL);
    this.socket.destroy();
    this.reportClose(err ?? null);
  }

  // ---- Frames in -------------------------------------------------------------------------------

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.dead) return;
    if (this.contId !== 0 && type !== FrameType.CONTINUATION) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `frame of type ${type} on stream ${id} inside the header block of stream ${this.contId} (CONTINUATION expected)`);
    }
    if (!this.peerSettingsSeen && (type !== FrameType.SETTINGS || (flags & Flag.ACK) !== 0)) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `the first frame must be SETTINGS, got type ${type}`);
    }
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, id, payload);
      case FrameType.HEADERS:
        return this.onHeadersFrame(flags, id, payload);
      case FrameType.PRIORITY:
        return this.onPriority(id, payload);
      case FrameType.RST_STREAM:
        return this.onRstStream(id, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, id, payload);
      case FrameType.PUSH_PROMISE:
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, this.isServer ? 'PUSH_PROMISE from a client' : 'PUSH_PROMISE received, but push is disabled');
      case FrameType.PING:
        return this.onPing(flags, id, payload);
      case FrameType.GOAWAY:
        return this.onGoaway(id, payload);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      default:
        return; // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'DATA frame on stream 0');
    const length = payload.length;
    if (length > this.connRecvWindow) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `DATA frame of ${length} bytes on stream ${id} exceeds the connection window (${this.connRecvWindow})`);
    }
    // The connection window comes back at once, whatever happens to the stream, so one paused or
    // dead stream never stalls the others.
    this.connRecvWindow -= length;
    this.connRecvUnacked += length;
    if (this.connRecvUnacked >= this.connUpdateAt) {
      this.out(windowUpdateFrame(0, this.connRecvUnacked));
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
    let data = payload;
    if (flags & Flag.PADDED) {
      const pad = length > 0 ? payload[0]! : 0;
      if (length === 0 || pad >= length) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, `DATA frame on stream ${id}: padding of ${pad} bytes does not fit its ${length}-byte payload`);
      }
      data = payload.subarray(1, length - pad);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (data.length === 0 && !endStream) {
      if (++this.emptyData > MAX_EMPTY_DATA) throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `more than ${MAX_EMPTY_DATA} empty DATA frames in a row`);
    } else this.emptyData = 0;
    const s = this.streams.get(id);
    if (s === undefined) return this.frameOnClosed(id, 'DATA');
    if (s.remoteEnded) return this.resetStream(s, ErrorCode.STREAM_CLOSED, true);
    if (!s.headReceived) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true); // client: DATA before the response head
    if (length > s.recvWindow) return this.resetStream(s, ErrorCode.FLOW_CONTROL_ERROR, true);
    s.recvWindow -= length;
    s.recvUnacked += length;
    const received = (s.received += data.length);
    if (s.contentLength >= 0 && (received > s.contentLength || (endStream && received !== s.contentLength))) {
      return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
    }
    if (!endStream && !s.paused && s.recvUnacked >= this.streamUpdateAt) this.returnStreamWindow(s);
    if (data.length > 0) {
      const cb = s.onData;
      if (cb !== null) cb(data);
    }
    if (endStream && !s.done) this.remoteEnd(s, null);
  }

  private onHeadersFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'HEADERS frame on stream 0');
    const fragment = headersFragment(flags, payload);
    this.selfDependent = false;
    if (flags & Flag.PRIORITY) {
      const dep = payload.readUInt32BE(flags & Flag.PADDED ? 1 : 0) & 0x7fffffff;
      this.selfDependent = dep === id;
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(id, endStream, fragment);
    if (fragment.length > this.maxBlockBytes) this.blockTooBig(id, fragment.length);
    this.contId = id;
    this.contEndStream = endStream;
    this.contParts.push(fragment);
    this.contBytes = fragment.length;
    this.contFrames = 0;
  }

  private onContinuation(flags: number, id: number, payload: Buffer): void {
    if (this.contId === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `CONTINUATION frame on stream ${id} without a HEADERS frame before it`);
    if (id !== this.contId) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `CONTINUATION frame on stream ${id} inside the header block of stream ${this.contId}`);
    }
    const bytes = (this.contBytes += payload.length);
    if (bytes > this.maxBlockBytes) this.blockTooBig(id, bytes);
    if (++this.contFrames > MAX_CONTINUATIONS) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `more than ${MAX_CONTINUATIONS} CONTINUATION frames in the header block of stream ${id}`);
    }
    this.contParts.push(payload);
    if ((flags & Flag.END_HEADERS) === 0) return;
    const parts = this.contParts;
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
    this.contParts = [];
    this.contId = 0;
    this.contBytes = 0;
    this.onHeaderBlock(id, this.contEndStream, block);
  }

  private blockTooBig(id: number, bytes: number): never {
    throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `header block of stream ${id} exceeds ${this.maxBlockBytes} bytes (${bytes} so far)`);
  }

  /** A complete header block. It is always decoded first: the HPACK table must stay in step. */
  private onHeaderBlock(id: number, endStream: boolean, block: Buffer): void {
    const fields = this.decoder.decode(block);
    let s = this.streams.get(id);
    if (s !== undefined) {
      if (s.remoteEnded) return this.resetStream(s, ErrorCode.STREAM_CLOSED, true);
      if (!this.isServer && !s.headReceived) return this.onResponseHead(s, fields, endStream);
      // Trailers.
      if (!endStream || fields === null || checkTrailers(fields) !== null) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
      if (s.contentLength >= 0 && s.received !== s.contentLength) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
      return this.remoteEnd(s, fields);
    }
    if (!this.isServer) {
      if ((id & 1) === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame on stream ${id}: the server cannot open streams (push is disabled)`);
      if (id >= this.nextStreamId) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame on idle stream ${id}`);
      return this.frameOnClosed(id, 'HEADERS');
    }
    if ((id & 1) === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame opens stream ${id}: a client's stream ids are odd`);
    if (id <= this.lastPeerStreamId) return this.frameOnClosed(id, 'HEADERS');
    this.lastPeerStreamId = id;
    if (this.goawaySent || this.dead) return this.refuse(id);
    if (this.streams.size >= this.local.maxConcurrentStreams) {
      this.countReset();
      return this.refuse(id);
    }
    s = new H2Stream(this, id, this.peerInitialWindow, this.recvInitialWindow);
    this.streams.set(id, s);
    s.headReceived = true;
    if (fields === null) {
      // Larger than our SETTINGS_MAX_HEADER_LIST_SIZE: answered, the connection goes on.
      s.remoteEnded = endStream;
      this.countReset();
      s.respond([':status', '431'], true);
      return;
    }
    if (this.selfDependent || checkRequestHead(fields, s) !== null) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
    if (endStream) {
      s.remoteEnded = true;
      if (s.contentLength > 0) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
    }
    const cb = this.opts.onStream;
    if (cb === undefined) return this.resetStream(s, ErrorCode.REFUSED_STREAM, false);
    cb(s, fields, endStream);
  }

  private onResponseHead(s: H2Stream, fields: string[] | null, endStream: boolean): void {
    if (fields === null) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
    const status = checkResponseHead(fields, s);
    if (status < 0 || this.selfDependent) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
    if (status < 200) {
      if (endStream) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
      s.contentLength = -1;
      const cb = s.onHeaders;
      if (cb !== null) cb(fields, false);
      return;
    }
    s.headReceived = true;
    if (s.headRequest || status === 204 || status === 304) s.contentLength = -1;
    if (endStream) {
      if (s.contentLength > 0) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
      s.remoteEnded = true;
    }
    const cb = s.onHeaders;
    if (cb !== null) cb(fields, endStream);
    if (endStream && s.endSent && !s.done) this.closeStream(s, ErrorCode.NO_ERROR, CLOSED_ENDED);
  }

  /** The peer ended its side of `s`. */
  private remoteEnd(s: H2Stream, trailers: string[] | null): void {
    s.remoteEnded = true;
    const cb = s.onEnd;
    if (cb !== null) cb(trailers);
    if (s.endSent && !s.done) this.closeStream(s, ErrorCode.NO_ERROR, CLOSED_ENDED);
  }

  /** A frame for a stream no longer in the map: late (ignored) or a protocol error. */
  private frameOnClosed(id: number, what: 'DATA' | 'HEADERS'): void {
    if (this.isServer ? (id & 1) === 0 || id > this.lastPeerStreamId : (id & 1) === 0 || id >= this.nextStreamId) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `${what} frame on idle stream ${id}`);
    }
    const how = this.closedState(id);
    if (how === CLOSED_BY_US) return;
    if (how === CLOSED_BY_PEER) return this.answer(rstStreamFrame(id, ErrorCode.STREAM_CLOSED));
    if (how === CLOSED_ENDED) throw new H2Error(ErrorCode.STREAM_CLOSED, `${what} frame on stream ${id} after both sides ended it`);
    if (what === 'HEADERS') throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame on closed stream ${id} (the last opened is ${this.lastPeerStreamId})`);
  }

  private onPriority(id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'PRIORITY frame on stream 0');
    const s = this.streams.get(id);
    if (payload.length !== 5) {
      if (s !== undefined) this.resetStream(s, ErrorCode.FRAME_SIZE_ERROR, true);
      else this.answer(rstStreamFrame(id, ErrorCode.FRAME_SIZE_ERROR));
      return;
    }
    if ((payload.readUInt32BE(0) & 0x7fffffff) === id && s !== undefined) this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
    // Otherwise ignored: RFC 9113 deprecates the priority scheme.
  }

  private onRstStream(id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM frame on stream 0');
    if (payload.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `RST_STREAM frame of ${payload.length} bytes (4 expected)`);
    const s = this.streams.get(id);
    if (s === undefined) {
      if (this.isIdle(id)) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `RST_STREAM frame on idle stream ${id}`);
      return;
    }
    if (this.isServer && !s.endSent) this.countReset();
    // NO_ERROR before the peer ended its side is still an abort for the caller: code 0 always
    // means the peer's side arrived whole.
    const code = payload.readUInt32BE(0);
    this.closeStream(s, code === ErrorCode.NO_ERROR && !s.remoteEnded ? ErrorCode.CANCEL : code, CLOSED_BY_PEER);
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS frame on stream ${id}`);
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `SETTINGS ACK with a ${payload.length}-byte payload`);
      this.recvInitialWindow = this.local.initialWindowSize;
      return;
    }
    const first = !this.peerSettingsSeen;
    this.peerSettingsSeen = true;
    if (first) this.peerMaxStreams = MAX_WINDOW_SIZE; // absent means unlimited
    let pump = false;
    for (const [key, value] of parseSettings(payload)) {
      switch (key) {
        case SettingId.HEADER_TABLE_SIZE:
          this.encoder.setMaxTableSize(value);
          break;
        case SettingId.ENABLE_PUSH:
          if (!this.isServer && value !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'a server sent SETTINGS_ENABLE_PUSH 1');
          break;
        case SettingId.MAX_CONCURRENT_STREAMS:
          this.peerMaxStreams = Math.min(value, MAX_WINDOW_SIZE);
          break;
        case SettingId.INITIAL_WINDOW_SIZE: {
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          if (delta === 0) break;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW_SIZE) {
              throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value} overflows the window of stream ${s.id}`);
            }
          }
          pump = delta > 0;
          break;
        }
        case SettingId.MAX_FRAME_SIZE:
          this.peerMaxFrameSize = value;
          break;
      }
    }
    this.answer(settingsAckFrame());
    if (pump) this.pumpAll();
    const cb = this.opts.onSettings;
    if (cb !== undefined) cb();
  }

  private onPing(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `PING frame on stream ${id}`);
    if (payload.length !== 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `PING frame of ${payload.length} bytes (8 expected)`);
    if ((flags & Flag.ACK) === 0) this.answer(pingFrame(true, payload));
  }

  private onGoaway(id: number, payload: Buffer): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `GOAWAY frame on stream ${id}`);
    if (payload.length < 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `GOAWAY frame of ${payload.length} bytes (at least 8 expected)`);
    const last = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    this.goawayReceived = true;
    if (!this.isServer) {
      // Streams the server never processed: the caller may send them again elsewhere.
      for (const s of [...this.streams.values()]) if (s.id > last) this.closeStream(s, ErrorCode.REFUSED_STREAM, CLOSED_BY_US);
    }
    const cb = this.opts.onGoaway;
    if (cb !== undefined) cb(code, last);
    this.maybeFinish();
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `WINDOW_UPDATE frame of ${payload.length} bytes (4 expected)`);
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE with increment 0 on the connection');
      if ((this.connSendWindow += inc) > MAX_WINDOW_SIZE) {
        throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `WINDOW_UPDATE of ${inc} overflows the connection window past 2^31-1`);
      }
      return this.pumpAll();
    }
    const s = this.streams.get(id);
    if (s === undefined) {
      if (this.isIdle(id)) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE frame on idle stream ${id}`);
      return;
    }
    if (inc === 0) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR, true);
    if ((s.sendWindow += inc) > MAX_WINDOW_SIZE) return this.resetStream(s, ErrorCode.FLOW_CONTROL_ERROR, true);
    if (s.queuedBytes > 0 || (s.endPending && !s.endSent)) this.sendQueued(s, 1 << 30);
  }

  private isIdle(id: number): boolean {
    if ((id & 1) === 0) return true; // neither role here opens even streams
    return this.isServer ? id > this.lastPeerStreamId : id >= this.nextStreamId;
  }

  // ---- Streams -------------------------------------------------------------------------------

  /** @internal Sends RST_STREAM and closes `s`; `byPeer`: the peer's misbehaviour caused it. */
  resetStream(s: H2Stream, code: number, byPeer: boolean): void {
    if (s.done) return;
    this.out(rstStreamFrame(s.id, code));
    this.closeStream(s, code, CLOSED_BY_US);
    if (byPeer && this.isServer) this.countReset();
  }

  private refuse(id: number): void {
    this.out(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
    this.remember(id, CLOSED_BY_US);
  }

  private closeStream(s: H2Stream, code: number, how: number): void {
    if (s.done) return;
    s.done = true;
    this.streams.delete(s.id);
    this.remember(s.id, how);
    s.queue.length = 0;
    s.queuedBytes = 0;
    const cb = s.onClose;
    if (cb !== null) cb(code);
    this.maybeFinish();
  }

  /** @internal Our END_STREAM is out: close, or (server, request still arriving) stop the request. */
  localEnded(s: H2Stream): void {
    if (s.done) return;
    if (s.remoteEnded) this.closeStream(s, ErrorCode.NO_ERROR, CLOSED_ENDED);
    else if (this.isServer) {
      // The response is complete before the request: ask the client to stop sending (RFC 9113 8.1).
      this.out(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
      this.closeStream(s, ErrorCode.NO_ERROR, CLOSED_BY_US);
    }
  }

  /** @internal Returns what `s` consumed to the peer's stream window. */
  returnStreamWindow(s: H2Stream): void {
    this.out(windowUpdateFrame(s.id, s.recvUnacked));
    s.recvWindow += s.recvUnacked;
    s.recvUnacked = 0;
  }

  private remember(id: number, how: number): void {
    const i = this.closedNext;
    this.closedIds[i] = id;
    this.closedHow[i] = how;
    this.closedNext = i + 1 === CLOSED_RING ? 0 : i + 1;
  }

  private closedState(id: number): number {
    const ids = this.closedIds;
    for (let i = 0; i < CLOSED_RING; i++) if (ids[i] === id) return this.closedHow[i]!;
    return 0;
  }

  /** Rapid reset: one more stream reset the peer caused. */
  private countReset(): void {
    const now = performance.now();
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetStamp) * RESET_RATE_PER_S) / 1000);
    this.resetStamp = now;
    if (--this.resetTokens < 0) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `too many stream resets (more than ${RESET_BURST} at over ${RESET_RATE_PER_S}/s): rapid reset`);
    }
  }

  // ---- Frames out ----------------------------------------------------------------------------

  /** @internal One header block as HEADERS (+ CONTINUATION) frames. Encoded here, when it is sent,
   *  so blocks reach the peer in the order the HPACK encoder made them. */
  sendHeaders(id: number, fields: readonly string[], endStream: boolean): void {
    const encoder = this.encoder;
    const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE + encoder.maxEncodedLength(fields));
    const end = encoder.encodeInto(fields, buf, FRAME_HEADER_SIZE);
    const length = end - FRAME_HEADER_SIZE;
    if (length <= this.peerMaxFrameSize) {
      writeFrameHeader(buf, 0, length, FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), id);
      this.out(buf.subarray(0, end));
    } else {
      this.out(headersFrames(id, buf.subarray(FRAME_HEADER_SIZE, end), endStream, this.peerMaxFrameSize));
    }
  }

  /** One DATA frame: a 9-byte header, then the chunk itself. */
  private dataFrame(id: number, chunk: Buffer | null, endStream: boolean): void {
    const length = chunk === null ? 0 : chunk.length;
    const h = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
    writeFrameHeader(h, 0, length, FrameType.DATA, endStream ? Flag.END_STREAM : 0, id);
    this.out(h);
    if (chunk !== null && length > 0) this.out(chunk);
  }

  /** @internal Moves queued DATA of `s` out within both windows (at most `frames` frames), then its
   *  end; waits in the send queue for whatever is left. */
  sendQueued(s: H2Stream, frames: number): void {
    const q = s.queue;
    while (q.length > 0 && !this.socketBlocked && frames-- > 0) {
      const allowed = Math.min(s.sendWindow, this.connSendWindow, this.peerMaxFrameSize);
      if (allowed <= 0) break;
      let piece = q[0]!;
      if (piece.length <= allowed) q.shift();
      else {
        q[0] = piece.subarray(allowed);
        piece = piece.subarray(0, allowed);
      }
      const n = piece.length;
      s.queuedBytes -= n;
      s.sendWindow -= n;
      this.connSendWindow -= n;
      const last = q.length === 0 && s.endPending && s.trailers === null;
      if (last) s.endSent = true;
      this.dataFrame(s.id, piece, last);
      if (this.dead) return;
    }
    if (q.length === 0 && s.endPending && !s.endSent) {
      s.endSent = true;
      const trailers = s.trailers;
      if (trailers !== null) {
        s.trailers = null;
        this.sendHeaders(s.id, trailers, true);
      } else this.dataFrame(s.id, null, true);
    }
    if (q.length > 0 && !s.inSendQueue) {
      s.inSendQueue = true;
      this.sendQueue.push(s);
    }
    if (s.needDrain && s.queuedBytes < STREAM_HIGH_WATER && !s.done) {
      s.needDrain = false;
      const cb = s.onDrain;
      if (cb !== null) cb();
    }
    if (s.endSent && q.length === 0 && !s.done) this.localEnded(s);
  }

  /** Moves queued DATA of every waiting stream, a frame per stream per round, while windows and
   *  the socket allow. */
  private pumpAll(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.sendQueue.length > 0 && !this.socketBlocked && this.connSendWindow > 0 && !this.dead) {
        const list = this.sendQueue;
        this.sendQueue = [];
        let moved = false;
        for (let i = 0; i < list.length; i++) {
          const s = list[i]!;
          s.inSendQueue = false;
          if (s.done) continue;
          const before = s.queuedBytes;
          this.sendQueued(s, 1);
          if (s.queuedBytes !== before) moved = true;
        }
        if (!moved) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  /** A control frame answering the peer (SETTINGS ACK, PING ACK, RST_STREAM for late frames). A
   *  peer that keeps asking while not reading our answers is cut off. */
  private answer(frame: Buffer): void {
    this.out(frame);
    if (this.socketBlocked && ++this.controlBacklog > MAX_CONTROL_BACKLOG) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `more than ${MAX_CONTROL_BACKLOG} control frame answers queued while the peer does not read (SETTINGS/PING flood)`);
    }
  }

  private out(buf: Buffer): void {
    this.pending.push(buf);
    if ((this.pendingBytes += buf.length) >= FLUSH_AT) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flushTick);
    }
  }

  /** Everything pending, in one socket write. */
  private flush(): void {
    const pending = this.pending;
    const n = pending.length;
    if (n === 0) return;
    const socket = this.socket;
    const bytes = this.pendingBytes;
    this.pendingBytes = 0;
    if (socket.destroyed) {
      pending.length = 0;
      return;
    }
    let ok: boolean;
    if (n === 1) ok = socket.write(pending[0]!);
    else if (bytes <= CONCAT_MAX) ok = socket.write(Buffer.concat(pending, bytes));
    else {
      socket.cork();
      ok = true;
      for (let i = 0; i < n; i++) ok = socket.write(pending[i]!);
      socket.uncork();
    }
    pending.length = 0;
    if (!ok) this.socketBlocked = true;
  }

  private onSocketDrain(): void {
    this.socketBlocked = false;
    this.controlBacklog = 0;
    if (this.dead) return;
    try {
      this.pumpAll();
    } catch (err) {
      this.connectionError(ErrorCode.INTERNAL_ERROR, 'internal error', err as Error);
    }
  }

  // ---- Closing -------------------------------------------------------------------------------

  /** GOAWAY with the code and what was wrong, every stream closed, then the socket. */
  private connectionError(code: number, message: string, err: Error): void {
    if (this.dead) return;
    this.out(goawayFrame(this.lastPeerStreamId, code, message.length > 200 ? message.slice(0, 200) : message));
    this.dead = true;
    this.flush();
    this.closeAll(code);
    this.endSocket();
    this.reportClose(err);
  }

  /** Going away and nothing left in flight: close cleanly. */
  private maybeFinish(): void {
    if (this.dead || this.streams.size > 0 || !(this.goawaySent || this.goawayReceived)) return;
    this.dead = true;
    this.flush();
    this.endSocket();
    this.reportClose(null);
  }

  private onSocketGone(err: Error | null): void {
    if (this.dead) return;
    this.dead = true;
    this.pending.length = 0;
    this.pendingBytes = 0;
    // Streams cut by a socket error get INTERNAL_ERROR; by the peer closing the connection, CANCEL.
    this.closeAll(err !== null ? ErrorCode.INTERNAL_ERROR : ErrorCode.CANCEL);
    if (err !== null) this.socket.destroy();
    this.reportClose(err);
  }

  private closeAll(code: number): void {
    for (const s of [...this.streams.values()]) this.closeStream(s, code, CLOSED_BY_US);
    this.sendQueue.length = 0;
  }

  private endSocket(): void {
    const socket = this.socket;
    socket.end();
    setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  private reportClose(err: Error | null): void {
    if (this.closeReported) return;
    this.closeReported = true;
    const cb = this.opts.onClose;
    if (cb !== undefined) cb(err);
  }
}

// ---- Field checks (RFC 9113 8.2, 8.3) -----------------------------------------------------------

/** What is wrong with one regular field, or null. */
function checkField(name: string, value: string): string | null {
  if (name.length === 0) return 'empty field name';
  if (BAD_NAME.test(name)) return `field name ${JSON.stringify(name)} has uppercase or invalid characters`;
  if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
  if (name === 'te' && value !== 'trailers') return `te: ${value} (only "trailers" is allowed)`;
  return checkValue(name, value);
}

function checkValue(name: string, value: string): string | null {
  const n = value.length;
  if (n === 0) return null;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return `value of ${name} starts or ends with whitespace`;
  if (BAD_VALUE.test(value)) return `value of ${name} holds NUL, CR or LF`;
  return null;
}

/** Records content-length on `s`; what is wrong with it, or null. */
function noteContentLength(s: H2Stream, value: string): string | null {
  if (!DIGITS.test(value)) return `content-length ${JSON.stringify(value)} is not a number`;
  const n = Number(value);
  if (s.contentLength >= 0 && s.contentLength !== n) return 'content-length fields disagree';
  s.contentLength = n;
  return null;
}

/** What is wrong with a request head (RFC 9113 8.3.1), or null; records its content-length. */
function checkRequestHead(f: readonly string[], s: H2Stream): string | null {
  let method = '';
  let scheme = false;
  let path = false;
  let authority = false;
  let regular = false;
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    const value = f[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header field ${name} after regular fields`;
      switch (name) {
        case ':method':
          if (method !== '') return 'duplicate :method';
          if (value === '') return 'empty :method';
          method = value;
          break;
        case ':scheme':
          if (scheme) return 'duplicate :scheme';
          scheme = true;
          break;
        case ':path':
          if (path) return 'duplicate :path';
          if (value === '') return 'empty :path';
          path = true;
          break;
        case ':authority':
          if (authority) return 'duplicate :authority';
          authority = true;
          break;
        default:
          return `unknown pseudo-header field ${name}`;
      }
      const bad = checkValue(name, value);
      if (bad !== null) return bad;
      continue;
    }
    regular = true;
    const bad = checkField(name, value);
    if (bad !== null) return bad;
    if (name === 'content-length') {
      const wrong = noteContentLength(s, value);
      if (wrong !== null) return wrong;
    }
  }
  if (method === '') return 'missing :method';
  if (method === 'CONNECT') {
    if (!authority) return 'CONNECT without :authority';
    if (scheme || path) return 'CONNECT with :scheme or :path';
    return null;
  }
  if (!scheme) return 'missing :scheme';
  if (!path) return 'missing :path';
  return null;
}

/** The status of a response head (RFC 9113 8.3.2), or -1 when it is malformed; records content-length. */
function checkResponseHead(f: readonly string[], s: H2Stream): number {
  let status = -1;
  let regular = false;
  s.contentLength = -1;
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    const value = f[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular || name !== ':status' || status !== -1) return -1;
      if (value.length !== 3 || !DIGITS.test(value)) return -1;
      status = Number(value);
      if (status < 100 || status === 101) return -1;
      continue;
    }
    regular = true;
    if (checkField(name, value) !== null) return -1;
    if (name === 'content-length' && noteContentLength(s, value) !== null) return -1;
  }
  return status;
}

/** What is wrong with a trailer section, or null. */
function checkTrailers(f: readonly string[]): string | null {
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header field ${name} in trailers`;
    const bad = checkField(name, f[i + 1]!);
    if (bad !== null) return bad;
  }
  return null;
}
