/**
 * A message body in flight: bytes pushed by the connection that reads them, delivered to the one
 * consumer that writes them on, with backpressure carried back to the reading socket.
 *
 * Until a consumer attaches, pushed bytes are held (bounded: past the high-water mark the producer
 * is asked to pause), so a handler may decide where a body goes before reading it.
 */

/** Where a body's bytes go. */
export interface BodySink {
  /** Returns false when the sink is full; the body then pauses until `Body.resume()`. */
  data(chunk: Buffer): boolean;
  /** Trailer fields (flattened, lowercase names) or null. */
  end(trailers: string[] | null): void;
  error(err: Error): void;
}

/** How the producing side is told to stop and start reading. */
export interface BodyFlow {
  pause(): void;
  resume(): void;
  /** The consumer gave up: the producer should stop and release its connection. */
  abort(err: Error): void;
}

const HIGH_WATER = 64 * 1024;
const noFlow: BodyFlow = { pause() {}, resume() {}, abort() {} };

/** A streamed body with a known length (`length >= 0`) or not (`length === -1`). */
export class Body {
  readonly length: number;
  private sink: BodySink | null = null;
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  private ended = false;
  private trailers: string[] | null = null;
  private failure: Error | null = null;
  private paused = false;
  private readonly flow: BodyFlow;
  private settled: Array<() => void> | null = null;
  /** Bytes delivered so far. */
  received = 0;

  constructor(length: number, flow: BodyFlow = noFlow) {
    this.length = length;
    this.flow = flow;
  }

  /** A complete body from bytes already in memory. */
  static of(bytes: Buffer): Body {
    const b = new Body(bytes.length);
    if (bytes.length > 0) b.push(bytes);
    b.end(null);
    return b;
  }

  get done(): boolean {
    return this.ended || this.failure !== null;
  }

  /** Calls `fn` once the body has ended or failed. */
  onSettled(fn: () => void): void {
    if (this.done) fn();
    else (this.settled ??= []).push(fn);
  }

  private settle(): void {
    const s = this.settled;
    this.settled = null;
    if (s !== null) for (const fn of s) fn();
  }

  /** Producer: more bytes arrived. */
  push(chunk: Buffer): void {
    this.received += chunk.length;
    const sink = this.sink;
    if (sink !== null && this.held === null) {
      if (!sink.data(chunk) && !this.paused) {
        this.paused = true;
        this.flow.pause();
      }
      return;
    }
    (this.held ??= []).push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes > HIGH_WATER && !this.paused) {
      this.paused = true;
      this.flow.pause();
    }
  }

  /** Producer: the body is complete. */
  end(trailers: string[] | null): void {
    if (this.done) return;
    this.ended = true;
    this.trailers = trailers;
    if (this.sink !== null && this.held === null) this.sink.end(trailers);
    this.settle();
  }

  /** Producer: the body cannot complete. */
  fail(err: Error): void {
    if (this.done) return;
    this.failure = err;
    if (this.sink !== null) this.sink.error(err);
    this.settle();
  }

  /** Consumer: start delivery to `sink`. Held bytes are delivered first. */
  pipe(sink: BodySink): void {
    if (this.sink !== null) throw new Error('body already consumed');
    this.sink = sink;
    const held = this.held;
    if (held !== null) {
      this.held = null;
      this.heldBytes = 0;
      let full = false;
      for (const c of held) if (!sink.data(c)) full = true;
      if (full) {
        this.paused = true;
        return;
      }
    }
    if (this.failure !== null) sink.error(this.failure);
    else if (this.ended) sink.end(this.trailers);
    else if (this.paused) {
      this.paused = false;
      this.flow.resume();
    }
  }

  /** Consumer: the sink drained; deliver again. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.failure !== null) this.sink?.error(this.failure);
    else if (this.ended) this.sink?.end(this.trailers);
    else this.flow.resume();
  }

  /** Consumer: the bytes are not wanted; the producer stops. */
  abort(err: Error): void {
    if (this.done) return;
    this.failure = err;
    this.held = null;
    this.flow.abort(err);
    this.settle();
  }

  /** Reads the whole body into memory, refusing more than `limit` bytes. */
  collect(limit: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let size = 0;
      this.pipe({
        data: (c) => {
          size += c.length;
          if (size > limit) {
            this.abort(new Error(`body larger than ${limit} bytes`));
            reject(new Error(`body larger than ${limit} bytes`));
            return true;
          }
          parts.push(c);
          return true;
        },
        end: () => resolve(Buffer.concat(parts, size)),
        error: reject,
      });
    });
  }
}
