/**
 * Batches finished spans and posts them as OTLP/HTTP JSON to each target: the Mesh's collector
 * (`spec.tracing.otlp.endpoint`) and the control plane. Bounded everywhere: a queue of at most
 * MAX_QUEUE spans (further spans are dropped and counted), batches of at most MAX_BATCH sent at
 * least every FLUSH_MS, and at most MAX_IN_FLIGHT posts per target (a batch a slow target cannot
 * take is dropped for that target and counted). Nothing here runs on the request path but `add`.
 */
import { ConnectionPool, simpleRequest, type ClientTls } from '../http1/simple-client.js';
import { encodeExport, type OtlpResource, type OtlpSpan } from './otlp.js';

const MAX_QUEUE = 4096;
const MAX_BATCH = 512;
const FLUSH_MS = 1000;
const MAX_IN_FLIGHT = 4;
const POST_TIMEOUT_MS = 5000;
const JSON_TYPE = ['content-type', 'application/json'];

/**
 * Where batches go. `options()` is read per post (a certificate may have been renewed): the TLS
 * settings for an `https:` URL (`{}` for plain HTTP or the system's roots); null skips the post.
 */
export interface ExportTarget {
  /** A short label for metrics: `otlp` or `control-plane`. */
  readonly name: string;
  readonly url: string;
  /** Keep-alive connections of this target, at most MAX_IN_FLIGHT. */
  readonly pool: ConnectionPool;
  options(): ClientTls | null;
}

/** How the exporter reports: spans `exported`, `dropped` (queue full or target busy) or `failed`, per target. */
export type ExportReport = (target: string, result: 'exported' | 'dropped' | 'failed', spans: number) => void;

/** A new pool of keep-alive connections for one target. */
export function targetPool(): ConnectionPool {
  return new ConnectionPool(MAX_IN_FLIGHT);
}

/** A target that takes OTLP/HTTP (a collector): no client credentials; `https:` checks the server against the system's roots. */
export function collectorTarget(url: string): ExportTarget {
  return { name: 'otlp', url, pool: targetPool(), options: () => ({}) };
}

export class SpanExporter {
  private queue: OtlpSpan[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Map<string, number>();
  /** Set by the proxy from the configuration in force. */
  targets: readonly ExportTarget[] = [];
  /** The resource of the spans queued (one proxy, one workload). */
  resource: OtlpResource = { attributes: [] };

  constructor(private readonly report: ExportReport) {}

  /** Queues one span; drops it (counted) when the queue is full. */
  add(span: OtlpSpan): void {
    if (this.queue.length >= MAX_QUEUE) {
      this.report('queue', 'dropped', 1);
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= MAX_BATCH) this.flush();
    else if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Sends what is queued now, in batches. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.queue.length > 0) {
      const batch = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH);
      this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH);
      const body = Buffer.from(encodeExport(this.resource, batch));
      for (const t of this.targets) this.post(t, body, batch.length);
    }
  }

  /** Sends what is queued and waits (at most `ms`) for the posts in flight, then closes idle connections. */
  async close(ms = 2000): Promise<void> {
    this.flush();
    const deadline = Date.now() + ms;
    while ([...this.inFlight.values()].some((n) => n > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const t of this.targets) t.pool.close();
  }

  private post(t: ExportTarget, body: Buffer, spans: number): void {
    const busy = this.inFlight.get(t.name) ?? 0;
    const options = busy >= MAX_IN_FLIGHT ? null : t.options();
    if (options === null) {
      this.report(t.name, 'dropped', spans);
      return;
    }
    this.inFlight.set(t.name, busy + 1);
    let done = false;
    const settle = (ok: boolean): void => {
      if (done) return;
      done = true;
      this.inFlight.set(t.name, (this.inFlight.get(t.name) ?? 1) - 1);
      this.report(t.name, ok ? 'exported' : 'failed', spans);
    };
    simpleRequest({ url: new URL(t.url), method: 'POST', headers: JSON_TYPE, body, timeoutMs: POST_TIMEOUT_MS, tls: options, pool: t.pool }).then(
      (res) => settle(res.status >= 200 && res.status < 300),
      () => settle(false),
    );
  }
}
