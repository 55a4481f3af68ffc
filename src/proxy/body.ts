/**
 * A message body in flight: bytes pushed by the connection that reads them, delivered to the one
 * consumer that writes them on, with backpressure carried back to the reading socket.
 *
 * Bytes are held while no consumer is attached or while the consumer is full (bounded: past the
 * high-water mark the producer is asked to pause), so a handler may decide where a body goes
 * before reading it. The sink sees its bytes in order and exactly one `end` or `error`.
 */

/** Where a body's bytes go. */
export interface BodySink {
  /** Returns false when the sink is full; the body then holds bytes until `Body.resume()`. */
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
const EMPTY = Buffer.alloc(0);
/** The sink of a body taken whole: a second consumer is refused like after `pipe`. */
const TAKEN: BodySink = { data: () => true, end() {}, error() {} };

/** A streamed body with a known length (`length >= 0`) or not (`length === -1`). */
export class Body {
  readonly length: number;
  private sink: BodySink | null = null;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private ended = false;
  private trailers: string[] | null = null;
  private failure: Error | null = null;
  /** The sink said it is full; nothing is delivered until it resumes. */
  private sinkFull = false;
  /** The producer was asked to pause. */
  private producerPaused = false;
  /** The sink got its `end` or `error`. */
  private delivered = false;
  private settled: Array<() => void> | null = null;
  private readonly flow: BodyFlow;

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

  /** The producer is finished with it: ended, failed or aborted. */
  get done(): boolean {
    return this.ended || this.failure !== null;
  }

  /**
   * True while the producer is asked to pause because the consumer does not take bytes fast enough:
   * a body that makes no progress then is held up downstream, not by its producer (stream idle timeouts).
   */
  get paused(): boolean {
    return this.producerPaused;
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
    if (this.done) return;
    const sink = this.sink;
    if (sink !== null && !this.sinkFull && this.held.length === 0) {
      if (!sink.data(chunk)) {
        this.sinkFull = true;
        this.pauseProducer();
      }
      return;
    }
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes > HIGH_WATER) this.pauseProducer();
  }

  /** Producer: the body is complete. */
  end(trailers: string[] | null): void {
    if (this.done) return;
    this.ended = true;
    this.trailers = trailers;
    // Every byte is in: whatever the producer reads next belongs to something else.
    this.resumeProducer();
    this.flush();
    this.settle();
  }

  /** Producer: the body cannot complete. The sink hears of it at once. */
  fail(err: Error): void {
    if (this.done) return;
    this.failure = err;
    this.held = [];
    this.heldBytes = 0;
    if (this.sink !== null && !this.delivered) {
      this.delivered = true;
      this.sink.error(err);
    }
    this.settle();
  }

  /** Consumer: start delivery to `sink`. Held bytes are delivered first. */
  pipe(sink: BodySink): void {
    if (this.sink !== null) throw new Error('body already consumed');
    this.sink = sink;
    if (this.failure !== null) {
      this.delivered = true;
      sink.error(this.failure);
      return;
    }
    this.flush();
  }

  /**
   * Consumer: the whole body at once, when it has already ended, without trailers, in at most one
   * chunk (a small body that arrived with its head): the body counts as delivered. Otherwise null,
   * and nothing changed (pipe it). Lets a writer send head and body in one write.
   */
  takeWhole(): Buffer | null {
    if (!this.ended || this.sink !== null || this.trailers !== null || this.held.length > 1) return null;
    const whole = this.held.length === 1 ? this.held[0]! : EMPTY;
    this.held = [];
    this.heldBytes = 0;
    this.sink = TAKEN;
    this.delivered = true;
    return whole;
  }

  /** Consumer: the sink drained; deliver again. */
  resume(): void {
    if (!this.sinkFull) return;
    this.sinkFull = false;
    this.flush();
  }

  /** Consumer: the bytes are not wanted; the producer stops. */
  abort(err: Error): void {
    if (this.done) return;
    this.failure = err;
    this.delivered = true;
    this.held = [];
    this.heldBytes = 0;
    this.flow.abort(err);
    this.settle();
  }

  /** Delivers held bytes while the sink takes them, then the end; resumes the producer when drained. */
  private flush(): void {
    const sink = this.sink;
    if (sink === null || this.delivered) return;
    const held = this.held;
    while (held.length > 0 && !this.sinkFull) {
      const c = held.shift()!;
      this.heldBytes -= c.length;
      if (!sink.data(c)) this.sinkFull = true;
    }
    if (this.sinkFull) return;
    if (this.ended) {
      this.delivered = true;
      sink.end(this.trailers);
    } else {
      this.resumeProducer();
    }
  }

  private pauseProducer(): void {
    if (this.producerPaused) return;
    this.producerPaused = true;
    this.flow.pause();
  }

  private resumeProducer(): void {
    if (!this.producerPaused) return;
    this.producerPaused = false;
    this.flow.resume();
  }
}
