/**
 * Protocol detection by a connection's first bytes: a listener that speaks several protocols looks
 * at them (a TLS record starts with 0x16, a handshake; an HTTP/2 client starts with its preface)
 * before handing the socket on.
 */
import type { Socket } from 'node:net';

/** The first byte of every TLS connection: the record type of a handshake. */
export const TLS_HANDSHAKE = 0x16;

/** The HTTP/2 connection preface (RFC 9113 3.4); no HTTP/1 request line starts with its first 3 bytes ("PRI" is no HTTP/1 method). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Whether bytes seen so far start an HTTP/2 connection (at least 3 are needed to tell). */
export const isH2Preface = (head: Buffer): boolean => head.length >= 3 && head[0] === 0x50 && head[1] === 0x52 && head[2] === 0x49;

/** What `peekBytes` does, instead of destroying the socket, when the bytes it waits for do not come. */
export interface PeekOptions {
  /**
   * The wait ended first: called with the bytes seen so far (put back, the socket paused), or null
   * when none came. Bytes that had reached the socket when the wait ended still count: the decision
   * is taken after them, so a busy event loop does not turn a prompt client into a silent one.
   */
  onTimeout?: (head: Buffer | null) => void;
  /**
   * The client ended its side first: called with the bytes seen, or null. They are not put back (a
   * stream takes no bytes back after its end): the next owner passes them on itself.
   */
  onEnd?: (head: Buffer | null) => void;
}

/**
 * Waits for at least `min` bytes (or, given a function, until it says the bytes seen are enough),
 * puts them back, and calls `then` with them; the socket is left paused for the next owner to
 * resume. A connection that sends too little within `timeoutMs`, ends first or fails is destroyed,
 * unless `opts` says what to do instead of the first two.
 */
export function peekBytes(socket: Socket, min: number | ((head: Buffer) => boolean), timeoutMs: number, then: (head: Buffer) => void, opts: PeekOptions = {}): void {
  const enough = typeof min === 'number' ? (head: Buffer) => head.length >= min : min;
  let seen: Buffer | null = null;
  let done = false;
  const stop = (): void => {
    done = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', gone);
    socket.off('end', ended);
  };
  /** Stops listening, leaving what was seen in the socket for the next owner. */
  const handBack = (): void => {
    stop();
    socket.pause();
    if (seen !== null) socket.unshift(seen);
  };
  const gone = (): void => {
    stop();
    socket.destroy();
  };
  const ended = (): void => {
    if (opts.onEnd === undefined) return gone();
    stop();
    opts.onEnd(seen);
  };
  const timedOut = (): void => {
    const onTimeout = opts.onTimeout;
    if (onTimeout === undefined) return gone();
    // Timers run before the poll phase: let bytes already waiting in the socket be read first.
    setImmediate(() => {
      if (done) return;
      handBack();
      onTimeout(seen);
    });
  };
  const timer = setTimeout(timedOut, timeoutMs);
  const onData = (chunk: Buffer): void => {
    seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
    if (!enough(seen)) return;
    handBack();
    then(seen);
  };
  socket.once('error', gone);
  socket.once('end', ended);
  socket.on('data', onData);
  // A 'data' listener starts a fresh socket, but not one an earlier peek left paused.
  socket.resume();
}

/** `peekBytes` for one byte: enough to tell TLS from plaintext. */
export function onFirstByte(socket: Socket, timeoutMs: number, then: (first: number) => void): void {
  peekBytes(socket, 1, timeoutMs, (head) => then(head[0]!));
}
