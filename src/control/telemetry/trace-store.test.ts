import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TraceStore } from './trace-store.js';

const span = (traceId: string, spanId: string, parentSpanId: string, start: number, extra: object = {}) => ({
  traceId, spanId, parentSpanId, name: `GET ${spanId}`, kind: 2, startTimeUnixNano: String(start * 1e6), endTimeUnixNano: String((start + 5) * 1e6), attributes: [{ key: 'http.response.status_code', value: { intValue: '200' } }], status: { code: 0 }, ...extra,
});
const body = (service: string, spans: object[]) => ({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] }, scopeSpans: [{ scope: { name: 't' }, spans }] }] });
const tid = (n: number) => n.toString(16).padStart(32, 'a');
const sid = (n: number) => n.toString(16).padStart(16, 'b');

test('ingest, look up, list with filters; bad spans are counted and skipped', () => {
  const store = new TraceStore();
  assert.deepEqual(store.ingest(body('web', [span(tid(1), sid(1), '', 1000), span(tid(1), sid(2), sid(1), 1001, { kind: 'SPAN_KIND_CLIENT', status: { code: 2 } })])), { accepted: 2, rejected: 0, error: '' });
  assert.deepEqual(store.ingest(body('ratings', [span(tid(1), sid(3), sid(2), 1002), span(tid(2), sid(4), '', 2000), span('0'.repeat(32), sid(5), '', 1), span(tid(3), 'xyz', '', 1)])).rejected, 2);
  const t = store.trace(tid(1).toUpperCase())!;
  assert.deepEqual(t.map((s) => [s.spanId, s.service, s.kind, s.status]), [[sid(1), 'web', 'SERVER', 'UNSET'], [sid(2), 'web', 'CLIENT', 'ERROR'], [sid(3), 'ratings', 'SERVER', 'UNSET']]);
  assert.equal(t[0]!.startMs, 1000);
  assert.equal(t[0]!.durationMs, 5);
  assert.equal(t[0]!.attributes['resource.service.name'], 'web');
  assert.deepEqual(store.list().map((s) => [s.traceId, s.spans, s.errors]), [[tid(2), 1, 0], [tid(1), 3, 1]]);
  assert.deepEqual(store.list({ service: 'web' }).map((s) => s.traceId), [tid(1)]);
  assert.deepEqual(store.list({ errors: true }).map((s) => s.traceId), [tid(1)]);
  assert.deepEqual(store.list({ minDurationMs: 6 }).map((s) => [s.traceId, s.durationMs]), [[tid(1), 7]]);
  assert.equal(store.trace(tid(9)), null);
  assert.equal(store.ingest({}).error, 'the body is not an ExportTraceServiceRequest (no resourceSpans list)');
});

test('bounded: the oldest spans go first', () => {
  const store = new TraceStore(100);
  for (let i = 0; i < 5000; i++) store.ingest(body('s', [span(tid(i), sid(i), '', i)]));
  assert.equal(store.size, 100);
  assert.equal(store.trace(tid(4899)), null);
  assert.equal(store.trace(tid(4900))!.length, 1);
  assert.equal(store.list({ limit: 500 }).length, 100);
});
