/**
 * Writes gathered per event-loop turn: a socket written to is corked until the turn's check phase
 * (`setImmediate`, after every I/O callback of the turn), when every such socket is uncorked. The
 * answers to one turn's reads then leave in one burst instead of one at a time between them.
 *
 * Why it pays: on loopback a write runs the receiver's TCP path and wakes the receiver when it
 * sleeps, and waking a sleeping process on another core is the dearest part of a write (in this VM
 * a hypervisor exit: `perf` put 25 % of the proxy's samples in waking the readers of its writes).
 * Written one at a time, between the turn's other callbacks, each answer can find its reader asleep
 * again; written in a burst, the first wakes it and the rest find it awake. The number of write
 * calls is unchanged. A write waits at most for the rest of its turn's callbacks.
 *
 * A socket destroyed before the turn ends drops what it held: call `sendNow` before a destroy that
 * must not lose an answer. `end()` sends it (Writable uncorks before it ends). Holding the bytes here
 * instead of corking (no Writable buffer entry per write, but a `sendNow` before every other write,
 * end or destroy) measured +3.1 % and then +0.7 % req/s against this: noise, for a rule every writer
 * would have to keep.
 *
 * Only under load. After `lonelyBursts` bursts in a row that held one socket each, writes go out at
 * once; a run of `closeWrites` writes, each less than `quietGapMs` after the one before, gathers
 * again (one coincidence of two requests does not: at 1,000 req/s the VM's stalls bunch them). At
 * 1,000 req/s a turn holds one answer, so holding it buys nothing and costs the cork, the
 * check-phase callback and the wait. Deciding by the gap alone (a write after a quiet gap goes at
 * once) flapped under saturation, where a turn's first write often follows a wait longer than the
 * gap: writing it at once woke the reader mid-turn, the next turn waited longer, and req/s fell by
 * up to 40 % in some runs. Counting bursts needs a run of quiet turns before it lets go.
 * Measured with `npm run bench:ab -- <before> . --row weft-mtls-tracing-1pct --rate 1000`: CPU per
 * request 0.934× and 0.998×, p50 0.887× and 0.961× (runs of 10 and 20 pairs), and with both sides
 * loaded at once (`--together`, ±2 %) 0.991× / 0.971× and 0.985× / 0.956×: small; at saturation
 * (`bench:ab`) 1.025× and 1.008× req/s on the `weft` row, 1.006× on `weft-mtls`, so the
 * gathering's gain is kept.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** When lone writes go out at once (tests set these). */
export const pacing = {
  /** Bursts of one socket in a row after which writes go out at once. */
  lonelyBursts: 16,
  /** Writes this close (ms) to the previous one are close… */
  quietGapMs: 0.1,
  /** …and this many close writes in a row end writing at once. */
  closeWrites: 8,
};

const pending: Socket[] = [];
let scheduled = false;
/** Writes go out at once (no load seen lately). */
let direct = false;
let lonely = 0;
let lastWriteAt = 0;
/** Writes in a row, while writing at once, that came close to the previous one. */
let close = 0;

function flush(): void {
  scheduled = false;
  // Read the length each time: a socket held while these uncork must not be dropped still corked.
  for (let i = 0; i < pending.length; i++) pending[i]!.uncork();
  const n = pending.length;
  pending.length = 0;
  if (n > 1) lonely = 0;
  else if (++lonely >= pacing.lonelyBursts) {
    direct = true;
    lastWriteAt = -Infinity;
    close = 0;
  }
}

/** `socket.write(data, encoding)`, sent at the end of this event-loop turn with the turn's other writes;
 *  when the proxy has been quiet, at once. */
export function writeInTurn(socket: Socket, data: string | Buffer, encoding?: BufferEncoding): void {
  if (socket.writableCorked === 0) {
    let hold = true;
    if (direct) {
      if (performance.now() - lastWriteAt >= pacing.quietGapMs) {
        close = 0;
        hold = false;
      } else if (++close < pacing.closeWrites) hold = false;
      else {
        // A run of writes close together: load is back, gather again.
        direct = false;
        lonely = 0;
      }
    }
    if (hold) {
      socket.cork();
      pending.push(socket);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    } else {
      if (encoding === undefined) socket.write(data);
      else socket.write(data, encoding);
      // The gap to the next write is measured from the end of this one: a write's own cost (the
      // syscall, waking the reader) must not make back-to-back writes look quiet on a slow machine.
      lastWriteAt = performance.now();
      return;
    }
  }
  if (encoding === undefined) socket.write(data);
  else socket.write(data, encoding);
}

/** Whether writes go out at once now (no load seen lately); for tests. */
export function writingAtOnce(): boolean {
  return direct;
}

/** Sends what `socket` holds for the end of the turn now: before a `destroy()`, which would drop it. */
export function sendNow(socket: Socket): void {
  while (socket.writableCorked > 0) socket.uncork();
}
