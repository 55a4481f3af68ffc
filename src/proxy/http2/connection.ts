/**
 * One HTTP/2 connection on a raw socket (RFC 9113 sections 3.4, 5, 6 and 8), either role: the
 * connection preface, SETTINGS, stream states and ids, header blocks and their field rules, flow
 * control both ways, RST_STREAM, GOAWAY, PING, and the limits a proxy facing the internet needs
 * (concurrency, rapid reset, control-frame and empty-frame floods, CONTINUATION floods).
 *
 * Streams are plain objects with nullable callback properties: no EventEmitter, Duplex, Promise or
 * AsyncResource per stream. Everything sent during one pass of the event loop is gathered and
 * written to the socket in one write from a `setImmediate` (or at once past FLUSH_AT bytes): a small
 * answer's HEADERS and DATA share a TCP segment, and so do the answers to every stream whose upstream
 * replied in the same poll — on the weft-h2 bench row that is −28 % CPU per request against a flush
 * on `process.nextTick`, which runs after each single I/O callback and so wrote once per answer. DATA bodies are never copied: each frame is a 9-byte header buffer
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
  /** How long the peer has to acknowledge our SETTINGS before the connection is closed with
   *  SETTINGS_TIMEOUT (RFC 9113 6.5.3); default DEFAULT_SETTINGS_TIMEOUT_MS, 0: no limit. */
  settingsTimeoutMs?: number;
  /** Server: a new stream's complete head arrived (fields flat, pseudo-headers included and
   *  checked per RFC 9113 8.3.1). endStream: no body follows, and onEnd will not be called. */
  onStream?: (stream: H2Stream, fields: string[], endStream: boolean) => void;
  /** Server: a new stream's head was over our SETTINGS_MAX_HEADER_LIST_SIZE (decoded and dropped):
   *  the caller answers it (431). Without it, a bare 431 is sent. endStream: no body follows; one
   *  that does is read and dropped. */
  onHeadTooLarge?: (stream: H2Stream, endStream: boolean) => void;
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
/** Our default connection-level receive window. It is returned as data arrives, except for bytes
 *  that paused streams hold past PAUSED_CREDIT: so one connection's paused streams hold at most
 *  this plus PAUSED_CREDIT. */
export const DEFAULT_CONNECTION_WINDOW = 4 << 20;
/** How long the peer has to acknowledge our SETTINGS by default (nghttp2 and Envoy allow 10 s too). */
export const DEFAULT_SETTINGS_TIMEOUT_MS = 10_000;

/** A head (or trailers) we were asked to send is larger than the peer's SETTINGS_MAX_HEADER_LIST_SIZE
 *  (RFC 9113 6.5.2: names + values + 32 per field): it was not sent, and nothing else changed. */
export class H2HeadTooLarge extends Error {
  /** The head's size as RFC 9113 counts it. */
  readonly size: number;
  /** The peer's SETTINGS_MAX_HEADER_LIST_SIZE. */
  readonly limit: number;
  constructor(what: string, size: number, limit: number) {
    super(`${what} is ${size} bytes as HTTP/2 counts it (names + values + 32 per field), over the peer's SETTINGS_MAX_HEADER_LIST_SIZE of ${limit}`);
    this.name = 'H2HeadTooLarge';
    this.size = size;
    this.limit = limit;
  }
}

/** The size of a flat field list as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 6.5.2):
 *  the octets of every name and value (the strings are latin1) plus 32 per field. */
export function headerListSize(fields: readonly string[]): number {
  let n = 16 * fields.length;
  for (let i = 0; i < fields.length; i++) n += fields[i]!.length;
  return n;
}

/** The protocol's initial window for both sides until SETTINGS say otherwise. */
const SPEC_WINDOW = 65535;
/** Pending output at which we write at once instead of waiting for the end of the turn. */
const FLUSH_AT = 64 * 1024;
/** Pending output up to this size is joined into one buffer; larger goes out corked (writev). */
const CONCAT_MAX = 16 * 1024;
/** Past CONCAT_MAX, runs of buffers smaller than this are still joined (frame headers, control frames). */
const SMALL_BUFFER = 1024;
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
/** Runs of stream ids the peer skipped (never opened) remembered, to tell a HEADERS opening a
 *  stream below one already opened (a connection error) from late trailers of a closed stream. */
