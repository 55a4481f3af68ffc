/**
 * The control plane's store of recent spans: what proxies (and any OTLP/HTTP JSON sender) post to
 * `POST /v1/traces`, kept in memory for the CLI (`weft trace`) and the dashboard. Bounded by span
 * count: past `maxSpans` the oldest span goes first, whatever its trace.
 */

/** One span as the API serves it. */
export interface StoredSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  kind: 'INTERNAL' | 'SERVER' | 'CLIENT' | 'PRODUCER' | 'CONSUMER' | 'UNSPECIFIED';
  /** The resource's `service.name`. */
  service: string;
  /** Milliseconds since the epoch (fractional). */
  startMs: number;
  durationMs: number;
  status: 'UNSET' | 'OK' | 'ERROR';
  statusMessage: string;
  /** Span attributes, then resource attributes under `resource.<key>`; values as strings. */
  attributes: Record<string, string>;
}

/** One trace in a listing. */
export interface TraceSummary {
  traceId: string;
  /** The root span's (or, when it is missing, the earliest span's) service and name. */
  service: string;
  name: string;
  startMs: number;
  durationMs: number;
  spans: number;
  errors: number;
  services: string[];
}

/** What a listing may be narrowed to. */
export interface TraceQuery {
  /** Traces with a span of this service. */
  service?: string;
  /** Traces at least this long. */
  minDurationMs?: number;
  /** Only traces with an error span. */
  errors?: boolean;
  /** Most traces returned (newest first); 20 by default, 500 at most. */
  limit?: number;
}

/** The result of one ingest, OTLP's `partialSuccess`. */
export interface IngestResult {
  accepted: number;
  rejected: number;
  /** Why the first rejected span was rejected; '' when none was. */
  error: string;
}

const KINDS: StoredSpan['kind'][] = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];
const STATUS: StoredSpan['status'][] = ['UNSET', 'OK', 'ERROR'];
const TRACE_ID = /^[0-9a-fA-F]{32}$/;
const SPAN_ID = /^[0-9a-fA-F]{16}$/;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** An OTLP AnyValue as text (arrays and maps as JSON). */
function valueText(v: unknown): string {
  if (!isObj(v)) return '';
  if (typeof v.stringValue === 'string') return v.stringValue;
  if (v.intValue !== undefined) return String(v.intValue);
  if (v.doubleValue !== undefined) return String(v.doubleValue);
  if (v.boolValue !== undefined) return String(v.boolValue);
  if (v.arrayValue !== undefined) return JSON.stringify(list((v.arrayValue as Obj).values).map(valueText));
  return JSON.stringify(v);
}

function attributes(v: unknown, into: Record<string, string>, prefix = ''): void {
  for (const kv of list(v)) if (isObj(kv) && typeof kv.key === 'string') into[prefix + kv.key] = valueText(kv.value);
}

/** Nanoseconds (a decimal string or a number) as fractional milliseconds; NaN when not one. */
function nanosToMs(v: unknown): number {
  if (typeof v === 'number') return v / 1e6;
  if (typeof v !== 'string' || !/^\d{1,20}$/.test(v)) return NaN;
  const n = BigInt(v);
  return Number(n / 1000n) / 1000;
}

function enumIndex(v: unknown, names: readonly string[], prefix: string): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string') {
    const i = names.indexOf(v.replace(prefix, ''));
    return i;
  }
  return 0;
}

export class TraceStore {
  /** Every span held, oldest first (`head` is the oldest still held). */
  private ring: StoredSpan[] = [];
  private head = 0;
  private readonly byTrace = new Map<string, StoredSpan[]>();

  constructor(readonly maxSpans = 10_000) {}

  /** Spans held now. */
  get size(): number {
    return this.ring.length - this.head;
  }

  /** Takes an OTLP/HTTP JSON `ExportTraceServiceRequest`; spans that are not valid are counted and skipped. */
  ingest(body: unknown): IngestResult {
    const out: IngestResult = { accepted: 0, rejected: 0, error: '' };
    if (!isObj(body) || !Array.isArray(body.resourceSpans)) {
      out.error = 'the body is not an ExportTraceServiceRequest (no resourceSpans list)';
      return out;
    }
    for (const rs of body.resourceSpans) {
      if (!isObj(rs)) continue;
      const resource: Record<string, string> = {};
      attributes(isObj(rs.resource) ? rs.resource.attributes : undefined, resource, 'resource.');
      const service = resource['resource.service.name'] ?? 'unknown_service';
      for (const ss of [...list(rs.scopeSpans), ...list(rs.instrumentationLibrarySpans)]) {
        if (!isObj(ss)) continue;
        for (const s of list(ss.spans)) {
          const span = this.toSpan(s, service, resource);
          if (typeof span === 'string') {
            out.rejected++;
            if (out.error === '') out.error = span;
            continue;
          }
          this.add(span);
          out.accepted++;
        }
      }
    }
    return out;
  }

