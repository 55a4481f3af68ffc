/**
 * Joins two connected sockets into one TCP stream: bytes copied both ways with backpressure, a
 * clean end passed on as a half-close (so request/response protocols that close their sending side
 * still get their answer), an error on either side cutting both.
 */
import type { Socket } from 'node:net';

/** Pipes `a` and `b` together; `onClosed` runs once, when both are closed. */
export function joinSockets(a: Socket, b: Socket, onClosed: () => void): void {
  let closed = 0;
  const closeOne = (): void => {
    if (++closed === 2) onClosed();
  };
  const pass = (from: Socket, to: Socket): void => {
    from.pipe(to);
    from.on('error', () => to.destroy());
    from.on('close', (hadError) => {
      // A clean close was already passed on by pipe() as a half-close, unless we closed `from`
      // ourselves before its end: then `to` must not wait for bytes that will never come.
      if (hadError) to.destroy();
      else if (!to.destroyed && !to.writableEnded) to.end();
      closeOne();
    });
  };
  pass(a, b);
  pass(b, a);
  a.resume();
  b.resume();
}
