/**
 * Protocol detection by a connection's first byte: a listener that speaks both TLS and plaintext
 * looks at it (a TLS record starts with 0x16, a handshake) before handing the socket on.
 */
import type { Socket } from 'node:net';

/** The first byte of every TLS connection: the record type of a handshake. */
export const TLS_HANDSHAKE = 0x16;

/**
 * Waits for the socket's first bytes, puts them back, and calls `then` with the first byte; the
 * socket is left paused for the next owner to resume. A connection that sends nothing within
 * `timeoutMs`, ends first or fails is destroyed.
 */
export function onFirstByte(socket: Socket, timeoutMs: number, then: (first: number) => void): void {
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  const gone = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  socket.once('error', gone);
  socket.once('end', gone);
  socket.once('data', (chunk: Buffer) => {
    clearTimeout(timer);
    socket.off('error', gone);
    socket.off('end', gone);
    socket.pause();
    socket.unshift(chunk);
    then(chunk[0]!);
  });
}
