/**
 * Trace context propagation: W3C Trace Context (`traceparent`, `tracestate`) and Zipkin's B3 (the
 * single `b3` header and the `x-b3-*` set). Parsing is strict: a header that breaks its spec is
 * ignored as a whole (the exchange then starts a new trace), never half-trusted.
 */
import { randomFillSync } from 'node:crypto';

/** What a request carried of its caller's trace. */
export interface IncomingTrace {
  /** 32 lowercase hex digits (a 16-digit B3 id is left-padded with zeros). */
  traceId: string;
  /** The caller's span: 16 lowercase hex digits. */
  parentId: string;
  /** The caller's decision; null when it left the decision to us (B3 without a sampling state). */
  sampled: boolean | null;
}

/** Which B3 form a request carried, so the same form goes on: none, single `b3`, or `x-b3-*`. */
export const enum B3Form {
  None = 0,
  Single = 1,
  Multi = 2,
}

const HEX = /^[0-9a-f]+$/;
const ZERO16 = '0000000000000000';
const ZERO32 = ZERO16 + ZERO16;

function hexId(s: string, len: number): boolean {
  return s.length === len && HEX.test(s) && s !== (len === 16 ? ZERO16 : ZERO32);
}

/**
 * A `traceparent` value (W3C Trace Context, level 1 §3.2), or null when it is not valid:
 * `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`, lowercase only, version `ff` refused,
 * all-zero ids refused. A version above 00 is read as 00 when its first 55 characters have that
 * shape and anything after them follows a `-` (the spec's forward compatibility rule).
 */
export function parseTraceparent(value: string): IncomingTrace | null {
  if (value.length < 55) return null;
  const version = value.slice(0, 2);
  if (!HEX.test(version) || version === 'ff') return null;
  if (version === '00' ? value.length !== 55 : value.length > 55 && value[55] !== '-') return null;
  if (value[2] !== '-' || value[35] !== '-' || value[52] !== '-') return null;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!hexId(traceId, 32) || !hexId(parentId, 16) || !HEX.test(flags)) return null;
  return { traceId, parentId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/** A `traceparent` value (version 00). */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}

function b3TraceId(s: string): string | null {
  if (hexId(s, 32)) return s;
  if (hexId(s, 16)) return ZERO16 + s;
  return null;
}

function b3Sampled(s: string | undefined, debug: boolean): boolean | null | undefined {
  if (debug) return true;
  if (s === undefined) return null;
  if (s === '1' || s === 'true') return true;
  if (s === '0' || s === 'false') return false;
  return undefined; // invalid
}

/**
 * The single `b3` header: `{traceId}-{spanId}[-{sampling}[-{parentSpanId}]]`, or a sampling state
 * alone (`0`, `1`, `d`). A sampling state alone carries no ids: it returns `{ sampled }` only.
 */
export function parseB3Single(value: string): IncomingTrace | { sampled: boolean } | null {
  if (value === '0' || value === '1' || value === 'd') return { sampled: value !== '0' };
  const parts = value.split('-');
  if (parts.length < 2 || parts.length > 4) return null;
  const traceId = b3TraceId(parts[0]!);
  if (traceId === null || !hexId(parts[1]!, 16)) return null;
  let sampled: boolean | null = null;
  if (parts.length >= 3) {
    const s = parts[2]!;
    if (s === 'd' || s === '1') sampled = true;
    else if (s === '0') sampled = false;
    else return null;
  }
  if (parts.length === 4 && !hexId(parts[3]!, 16)) return null;
  return { traceId, parentId: parts[1]!, sampled };
}

/** The `x-b3-*` headers; null when they are absent or not valid. */
export function parseB3Multi(traceIdValue: string | undefined, spanIdValue: string | undefined, sampledValue: string | undefined, flagsValue: string | undefined): IncomingTrace | { sampled: boolean } | null {
  const sampled = b3Sampled(sampledValue, flagsValue === '1');
  if (sampled === undefined) return null;
  if (traceIdValue === undefined && spanIdValue === undefined) return sampled === null ? null : { sampled };
  if (traceIdValue === undefined || spanIdValue === undefined) return null;
  const traceId = b3TraceId(traceIdValue);
  if (traceId === null || !hexId(spanIdValue, 16)) return null;
  return { traceId, parentId: spanIdValue, sampled };
}

/**
 * Random ids from a pooled buffer (one `randomFillSync` per 512 ids rather than one per id);
 * never all zeros, as both specs require.
 */
const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

function randomHex(bytes: number): string {
  for (;;) {
    if (offset + bytes > pool.length) {
      randomFillSync(pool);
      offset = 0;
    }
    const s = pool.toString('hex', offset, offset + bytes);
    offset += bytes;
    if (s !== ZERO16 && s !== ZERO32) return s;
  }
}

/** A new span id: 16 lowercase hex digits. */
export const newSpanId = (): string => randomHex(8);
/** A new trace id: 32 lowercase hex digits. */
export const newTraceId = (): string => randomHex(16);
