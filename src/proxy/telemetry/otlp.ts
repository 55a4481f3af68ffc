/**
 * Spans in the OTLP JSON mapping (opentelemetry-proto `trace/v1`, OTLP/HTTP with
 * `content-type: application/json`): ids as lowercase hex, times as decimal strings of nanoseconds
 * since the epoch, 64-bit integers as decimal strings, enums as numbers.
 */

/** An attribute value of the OTLP JSON mapping. */
export type AnyValue = { stringValue: string } | { intValue: string } | { boolValue: boolean };

/** A key and its value. */
export interface KeyValue {
  key: string;
  value: AnyValue;
}

/** `Span.SpanKind`: only the two the proxy makes. */
export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
/** `Status.StatusCode`. */
export const STATUS_UNSET = 0;
export const STATUS_ERROR = 2;

/** One span, as OTLP JSON carries it. */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  /** Absent on a root span. */
  parentSpanId?: string;
  /** The W3C `tracestate` the span was made under, as received. */
  traceState?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: KeyValue[];
  status: { code: number; message?: string };
}

/** The process (here: one proxy's workload) that made spans. */
export interface OtlpResource {
  attributes: KeyValue[];
}

/** The body of `POST /v1/traces`. */
export interface ExportTraceServiceRequest {
  resourceSpans: Array<{ resource: OtlpResource; scopeSpans: Array<{ scope: { name: string; version?: string }; spans: OtlpSpan[] }> }>;
}

export const str = (key: string, v: string): KeyValue => ({ key, value: { stringValue: v } });
export const int = (key: string, v: number): KeyValue => ({ key, value: { intValue: String(Math.trunc(v)) } });

/** Milliseconds since the epoch (fractional) as nanoseconds, a decimal string. */
export function unixNanos(ms: number): string {
  const whole = Math.floor(ms);
  const frac = Math.round((ms - whole) * 1e6);
  return (BigInt(whole) * 1_000_000n + BigInt(frac)).toString();
}

/** The instrumentation scope of every span the mesh makes. */
export const SCOPE = { name: 'weft', version: '0.1.0' };

/** One export request holding `spans` of one resource. */
export function encodeExport(resource: OtlpResource, spans: readonly OtlpSpan[]): string {
  const body: ExportTraceServiceRequest = { resourceSpans: [{ resource, scopeSpans: [{ scope: SCOPE, spans: spans as OtlpSpan[] }] }] };
  return JSON.stringify(body);
}

/** The string value of attribute `key`, or undefined. */
export function attr(attributes: readonly KeyValue[] | undefined, key: string): string | undefined {
  const kv = attributes?.find((a) => a.key === key);
  if (kv === undefined) return undefined;
  const v = kv.value as Record<string, unknown>;
  const x = v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue;
  return x === undefined ? undefined : String(x);
}
