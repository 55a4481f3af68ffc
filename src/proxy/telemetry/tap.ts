/**
 * Tap at the proxy: while the control plane has told it of open taps that concern it (a `tap`
 * message on the config stream), each finished request whose destination, method, path and status
 * match one is sent to the control plane as an event, in batches of at most MAX_BATCH every
 * FLUSH_MS, at most MAX_EVENTS_PER_SECOND a second (beyond that, dropped and counted). With no tap
 * open `active` is false and nothing here runs.
 */
import { performance } from 'node:perf_hooks';
import { apiServiceName, type TapEvent, type TapSpec } from '../../model/golden-signals.js';
import type { RequestContext } from '../message.js';
import type { ExchangeTelemetry } from './telemetry.js';

/** Events a proxy sends per second, at most; the rest are dropped (`weft_tap_events_total{result="dropped"}`). */
export const MAX_EVENTS_PER_SECOND = 100;
const MAX_BATCH = 50;
const FLUSH_MS = 200;
/** Most taps a proxy keeps (the control plane's own limit is lower). */
const MAX_TAPS = 64;

/** A tap as matched per request. */
interface CompiledTap {
  id: string;
  service: string;
  method: string | null;
  path: string | null;
  /** Status from (inclusive) and to (exclusive); 0..1000 for any. */
  statusFrom: number;
  statusTo: number;
}

/** How tap reports: events `sent` or `dropped`. */
export type TapReport = (result: 'sent' | 'dropped', events: number) => void;

const WALL_OFFSET = performance.timeOrigin;

export class TapRecorder {
  private taps: CompiledTap[] = [];
  private batch: Array<{ taps: string[]; event: TapEvent }> = [];
  private timer: NodeJS.Timeout | null = null;
  private second = 0;
  private inSecond = 0;
  /** Called when `active` changes (telemetry then keeps the request's method, path and authority). */
  onActive: (active: boolean) => void = () => {};

  /** `send` delivers one batch and says whether it could. */
  constructor(
    private readonly send: (events: Array<{ taps: string[]; event: TapEvent }>) => boolean,
    private readonly report: TapReport,
  ) {}

  /** True while a tap concerns this proxy. */
  get active(): boolean {
    return this.taps.length > 0;
  }

  /** Replaces the open taps (the control plane sends them all each time); malformed entries are skipped. */
  set(specs: readonly TapSpec[]): void {
    const was = this.active;
    const taps: CompiledTap[] = [];
    for (const s of Array.isArray(specs) ? specs.slice(0, MAX_TAPS) : []) {
      if (typeof s?.id !== 'string' || typeof s.service !== 'string') continue;
      const range = statusRange(s.status ?? null);
      if (range === null) continue;
      taps.push({ id: s.id, service: s.service, method: typeof s.method === 'string' ? s.method : null, path: typeof s.path === 'string' ? s.path : null, statusFrom: range[0], statusTo: range[1] });
    }
    this.taps = taps;
    if (taps.length === 0) this.flush();
    if (was !== this.active) this.onActive(this.active);
  }

  /** One finished exchange: an event for the taps it matches. */
  record(ctx: RequestContext, t: ExchangeTelemetry, status: number, grpcStatus: string, source: string, sourceIdentity: string | null, mtls: boolean): void {
    let ids: string[] | null = null;
    for (const tap of this.taps) {
      if (tap.service !== ctx.destination || status < tap.statusFrom || status >= tap.statusTo) continue;
      if (tap.method !== null && tap.method !== t.method) continue;
      if (tap.path !== null && !t.path.startsWith(tap.path)) continue;
      (ids ??= []).push(tap.id);
    }
    if (ids === null) return;
    const now = performance.now();
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      this.second = second;
      this.inSecond = 0;
    }
    if (++this.inSecond > MAX_EVENTS_PER_SECOND) {
      this.report('dropped', 1);
      return;
    }
    const grpc = grpcStatus === '' || grpcStatus === 'none' ? null : Number(grpcStatus);
    this.batch.push({
      taps: ids,
      event: {
        time: new Date(WALL_OFFSET + now).toISOString(),
        direction: ctx.direction,
        source: source === '' ? null : apiServiceName(source),
        destination: apiServiceName(ctx.destination),
        sourceIdentity: sourceIdentity === '' ? null : sourceIdentity,
        method: t.method,
        authority: t.authority,
        path: t.path,
        status,
        grpcStatus: grpc !== null && Number.isInteger(grpc) ? grpc : null,
        durationMs: Math.round((now - ctx.start) * 1000) / 1000,
        errorCode: ctx.errorCode,
        traceId: t.traceId,
        mtls,
        upstreamHost: ctx.upstreamHost,
      },
    });
    if (this.batch.length >= MAX_BATCH) this.flush();
    else if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Sends the events waiting. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.report(this.send(batch) ? 'sent' : 'dropped', batch.length);
  }
}

/** `5xx` → [500, 600), `404` → [404, 405), null → any; null when the filter is malformed. */
export function statusRange(filter: string | null): [number, number] | null {
  if (filter === null || filter === '') return [0, 1000];
  if (/^[1-5]xx$/.test(filter)) return [Number(filter[0]) * 100, Number(filter[0]) * 100 + 100];
  if (/^[1-5]\d\d$/.test(filter)) return [Number(filter), Number(filter) + 1];
  return null;
}