  private toSpan(s: unknown, service: string, resource: Record<string, string>): StoredSpan | string {
    if (!isObj(s)) return 'a span is not an object';
    if (typeof s.traceId !== 'string' || !TRACE_ID.test(s.traceId) || /^0+$/.test(s.traceId)) return `span traceId ${JSON.stringify(s.traceId)} is not 32 hex digits (not all zero)`;
    if (typeof s.spanId !== 'string' || !SPAN_ID.test(s.spanId) || /^0+$/.test(s.spanId)) return `span spanId ${JSON.stringify(s.spanId)} is not 16 hex digits (not all zero)`;
    const parent = typeof s.parentSpanId === 'string' ? s.parentSpanId : '';
    if (parent !== '' && !SPAN_ID.test(parent)) return `span parentSpanId ${JSON.stringify(parent)} is not 16 hex digits`;
    const start = nanosToMs(s.startTimeUnixNano);
    const end = nanosToMs(s.endTimeUnixNano);
    if (Number.isNaN(start) || Number.isNaN(end) || end < start) return 'span times are not nanoseconds with end >= start';
    const attrs: Record<string, string> = {};
    attributes(s.attributes, attrs);
    Object.assign(attrs, resource);
    const status = isObj(s.status) ? s.status : {};
    return {
      traceId: s.traceId.toLowerCase(),
      spanId: s.spanId.toLowerCase(),
      parentSpanId: parent.toLowerCase(),
      name: typeof s.name === 'string' ? s.name : '',
      kind: KINDS[enumIndex(s.kind, KINDS, 'SPAN_KIND_')] ?? 'UNSPECIFIED',
      service,
      startMs: start,
      durationMs: end - start,
      status: STATUS[enumIndex(status.code, STATUS, 'STATUS_CODE_')] ?? 'UNSET',
      statusMessage: typeof status.message === 'string' ? status.message : '',
      attributes: attrs,
    };
  }

  private add(span: StoredSpan): void {
    this.ring.push(span);
    const spans = this.byTrace.get(span.traceId);
    if (spans === undefined) this.byTrace.set(span.traceId, [span]);
    else spans.push(span);
    while (this.size > this.maxSpans) this.evictOldest();
    // Compact the ring now and then, so evicted spans do not pile up at its front.
    if (this.head > 1024 && this.head * 2 > this.ring.length) {
      this.ring = this.ring.slice(this.head);
      this.head = 0;
    }
  }

  private evictOldest(): void {
    const old = this.ring[this.head]!;
    this.ring[this.head] = undefined as unknown as StoredSpan;
    this.head++;
    const spans = this.byTrace.get(old.traceId);
    if (spans === undefined) return;
    const i = spans.indexOf(old);
    if (i !== -1) spans.splice(i, 1);
    if (spans.length === 0) this.byTrace.delete(old.traceId);
  }

  /** The spans of one trace, earliest first; null when none is held. */
  trace(traceId: string): StoredSpan[] | null {
    const spans = this.byTrace.get(traceId.toLowerCase());
    return spans === undefined ? null : [...spans].sort((a, b) => a.startMs - b.startMs);
  }

  /** Recent traces, newest first. */
  list(q: TraceQuery = {}): TraceSummary[] {
    const limit = Math.min(500, Math.max(1, q.limit ?? 20));
    const out: TraceSummary[] = [];
    for (const spans of this.byTrace.values()) {
      if (q.service !== undefined && !spans.some((s) => s.service === q.service)) continue;
      const summary = summarize(spans);
      if (q.minDurationMs !== undefined && summary.durationMs < q.minDurationMs) continue;
      if (q.errors === true && summary.errors === 0) continue;
      out.push(summary);
    }
    return out.sort((a, b) => b.startMs - a.startMs).slice(0, limit);
  }
}

function summarize(spans: readonly StoredSpan[]): TraceSummary {
  const ids = new Set(spans.map((s) => s.spanId));
  let first = spans[0]!;
  let root: StoredSpan | null = null;
  let start = Infinity;
  let end = -Infinity;
  let errors = 0;
  const services = new Set<string>();
  for (const s of spans) {
    if (s.startMs < first.startMs) first = s;
    if ((s.parentSpanId === '' || !ids.has(s.parentSpanId)) && (root === null || s.startMs < root.startMs)) root = s;
    start = Math.min(start, s.startMs);
    end = Math.max(end, s.startMs + s.durationMs);
    if (s.status === 'ERROR') errors++;
    services.add(s.service);
  }
  const top = root ?? first;
  return { traceId: top.traceId, service: top.service, name: top.name, startMs: start, durationMs: end - start, spans: spans.length, errors, services: [...services].sort() };
}
