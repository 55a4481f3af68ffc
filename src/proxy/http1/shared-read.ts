/**
 * Plaintext connections read into one shared 64 KiB buffer (`onread`), and each read is copied out
 * at its size and emitted as 'data', so every listener (and `pipe`, pause/resume, `unshift`) works
 * as before. It spares a 64 KiB allocation, a new ArrayBuffer and the Readable bookkeeping per read.
 * Sharing is safe: a read callback runs to its end before the next read of any socket.
 *
 * Upstream connections get it from `net.connect`'s `onread` option. Accepted connections get it by
 * `adoptWithSharedReads`, because `net.Server` has no such option (docs/performance.md has what
 * each side bought).
 */
import { Socket } from 'node:net';

const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function emitRead(socket: Socket, n: number): boolean {
  socket.emit('data', Buffer.from(READ_BUFFER.subarray(0, n)));
  return true;
}

/** `net.connect`'s `onread` for a socket that reads into the shared buffer. */
export function sharedReads(socket: () => Socket): { buffer: Buffer; callback: (n: number) => boolean } {
  return { buffer: READ_BUFFER, callback: (n) => emitRead(socket(), n) };
}

/** The part of the libuv handle under a `net.Socket` that adoption needs. */
interface StreamHandle {
  useUserBuffer?: unknown;
}

/**
 * An accepted connection, re-made as a socket that reads into the shared buffer. `accepted` must come
 * from a server created with `pauseOnConnect` (nothing read yet). The new socket takes over the
 * connection's handle (the undocumented `handle` option, the way Node's own `cluster` and
 * `child_process` hand connections on). The husk is destroyed without closing it, so the server no
 * longer counts the connection and `server.close()` does not wait for it: the proxy tracks its own.
 * When the handle is not a stream this Node can adopt, `accepted` itself is resumed and returned.
 */
export function adoptWithSharedReads(accepted: Socket, allowHalfOpen: boolean): Socket {
  const husk = accepted as unknown as { _handle: StreamHandle | null };
  const handle = husk._handle;
  if (handle === null || typeof handle.useUserBuffer !== 'function') {
    accepted.resume();
    return accepted;
  }
  husk._handle = null;
  accepted.destroy();
  const socket: Socket = new Socket({ handle, allowHalfOpen, readable: true, writable: true, onread: sharedReads(() => socket) } as ConstructorParameters<typeof Socket>[0]);
  return socket;
}