const SKIPPED_RING = 64;
/** Bytes paused streams may hold (delivered while paused) whose connection window is returned at
 *  once, so a few paused streams never stall the others; past it, only on resume() or close. */
const PAUSED_CREDIT = 1 << 20;
/** Socket output (past what DATA put there) at which a peer that does not read is cut off. */
const MAX_WRITE_BACKLOG = 1 << 20;
/** Entries per SETTINGS frame (nghttp2's limit, CVE-2020-11080): a frame of thousands is a flood. */
const MAX_SETTINGS_ENTRIES = 32;
/** The highest stream id: a GOAWAY naming it refuses nothing (the first of a graceful two). */
const MAX_STREAM_ID = 0x7fffffff;
/** How long a closing socket may take to flush before it is destroyed. */
const CLOSE_LINGER_MS = 2000;

/** The queue of a stream that never had to queue. */
const NO_QUEUE: Buffer[] = [];

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
   *  also after a normal finish. Code 0 means both sides arrived whole; a close before the peer's
   *  END_STREAM is never 0 (a peer's RST_STREAM NO_ERROR, or ours after a response that ended
   *  before the request did, is reported as CANCEL). */
  onClose: ((code: number) => void) | null = null;
  /** The send side can take more after write() returned false. */
  onDrain: (() => void) | null = null;

  /** @internal */ readonly conn: H2Connection;
  /** @internal Our head is out (client: always). */ headSent = false;
  /** @internal */ done = false;
  /** @internal The peer sent END_STREAM. */ remoteEnded = false;
  /** @internal A CONNECT stream (RFC 9113 8.5): END_STREAM is a TCP half-close, not the end of an exchange. */ tunnel = false;
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
  /** @internal Bytes delivered while paused (counted in the connection's pausedHeld). */ held = 0;
  /** @internal The part of `held` whose connection window is not returned yet. */ withheld = 0;
  /** @internal DATA waiting for window or socket (made on the first write that has to wait). */ queue: Buffer[] | null = null;
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

  /** Server: sends the response head (HEADERS + CONTINUATION as needed); also 1xx interim heads.
   *  Throws H2HeadTooLarge, sending nothing, when the head is over the peer's header list limit. */
  respond(fields: readonly string[], endStream: boolean): void {
    if (this.done) return;
    const conn = this.conn;
    if (!conn.isServer) throw new Error(`stream ${this.id}: respond() is for the server role`);
    if (this.headSent) throw new Error(`stream ${this.id}: the response head was sent already`);
    const status = fields[0] === ':status' ? fields[1]! : '';
    const interim = status.length === 3 && status.charCodeAt(0) === 0x31; // 1xx
    if (interim && endStream) throw new Error(`stream ${this.id}: a ${status} interim head cannot end the stream`);
    conn.checkHead(fields, `the ${status} response head of stream ${this.id}`);
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
    const q = this.queue;
    if (q === null) this.queue = [chunk];
    else q.push(chunk);
    this.queuedBytes += chunk.length;
    this.conn.sendQueued(this, 1 << 30);
    if (this.queuedBytes >= STREAM_HIGH_WATER) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** Ends our side: optional last chunk, then trailers (HEADERS with END_STREAM) or END_STREAM on
   *  the last DATA frame (an empty one when nothing is queued). Trailers over the peer's header list
   *  limit reset the stream (INTERNAL_ERROR) instead: the head is out, no answer can replace them. */
  end(chunk?: Buffer | null, trailers?: readonly string[] | null): void {
    if (this.done || this.endPending) return;
    if (!this.headSent) throw new Error(`stream ${this.id}: end() before the response head`);
    if (trailers != null && trailers.length > 0 && headerListSize(trailers) > this.conn.peerMaxHeaderListSize) {
      this.reset(ErrorCode.INTERNAL_ERROR);
      return;
    }
    if (chunk != null && chunk.length > 0) {
      const q = this.queue;
      if (q === null) this.queue = [chunk];
      else q.push(chunk);
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
   *  the peer stops once its window is used; the connection window for what arrives meanwhile is
   *  returned only while the connection's paused streams hold less than PAUSED_CREDIT. */
  pause(): void {
    this.paused = true;
  }

  /** Returns everything received while paused to the peer's stream and connection windows. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.done) return;
    if (this.held > 0) this.conn.release(this);
    if (this.recvUnacked > 0 && !this.remoteEnded) this.conn.returnStreamWindow(this);
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
  /** The peer's SETTINGS_MAX_HEADER_LIST_SIZE (unlimited until it names one). */
  private peerMaxHeaderList = Infinity;
  private peerSettingsSeen = false;
  /** The receive window a new stream starts with: until the peer acknowledged our SETTINGS it may
   *  still use the protocol's 65,535, so never less than that. */
  private recvInitialWindow: number;

  // Connection state.
  /** Server: bytes of the client preface still to check. */
  private prefaceLeft: number;
  /** Highest stream id the peer opened (refused ones too): ids up to it are no longer idle. */
  private lastPeerStreamId = 0;
  /** Highest stream id the peer opened that we took (not refused): what GOAWAY names. */
  private lastProcessedId = 0;
  /** Client: the id of our next stream. */
  private nextStreamId = 1;
  private goawaySent = false;
  /** The last stream id our latest GOAWAY named: later ones never name more (RFC 9113 6.8). */
  private goawayLastId = MAX_STREAM_ID;
  private goawayReceived = false;
  /** The peer ended its side of the socket (FIN): nothing more will arrive. */
  private inputEnded = false;
  /** The peer acknowledged our SETTINGS (until then it may open streams past our limit). */
  private settingsAcked = false;
  private dead = false;
  private closeReported = false;

  // Flow control.
  private connSendWindow = SPEC_WINDOW;
  private connRecvWindow: number;
  private connRecvUnacked = 0;
  /** Bytes delivered to streams while they were paused, not yet released by resume() or close. */
  private pausedHeld = 0;
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
  /** pumpAll's other list (the two are swapped each round). */
  private sendSpare: H2Stream[] = [];
  /** Where in sendQueue pumpAll's next round starts (where the last round was cut). */
  private pumpStart = 0;
  private pumping = false;
  /** DATA bytes handed to the socket since its buffer was last below its high-water mark. */
  private dataInSocket = 0;
  /** The socket's buffer went past MAX_WRITE_BACKLOG: the connection is being cut. */
  private overflowed = false;
  private readonly flushTick: () => void;

  // Abuse accounting.
  private controlBacklog = 0;
  private emptyData = 0;
  private resetTokens = RESET_BURST;
  private resetStamp = 0;
  private readonly closedIds = new Int32Array(CLOSED_RING);
  private readonly closedHow = new Uint8Array(CLOSED_RING);
  private closedNext = 0;
  /** Skipped id runs as [first, last] pairs (odd ids, so the zeroed pairs match nothing). */
  private readonly skippedIds = new Int32Array(2 * SKIPPED_RING);
  private skippedNext = 0;
  /** Until the peer acknowledges our SETTINGS (RFC 9113 6.5.3). */
  private settingsTimer: NodeJS.Timeout | null = null;

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
    const settingsTimeout = opts.settingsTimeoutMs ?? DEFAULT_SETTINGS_TIMEOUT_MS;
    if (settingsTimeout > 0) this.settingsTimer = setTimeout(() => this.onSettingsTimeout(settingsTimeout), settingsTimeout).unref();

    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.onSocketDrain());
    socket.on('end', () => this.onSocketEnd());
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

  /** The peer's SETTINGS_MAX_HEADER_LIST_SIZE (Infinity until it names one): heads we send must
   *  fit (headerListSize), else request()/respond() throw H2HeadTooLarge. */
  get peerMaxHeaderListSize(): number {
    return this.peerMaxHeaderList;
  }

  /** No new streams may be opened (GOAWAY either way, the peer's side of the socket ended, or closed). */
  get closed(): boolean {
    return this.dead || this.goawaySent || this.goawayReceived || this.inputEnded;
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
   *  MAX_CONCURRENT_STREAMS, and H2HeadTooLarge (no stream opened) over its header list limit. */
  request(fields: readonly string[], endStream: boolean): H2Stream {
    if (this.isServer) throw new Error('request() is for the client role');
    if (this.closed) throw new Error(this.dead ? 'the HTTP/2 connection is closed' : 'the HTTP/2 connection is going away');
    if (this.streams.size >= this.peerMaxStreams) {
      throw new Error(`the peer's SETTINGS_MAX_CONCURRENT_STREAMS (${this.peerMaxStreams}) is reached`);
    }
    this.checkHead(fields, 'the request head');
    const id = this.nextStreamId;
    if (id > MAX_WINDOW_SIZE) throw new Error('stream ids of this HTTP/2 connection are used up');
    this.nextStreamId = id + 2;
    const s = new H2Stream(this, id, this.peerInitialWindow, this.recvInitialWindow);
    s.headSent = true;
    for (let i = 0; i < fields.length && fields[i]!.charCodeAt(0) === 0x3a; i += 2) {
      if (fields[i] === ':method') {
        s.headRequest = fields[i + 1] === 'HEAD';
        s.tunnel = fields[i + 1] === 'CONNECT';
      }
    }
    this.streams.set(id, s);
    if (endStream) s.endPending = s.endSent = true;
    this.sendHeaders(id, fields, endStream);
    return s;
  }

  /**
   * Graceful (RFC 9113 6.8): GOAWAY(code, the last stream taken), streams in flight finish, then the
   * connection closes. A `lastStreamId` past the last stream taken (2^31-1, say) starts a shutdown
   * in two steps: streams the peer opens up to it (sent before it saw the GOAWAY) are still taken,
   * and the connection stays open until a later goaway() without it names the real last stream.
   * No GOAWAY names a higher id than an earlier one did.
   */
  goaway(code: number = ErrorCode.NO_ERROR, lastStreamId?: number): void {
    if (this.dead) return;
    const taken = this.lastProcessedId;
    const last = Math.min(this.goawayLastId, lastStreamId === undefined || lastStreamId < taken ? taken : lastStreamId);
    if (this.goawaySent && last === this.goawayLastId) return;
    this.goawaySent = true;
    this.goawayLastId = last;
    this.out(goawayFrame(last, code));
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

  /** @internal Throws H2HeadTooLarge when `fields` are over the peer's SETTINGS_MAX_HEADER_LIST_SIZE. */
  checkHead(fields: readonly string[], what: string): void {
    const limit = this.peerMaxHeaderList;
    if (limit === Infinity) return;
    const size = headerListSize(fields);
    if (size > limit) throw new H2HeadTooLarge(what, size, limit);
  }

  private onSettingsTimeout(ms: number): void {
    this.settingsTimer = null;
    if (this.dead || this.settingsAcked) return;
    const err = new H2Error(ErrorCode.SETTINGS_TIMEOUT, `our SETTINGS were not acknowledged within ${ms} ms`);
    this.connectionError(err.code, err.message, err);
  }

  // ---- Frames in -------------------------------------------------------------------------------

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.dead) return;
    if (this.overflowed) throw backlogError();
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
    this.connRecvWindow -= length;
    const s = this.streams.get(id);
    if (s !== undefined && s.paused) {
      // Held by a paused stream: its connection window comes back at once only while paused
      // streams hold little (so one paused stream never stalls the others), else on resume/close.
      s.held += length;
      const over = (this.pausedHeld += length) - PAUSED_CREDIT;
      const withheld = over <= 0 ? 0 : over < length ? over : length;
      s.withheld += withheld;
      if (withheld < length) this.consumed(length - withheld);
    } else this.consumed(length);
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
    if (s === undefined) return this.frameOnClosed(id, null);
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
      return this.frameOnClosed(id, endStream);
    }
    if ((id & 1) === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame opens stream ${id}: a client's stream ids are odd`);
    const last = this.lastPeerStreamId;
    if (id <= last) return this.frameOnClosed(id, endStream);
    // Ids the peer skips are closed implicitly (RFC 9113 5.1.1): remembered, so a HEADERS on one
    // later can be told from late trailers. Clients rarely skip, so this is rarely more than a compare.
    const next = last === 0 ? 1 : last + 2;
    if (id !== next) this.noteSkipped(next, id - 2);
    this.lastPeerStreamId = id;
    // Past our GOAWAY's last stream: ignored, not answered (RFC 9113 6.8), so a peer that keeps
    // opening streams while not reading makes us write nothing.
    if (this.goawaySent && id > this.goawayLastId) return;
    if (this.streams.size >= this.local.maxConcurrentStreams) {
      // Until the peer has our SETTINGS it may open any number (RFC 9113 6.5.2): not its fault.
      if (this.settingsAcked) this.countReset();
      return this.refuse(id);
    }
    this.lastProcessedId = id;
    s = new H2Stream(this, id, this.peerInitialWindow, this.recvInitialWindow);
    this.streams.set(id, s);
    s.headReceived = true;
    if (fields === null) {
      // Larger than our SETTINGS_MAX_HEADER_LIST_SIZE: answered (by the caller when it wants to),
      // the connection goes on.
      s.remoteEnded = endStream;
      this.countReset();
      const tooLarge = this.opts.onHeadTooLarge;
      if (tooLarge !== undefined) tooLarge(s, endStream);
      else s.respond([':status', '431'], true);
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

  /**
   * A DATA (`headersEnd` null) or HEADERS frame for a stream no longer in the map: late (ignored) or
   * a protocol error. A stream closed too long ago to be remembered may be one we reset while the
   * peer was still sending (RFC 9113 5.1: its frames MUST be ignored): late DATA and trailers (a
   * HEADERS with END_STREAM) are ignored there; a HEADERS without END_STREAM cannot be trailers.
   * An id the peer skipped was never open, so no frame on it can be late: a HEADERS there is an
   * attempt to open it, a connection error.
   */
  private frameOnClosed(id: number, headersEnd: boolean | null): void {
    const what = headersEnd === null ? 'DATA' : 'HEADERS';
    if (this.isServer ? (id & 1) === 0 || id > this.lastPeerStreamId : (id & 1) === 0 || id >= this.nextStreamId) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `${what} frame on idle stream ${id}`);
    }
    if (this.isServer && this.goawaySent && id > this.goawayLastId) return; // ignored after our GOAWAY
    if (this.isServer && this.wasSkipped(id)) {
      // Never opened: a HEADERS here opens a stream below one already opened, which RFC 9113
      // 5.1.1 makes a connection error; DATA on a stream not open is a stream error (6.1).
      if (headersEnd !== null) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame opens stream ${id}, lower than stream ${this.lastPeerStreamId} opened before`);
      return this.answer(rstStreamFrame(id, ErrorCode.STREAM_CLOSED));
    }
    const how = this.closedState(id);
    if (how === CLOSED_BY_US) return;
    if (how === CLOSED_BY_PEER) return this.answer(rstStreamFrame(id, ErrorCode.STREAM_CLOSED));
    if (how === CLOSED_ENDED) throw new H2Error(ErrorCode.STREAM_CLOSED, `${what} frame on stream ${id} after both sides ended it`);
    if (headersEnd === false) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS frame without END_STREAM on closed stream ${id} (the last opened is ${this.lastPeerStreamId})`);
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
      this.settingsAcked = true;
      if (this.settingsTimer !== null) {
        clearTimeout(this.settingsTimer);
        this.settingsTimer = null;
      }
      return;
    }
    if (payload.length > 6 * MAX_SETTINGS_ENTRIES) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `SETTINGS frame with ${Math.floor(payload.length / 6)} entries (at most ${MAX_SETTINGS_ENTRIES})`);
    }
    const first = !this.peerSettingsSeen;
    this.peerSettingsSeen = true;
    if (first) this.peerMaxStreams = MAX_WINDOW_SIZE; // absent means unlimited
    let initialWindow = -1;
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
        case SettingId.INITIAL_WINDOW_SIZE:
          initialWindow = value; // applied once below: only the frame's last value counts
          break;
        case SettingId.MAX_FRAME_SIZE:
          this.peerMaxFrameSize = value;
          break;
        case SettingId.MAX_HEADER_LIST_SIZE:
          this.peerMaxHeaderList = value;
          break;
      }
    }
    let pump = false;
    const delta = initialWindow < 0 ? 0 : initialWindow - this.peerInitialWindow;
    if (delta !== 0) {
      this.peerInitialWindow = initialWindow;
      for (const s of this.streams.values()) {
        s.sendWindow += delta;
        if (s.sendWindow > MAX_WINDOW_SIZE) {
          throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${initialWindow} overflows the window of stream ${s.id}`);
        }
      }
      pump = delta > 0;
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

  /** REFUSED_STREAM: an answer to the peer, so a peer that does not read is cut off (answer()). */
  private refuse(id: number): void {
    this.remember(id, CLOSED_BY_US);
    this.answer(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
  }

  private closeStream(s: H2Stream, code: number, how: number): void {
    if (s.done) return;
    s.done = true;
    this.streams.delete(s.id);
    this.remember(s.id, how);
    if (s.queue !== null) s.queue.length = 0;
    s.queuedBytes = 0;
    if (s.held > 0) this.release(s);
    const cb = s.onClose;
    if (cb !== null) cb(code);
    this.maybeFinish();
  }

  /** @internal Our END_STREAM is out: close, or (server, request still arriving) stop the request. */
  localEnded(s: H2Stream): void {
    if (s.done) return;
    if (s.remoteEnded) this.closeStream(s, ErrorCode.NO_ERROR, CLOSED_ENDED);
    // A tunnel's END_STREAM is a half-close: the other direction keeps flowing until the peer's END_STREAM.
    else if (this.isServer && !s.tunnel) {
      // The response is complete before the request: ask the client to stop sending (RFC 9113 8.1).
      // For the caller the request was cut: CANCEL, as code 0 means both sides arrived whole.
      this.out(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
      this.closeStream(s, ErrorCode.CANCEL, CLOSED_BY_US);
    }
  }

  /** @internal Returns what `s` consumed to the peer's stream window. */
  returnStreamWindow(s: H2Stream): void {
    this.out(windowUpdateFrame(s.id, s.recvUnacked));
    s.recvWindow += s.recvUnacked;
    s.recvUnacked = 0;
  }

  /** `n` bytes of the connection window are ours to return (in batches of half the window). */
  private consumed(n: number): void {
    if ((this.connRecvUnacked += n) >= this.connUpdateAt) {
      this.out(windowUpdateFrame(0, this.connRecvUnacked));
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
  }

  /** @internal `s` no longer holds what it got while paused (resumed or closed). */
  release(s: H2Stream): void {
    this.pausedHeld -= s.held;
    s.held = 0;
    const withheld = s.withheld;
    s.withheld = 0;
    if (withheld > 0 && !this.dead) this.consumed(withheld);
  }

  private remember(id: number, how: number): void {
    const i = this.closedNext;
    this.closedIds[i] = id;
    this.closedHow[i] = how;
    this.closedNext = i + 1 === CLOSED_RING ? 0 : i + 1;
  }

  /** Stream ids `first`..`last` were skipped by the peer (the oldest run is forgotten past SKIPPED_RING). */
  private noteSkipped(first: number, last: number): void {
    const i = this.skippedNext;
    this.skippedIds[2 * i] = first;
    this.skippedIds[2 * i + 1] = last;
    this.skippedNext = i + 1 === SKIPPED_RING ? 0 : i + 1;
  }

  private wasSkipped(id: number): boolean {
    const runs = this.skippedIds;
    for (let i = 0; i < runs.length; i += 2) if (id >= runs[i]! && id <= runs[i + 1]!) return true;
    return false;
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
    const q = s.queue ?? NO_QUEUE;
    let starved = false;
    while (q.length > 0 && !this.socketBlocked && frames-- > 0) {
      const allowed = Math.min(s.sendWindow, this.connSendWindow, this.peerMaxFrameSize);
      if (allowed <= 0) {
        starved = true;
        break;
      }
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
      this.dataInSocket += n;
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
    if (starved && this.inputEnded) {
      // Waiting for a WINDOW_UPDATE from a peer that has ended its side: it will never come.
      this.out(rstStreamFrame(s.id, ErrorCode.CANCEL));
      this.closeStream(s, ErrorCode.CANCEL, CLOSED_BY_US);
      return;
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
        this.sendQueue = this.sendSpare;
        this.sendSpare = list;
        const n = list.length;
        // A round starts where the last one was cut (window or socket ran out), so a bottleneck
        // connection window goes to every stream in turn, not always to the first.
        let i = this.pumpStart < n ? this.pumpStart : 0;
        this.pumpStart = 0;
        let cut = -1;
        let moved = false;
        for (let k = 0; k < n; k++) {
          const s = list[i]!;
          if (++i === n) i = 0;
          s.inSendQueue = false;
          if (s.done) continue;
          if (this.connSendWindow <= 0 || this.socketBlocked || this.dead) {
            if (cut < 0) cut = this.sendQueue.length;
            s.inSendQueue = true;
            this.sendQueue.push(s);
            continue;
          }
          const before = s.queuedBytes;
          this.sendQueued(s, 1);
          if (s.queuedBytes !== before) moved = true;
        }
        list.length = 0;
        if (cut >= 0) this.pumpStart = cut;
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
      setImmediate(this.flushTick);
    }
  }

  /** Everything pending, in one socket write (past CONCAT_MAX, corked: runs of small buffers
   *  joined, large ones passed as they are). */
  private flush(): void {
    const pending = this.pending;
    const n = pending.length;
    if (n === 0) return;
    const socket = this.socket;
    const bytes = this.pendingBytes;
    this.pendingBytes = 0;
    if (socket.destroyed || !socket.writable) {
      pending.length = 0;
      return;
    }
    let ok: boolean;
    if (n === 1) ok = socket.write(pending[0]!);
    else if (bytes <= CONCAT_MAX) ok = socket.write(Buffer.concat(pending, bytes));
    else {
      socket.cork();
      ok = true;
      let from = 0;
      let runBytes = 0;
      for (let i = 0; i < n; i++) {
        const b = pending[i]!;
        if (b.length < SMALL_BUFFER) {
          runBytes += b.length;
          continue;
        }
        if (from < i) ok = socket.write(i - from === 1 ? pending[from]! : Buffer.concat(pending.slice(from, i), runBytes));
        ok = socket.write(b);
        from = i + 1;
        runBytes = 0;
      }
      if (from < n) ok = socket.write(n - from === 1 ? pending[from]! : Buffer.concat(pending.slice(from), runBytes));
      socket.uncork();
    }
    pending.length = 0;
    if (ok) this.dataInSocket = 0;
    else {
      this.socketBlocked = true;
      // A peer that does not read while we keep producing output (answers, refusals, heads): cut
      // off past MAX_WRITE_BACKLOG, whatever produced it. DATA stops at the socket's high-water
      // mark on its own; what it put there is allowed for.
      if (socket.writableLength > MAX_WRITE_BACKLOG + this.dataInSocket && !this.overflowed && !this.dead) {
        this.overflowed = true;
        process.nextTick(() => {
          const err = backlogError();
          this.connectionError(err.code, err.message, err);
        });
      }
    }
  }

  private onSocketDrain(): void {
    this.socketBlocked = false;
    this.dataInSocket = 0;
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
    const last = Math.min(this.goawayLastId, this.lastProcessedId);
    this.out(goawayFrame(last, code, message.length > 200 ? message.slice(0, 200) : message));
    this.dead = true;
    this.flush();
    if (this.overflowed) this.socket.destroy(); // the peer does not read: no point lingering
    this.closeAll(code);
    this.endSocket();
    this.reportClose(err);
  }

  /** Going away (or the peer's input ended) and nothing left in flight: close cleanly. While a
   *  first GOAWAY still lets the peer open streams, the caller's second goaway() closes. */
  private maybeFinish(): void {
    if (this.dead || this.streams.size > 0) return;
    if (!(this.goawayReceived || this.inputEnded || (this.goawaySent && this.goawayLastId <= this.lastPeerStreamId))) return;
    this.dead = true;
    this.flush();
    this.endSocket();
    this.reportClose(null);
  }

  /** The peer ended its side of the socket (FIN; listeners allow half-open sockets): no frame will
   *  come any more. Streams that wait for the peer (the rest of its request or response, or window
   *  for what we still send) are cancelled; the others finish, then the connection closes. */
  private onSocketEnd(): void {
    if (this.dead) return;
    this.inputEnded = true;
    try {
      for (const s of [...this.streams.values()]) {
        if (s.done) continue;
        if (!s.remoteEnded || (s.queuedBytes > 0 && (s.sendWindow <= 0 || this.connSendWindow <= 0))) {
          this.out(rstStreamFrame(s.id, ErrorCode.CANCEL));
          this.closeStream(s, ErrorCode.CANCEL, CLOSED_BY_US);
        }
      }
      this.maybeFinish();
    } catch (err) {
      if (err instanceof H2Error) this.connectionError(err.code, err.message, err);
      else this.connectionError(ErrorCode.INTERNAL_ERROR, 'internal error', err as Error);
    }
  }

  private onSocketGone(err: Error | null): void {
    if (this.dead) return;
    this.dead = true;
    this.pending.length = 0;
    this.pendingBytes = 0;
    // Streams cut by a socket error get INTERNAL_ERROR; by the peer closing the connection, CANCEL.
    const thrown = this.closeAll(err !== null ? ErrorCode.INTERNAL_ERROR : ErrorCode.CANCEL);
    if (err !== null) this.socket.destroy();
    this.reportClose(err ?? thrown);
  }

  /** Closes every stream. The connection is going down whatever a stream's onClose does, so an
   *  exception from one (the first is returned) neither stops the others nor escapes into the
   *  socket's event handlers (where it would end the process). */
  private closeAll(code: number): Error | null {
    let thrown: Error | null = null;
    for (const s of [...this.streams.values()]) {
      try {
        this.closeStream(s, code, CLOSED_BY_US);
      } catch (err) {
        thrown ??= err instanceof Error ? err : new Error(String(err));
      }
    }
    this.sendQueue.length = 0;
    return thrown;
  }

  private endSocket(): void {
    const socket = this.socket;
    socket.end();
    setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  /** onClose, once. It runs from socket event handlers and timers, so what it throws is dropped:
   *  it cannot reach the caller, and must not end the process. */
  private reportClose(err: Error | null): void {
    if (this.closeReported) return;
    this.closeReported = true;
    if (this.settingsTimer !== null) {
      clearTimeout(this.settingsTimer);
      this.settingsTimer = null;
    }
    const cb = this.opts.onClose;
    if (cb === undefined) return;
    try {
      cb(err);
    } catch {
      // Nothing left to tell.
    }
  }
}

function backlogError(): H2Error {
  return new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `more than ${MAX_WRITE_BACKLOG} bytes of output queued while the peer does not read`);
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
    s.tunnel = true;
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
