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

/**
 * Waits for at least `min` bytes, puts them back, and calls `then` with them; the socket is left
 * paused for the next owner to resume. A connection that sends too little within `timeoutMs`, ends first or fails is
 * destroyed.
 */
export function peekBytes(socket: Socket, min: number, timeoutMs: number, then: (head: Buffer) => void): void {
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  let seen: Buffer | null = null;
  const gone = (): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
    if (seen.length < min) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', gone);
    socket.off('end', gone);
    socket.pause();
    socket.unshift(seen);
    then(seen);
  };
  socket.once('error', gone);
  socket.once('end', gone);
  socket.on('data', onData);
}

/** `peekBytes` for one byte: enough to tell TLS from plaintext. */
export function onFirstByte(socket: Socket, timeoutMs: number, then: (first: number) => void): void {
  peekBytes(socket, 1, timeoutMs, (head) => then(head[0]!));
}
