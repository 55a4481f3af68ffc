/**
 * A TCP tunnel on a CONNECT stream of Weft's own HTTP/2 engine (RFC 9113 8.5), either side: the
 * inbound's stream from a peer proxy, or the caller's stream on its pool's session. What joinStream
 * (tunnel-client.ts) does for a node:http2 stream, without a Duplex: one object per tunnel holds its
 * state and is the target of the stream's callbacks and the socket's events.
 *
 * Until it is joined to a socket the tunnel holds what the stream delivers (the inbound dials the
 * app meanwhile; the caller reads the answer to its CONNECT); once joined, bytes go both ways with
 * backpressure, FIN ↔ END_STREAM is a half-close, a socket error ↔ RST_STREAM (CONNECT_ERROR) a
 * reset.
 */
import type { Socket } from 'node:net';
import type { H2Stream } from '../http2/connection.js';
import { ErrorCode } from '../http2/frames.js';

/** One tunnel's stream, held until joined to a socket, then joined. */
export class H2Tunnel {
  readonly stream: H2Stream;
  /** Before join: the response head to the CONNECT (client side; 1xx heads too). */
  onHead: ((fields: string[], endStream: boolean) => void) | null = null;
  /** Before join: the peer ended its side (what it sent is in `held`). */
  onEarlyEnd: (() => void) | null = null;
  /** Before join: the stream is gone (reset, or its connection lost). */
  onEarlyClose: ((code: number) => void) | null = null;
  /** Before join: DATA received, in order; null once joined (or when dropped). */
  held: Buffer[] | null = [];
  heldBytes = 0;
  /** Before join: bytes held at most; more are dropped (a refusal's body is read only so far). */
  maxHeld = Infinity;
  private socket: Socket | null = null;
  private onClosed: (() => void) | null = null;
  /** The peer's END_STREAM arrived: a stream that closes without it was reset. */
  private ended: boolean;
  private closeCode = -1;
  /** Both the socket and the stream must close before onClosed. */
  private open = 2;
  /** The stream's owner (a pool or listener counting streams) hears of its close after us. */
  private readonly owner: ((code: number) => void) | null;

  /** Takes over `stream`'s callbacks; `ended`: its head came with END_STREAM. */
  constructor(stream: H2Stream, ended = false) {
    this.stream = stream;
    this.ended = ended;
    this.owner = stream.onClose;
    stream.onHeaders = (fields, endStream) => this.head(fields, endStream);
    stream.onData = (c) => this.fromStream(c);
    stream.onEnd = () => this.streamEnded();
    stream.onClose = (code) => this.streamClosed(code);
    stream.onDrain = () => this.socket?.resume();
  }

  /** The stream is gone. */
  get closed(): boolean {
    return this.closeCode >= 0;
  }

  /** Bytes towards the peer (before join: what the client sent with its CONNECT). */
  write(c: Buffer): boolean {
    return this.stream.write(c);
  }

  /** Gives up the tunnel: RST_STREAM CANCEL. */
  destroy(): void {
    if (!this.stream.closed) this.stream.reset(ErrorCode.CANCEL);
  }

  /** Drops whatever the peer sends from now on (a refused tunnel), without closing its window. */
  discard(): void {
    this.held = null;
    this.heldBytes = 0;
    this.stream.resume();
  }

  /**
   * Joins the stream to `socket` (RFC 9113 8.5): bytes go as DATA frames both ways with backpressure
   * (the socket pauses while the stream's window or send queue is full, the stream's window stays
   * closed while the socket's buffer is full); a FIN becomes END_STREAM and END_STREAM a FIN (a
   * half-close: the other direction keeps flowing); an error of the socket resets the stream
   * (CONNECT_ERROR), and a reset stream (RST_STREAM, or its connection lost) resets the socket.
   * `onClosed` runs once, when both are closed.
   */
  join(socket: Socket, onClosed: () => void): void {
    this.socket = socket;
    this.onClosed = onClosed;
    this.onHead = this.onEarlyEnd = this.onEarlyClose = null;
    const stream = this.stream;
    const held = this.held;
    this.held = null;
    this.heldBytes = 0;
    socket.on('data', (c: Buffer) => {
      if (!stream.closed && !stream.write(c)) socket.pause();
    });
    socket.on('drain', () => stream.resume());
    socket.on('end', () => {
      if (!stream.closed) stream.end();
    });
    socket.on('error', () => {
      if (!stream.closed) stream.reset(ErrorCode.CONNECT_ERROR);
    });
    socket.on('close', (hadError: boolean) => {
      // Both directions of the socket are over; whatever the stream still sends has nowhere to go.
      if (!stream.closed && (hadError || !this.ended)) stream.reset(ErrorCode.CONNECT_ERROR);
      this.closeOne();
    });
    if (held !== null) for (let i = 0; i < held.length; i++) this.fromStream(held[i]!);
    if (this.closeCode >= 0) this.streamClosed(this.closeCode, true);
    else {
      if (this.ended && !socket.destroyed) socket.end();
      // The window stays closed while what was held fills the socket's buffer (its 'drain' resumes).
      if (!socket.writableNeedDrain) stream.resume();
    }
    socket.resume();
  }

  private head(fields: string[], endStream: boolean): void {
    if (endStream) this.ended = true; // a final head with END_STREAM: onEnd does not follow
    const cb = this.onHead;
    if (cb !== null) cb(fields, endStream);
  }

  private fromStream(c: Buffer): void {
    const socket = this.socket;
    if (socket === null) {
      const held = this.held;
      if (held !== null && this.heldBytes < this.maxHeld) {
        held.push(c);
        this.heldBytes += c.length;
      }
      return;
    }
    if (!socket.destroyed && !socket.write(c)) this.stream.pause();
  }

  private streamEnded(): void {
    this.ended = true;
    const socket = this.socket;
    if (socket === null) {
      const cb = this.onEarlyEnd;
      if (cb !== null) cb();
      return;
    }
    if (!socket.destroyed) socket.end();
  }

  private streamClosed(code: number, replay = false): void {
    if (!replay) {
      this.closeCode = code;
      const owner = this.owner;
      if (owner !== null) owner(code);
    }
    const socket = this.socket;
    if (socket === null) {
      const cb = this.onEarlyClose;
      if (cb !== null) cb(code);
      return;
    }
    if (!socket.destroyed) {
      if (!this.ended || code !== ErrorCode.NO_ERROR) socket.resetAndDestroy();
      else if (!socket.writableEnded) socket.end();
    }
    this.closeOne();
  }

  private closeOne(): void {
    if (--this.open === 0) {
      const cb = this.onClosed;
      this.onClosed = null;
      if (cb !== null) cb();
    }
  }
}
