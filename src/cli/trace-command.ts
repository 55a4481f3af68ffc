/** `weft trace [ID]`: recent traces from the control plane's store, or one trace as a text waterfall. */
import { api } from './api-client.js';
import { UsageError, type Command } from './command.js';
import { age, table } from './table.js';
import type { StoredSpan, TraceSummary } from '../control/telemetry/trace-store.js';

/** A span as `GET /api/v1/traces/<id>` serves it. */
export type TraceSpan = StoredSpan;

const BAR_WIDTH = 40;

export const traceCommand: Command = {
  summary: 'list recent traces, or show one as a waterfall',
  usage: 'weft trace [TRACE_ID] [--service NAME] [--errors] [--limit N] [-o json]',
  positionals: true,
  options: {
    service: { type: 'string', short: 's' },
    errors: { type: 'boolean', default: false },
    limit: { type: 'string', default: '20' },
    output: { type: 'string', short: 'o' },
  },
  help: `Without an id: the most recent traces the control plane holds (newest first), optionally only those
through a service (--service) or with an error span (--errors).
With an id: every span of the trace, indented under its parent, with its service, start offset,
duration, status and a bar on the trace's time line.
The control plane keeps the last 10,000 spans; proxies send them when the Mesh sets spec.tracing.`,
  run: async (v, positionals) => {
    if (positionals.length > 1) throw new UsageError('give at most one trace id');
    const output = v.output as string | undefined;
    if (output !== undefined && output !== 'json') throw new UsageError(`-o: "${output}" is not json`);
    if (positionals.length === 1) {
      const id = positionals[0]!;
      if (!/^[0-9a-fA-F]{32}$/.test(id)) throw new UsageError(`"${id}" is not a trace id (32 hex digits)`);
      const { body } = await api<{ traceId: string; spans: TraceSpan[] }>('GET', `/api/v1/traces/${id.toLowerCase()}`);
      console.log(output === 'json' ? JSON.stringify(body, null, 2) : waterfall(body.traceId, body.spans));
      return 0;
    }
    if (!/^\d+$/.test(v.limit as string)) throw new UsageError(`--limit: "${String(v.limit)}" is not a number`);
    const q = new URLSearchParams({ limit: v.limit as string });
    if (typeof v.service === 'string') q.set('service', v.service);
    if (v.errors === true) q.set('errors', 'true');
    const { body } = await api<{ items: TraceSummary[] }>('GET', `/api/v1/traces?${q}`);
    if (output === 'json') {
      console.log(JSON.stringify(body, null, 2));
      return 0;
    }
    if (body.items.length === 0) {
      console.log('no traces yet (is spec.tracing set on the Mesh, with sampling above 0?)');
      return 0;
    }
    console.log(
      table(
        ['TRACE ID', 'ROOT', 'SPANS', 'ERRORS', 'DURATION', 'AGE', 'SERVICES'],
        body.items.map((t) => [t.traceId, `${t.service}: ${t.name}`, String(t.spans), String(t.errors), ms(t.durationMs), age(t.startMs), t.services.join(',')]),
      ),
    );
    return 0;
  },
};

function ms(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(2)}s` : `${x.toFixed(2)}ms`;
}

/** What a span ended with: the HTTP status and mesh error code, or the span status. */
function statusOf(s: TraceSpan): string {
  const code = s.attributes['http.response.status_code'];
  const err = s.attributes['weft.error_code'];
  const grpc = s.attributes['rpc.grpc.status_code'];
  const parts = [code ?? (s.status === 'ERROR' ? 'ERROR' : s.status === 'OK' ? 'OK' : '-')];
  if (grpc !== undefined) parts.push(`grpc=${grpc}`);
  if (err !== undefined) parts.push(err);
  return parts.join(' ');
}

/** A bar of `BAR_WIDTH` cells: blank before the span's start, filled over its duration. */
function bar(start: number, duration: number, total: number): string {
  if (total <= 0) return `|${'█'.repeat(BAR_WIDTH)}|`;
  const from = Math.min(BAR_WIDTH - 1, Math.floor((start / total) * BAR_WIDTH));
  const len = Math.max(1, Math.min(BAR_WIDTH - from, Math.round((duration / total) * BAR_WIDTH)));
  return `|${' '.repeat(from)}${'█'.repeat(len)}${' '.repeat(BAR_WIDTH - from - len)}|`;
}

/** The trace as a text waterfall: one row per span, children under their parent, earliest first. */
export function waterfall(traceId: string, spans: readonly TraceSpan[]): string {
  if (spans.length === 0) return `trace ${traceId}: no spans`;
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, TraceSpan[]>();
  const roots: TraceSpan[] = [];
  for (const s of spans) {
    if (s.parentSpanId === '' || !ids.has(s.parentSpanId)) roots.push(s);
    else (children.get(s.parentSpanId) ?? children.set(s.parentSpanId, []).get(s.parentSpanId)!).push(s);
  }
  const byStart = (a: TraceSpan, b: TraceSpan): number => a.startMs - b.startMs;
  const t0 = Math.min(...spans.map((s) => s.startMs));
  const total = Math.max(...spans.map((s) => s.startMs + s.durationMs)) - t0;
  const rows: string[][] = [];
  const seen = new Set<string>();
  const walk = (s: TraceSpan, depth: number): void => {
    if (seen.has(s.spanId)) return; // a span id used twice must not loop
    seen.add(s.spanId);
    const missing = depth === 0 && s.parentSpanId !== '' ? ' (parent not received)' : '';
    rows.push([`${'  '.repeat(depth)}${s.kind === 'UNSPECIFIED' ? '' : `${s.kind} `}${s.name}${missing}`, s.service, `+${ms(s.startMs - t0)}`, ms(s.durationMs), statusOf(s), bar(s.startMs - t0, s.durationMs, total)]);
    for (const c of (children.get(s.spanId) ?? []).sort(byStart)) walk(c, depth + 1);
  };
  for (const r of roots.sort(byStart)) walk(r, 0);
  const services = new Set(spans.map((s) => s.service));
  const errors = spans.filter((s) => s.status === 'ERROR').length;
  const head = `trace ${traceId}: ${spans.length} spans, ${services.size} services, ${ms(total)}${errors > 0 ? `, ${errors} with errors` : ''}`;
  return `${head}\n\n${table(['SPAN', 'SERVICE', 'START', 'DURATION', 'STATUS', 'TIMELINE'], rows)}`;
}
