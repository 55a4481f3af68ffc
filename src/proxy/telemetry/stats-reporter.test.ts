import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STATS_DURATION_BOUNDS, type StatsReport, type TapEvent } from '../../model/golden-signals.js';
import { DURATION_BUCKETS, ProxyMetrics } from '../admin/metrics.js';
import { newRequestContext, type RequestContext } from '../message.js';
import { StatsReporter } from './stats-reporter.js';
import { TapRecorder, statusRange } from './tap.js';
import type { ExchangeTelemetry } from './telemetry.js';

function ctx(over: Partial<RequestContext> = {}): RequestContext {
  return newRequestContext({ direction: 'inbound', requestId: 'r', clientAddress: '127.0.0.1', peerIdentity: 'spiffe://cluster.local/ns/default/sa/client', start: performance.now() - 30, route: 'inbound', destination: 'web.default', sourceService: 'client.default', ...over });
}

test('the report bounds are the metrics histogram bounds', () => {
  assert.deepEqual(DURATION_BUCKETS, STATS_DURATION_BOUNDS);
});

test('reports deltas per series, failures counted, nothing when nothing changed, carried while the stream is down', () => {
  const m = new ProxyMetrics();
  const sent: StatsReport[] = [];
  let up = true;
  let dropped = 0;
  const r = new StatsReporter(m, (rep) => (up ? (sent.push(rep), true) : false), (n) => (dropped += n));
  for (let i = 0; i < 9; i++) m.request(ctx(), 'client.default', 'id-c', 'id-w', true, 200, '');
  m.request(ctx(), 'client.default', 'id-c', 'id-w', true, 500, '');
  m.request(ctx({ errorCode: 'UPSTREAM_RESET' }), 'client.default', 'id-c', 'id-w', true, 502, '');
  assert.equal(r.tick(1000), 1);
  const s = sent[0]!.series[0]!;
  assert.deepEqual([s.d, s.src, s.dst, s.n, s.err, s.mtls], ['inbound', 'client.default', 'web.default', 11, 2, true]);
  assert.equal(s.b.reduce((a, b) => a + b, 0), 11);
  assert.equal(s.b[6], 11, 'about 30 ms each: the (25, 50] ms bucket');
  assert.equal(r.tick(3000), 0, 'nothing new');
  up = false;
  m.request(ctx(), 'client.default', 'id-c', 'id-w', true, 200, '');
  assert.equal(r.tick(5000), 0);
  up = true;
  m.request(ctx(), 'client.default', 'id-c', 'id-w', true, 200, '');
  assert.equal(r.tick(7000), 1);
  assert.equal(sent[1]!.series[0]!.n, 2, 'the report the stream missed is carried');
  assert.equal(sent[1]!.intervalMs, 4000);
  up = false;
  m.request(ctx(), 'client.default', 'id-c', 'id-w', true, 200, '');
  r.tick(9000);
  r.tick(20_000);
  assert.equal(dropped, 1, 'given up after 10 s');
});

test('tap matches destination, method, path prefix and status; at most 100 events a second', () => {
  const batches: Array<Array<{ taps: string[]; event: TapEvent }>> = [];
  const reports: Record<string, number> = {};
  const tap = new TapRecorder((b) => (batches.push(b), true), (res, n) => (reports[res] = (reports[res] ?? 0) + n));
  let active = false;
  tap.onActive = (a) => (active = a);
  const t = (path: string): ExchangeTelemetry => ({ traceId: '', spanId: '', parentId: '', traceState: undefined, sampled: false, logged: false, method: 'GET', path, authority: 'web', userAgent: undefined, forwardedFor: undefined, grpc: false });
  tap.set([{ id: 'a', service: 'web.default', method: 'GET', path: '/items', status: '5xx' }, { id: 'b', service: 'web.default', method: null, path: null, status: null }]);
  assert.equal(active, true);
  tap.record(ctx(), t('/items/1'), 500, '', 'client.default', 'id-c', true);
  tap.record(ctx(), t('/items/2'), 200, '', 'client.default', 'id-c', true);
  tap.record(ctx(), t('/other'), 503, '', 'client.default', 'id-c', true);
  tap.record(ctx({ destination: 'db.default' }), t('/items/3'), 500, '', 'client.default', 'id-c', true);
  tap.flush();
  assert.deepEqual(batches[0]!.map((x) => [x.taps, x.event.path, x.event.status, x.event.source, x.event.destination]), [
    [['a', 'b'], '/items/1', 500, 'default/client', 'default/web'],
    [['b'], '/items/2', 200, 'default/client', 'default/web'],
    [['b'], '/other', 503, 'default/client', 'default/web'],
  ]);
  for (let i = 0; i < 150; i++) tap.record(ctx(), t('/x'), 200, '', '', null, false);
  tap.flush();
  assert.ok((reports.dropped ?? 0) >= 40, JSON.stringify(reports));
  tap.set([]);
  assert.equal(active, false);
  assert.deepEqual(statusRange('5xx'), [500, 600]);
  assert.deepEqual(statusRange('404'), [404, 405]);
  assert.equal(statusRange('5x'), null);
});

test('TCP series: opened and bytes as deltas (an open connection\'s bytes as they move), the active gauge while connections are open, then once at zero', () => {
  const m = new ProxyMetrics();
  const sent: StatsReport[] = [];
  const r = new StatsReporter(m, (rep) => (sent.push(rep), true));
  // A connection's byte counters, as a socket's bytesRead/bytesWritten would move.
  const conn = () => {
    const c = { rx: 0, tx: 0, received: () => c.rx, sent: () => c.tx };
    return c;
  };
  const a = conn();
  const b = conn();
  const sa = m.tcpOpened('outbound', 'client.default', 'db.default', true, a);
  const sb = m.tcpOpened('outbound', 'client.default', 'db.default', true, b);
  a.rx = 100;
  a.tx = 250;
  m.tcpClosed(sa, a);
  b.rx = 40;
  assert.equal(r.tick(1000), 1);
  assert.deepEqual(sent[0]!.series, []);
  assert.deepEqual(sent[0]!.tcp, [{ d: 'outbound', src: 'client.default', dst: 'db.default', mtls: true, opened: 2, rx: 140, tx: 250, active: 1 }], 'the open connection\'s 40 bytes so far count too');
  assert.equal(r.tick(3000), 1, 'a connection still open: the gauge is reported again');
  assert.deepEqual([sent[1]!.tcp![0]!.opened, sent[1]!.tcp![0]!.rx, sent[1]!.tcp![0]!.active], [0, 0, 1]);
  b.rx = 47;
  b.tx = 9;
  assert.match(m.render(), /weft_tcp_bytes_total\{direction="outbound",source_service="client.default",destination_service="db.default",mtls="true",flow="received"\} 147\n/, '/metrics is live too');
  m.tcpClosed(sb, b);
  m.tcpClosed(sb, b);
  m.request(ctx(), 'client.default', 'id-c', 'id-w', true, 200, '');
  assert.equal(r.tick(5000), 2);
  assert.equal(sent[2]!.series.length, 1);
  assert.deepEqual([sent[2]!.tcp![0]!.rx, sent[2]!.tcp![0]!.tx, sent[2]!.tcp![0]!.active], [7, 9, 0], 'a second close of the same connection counts nothing');
  assert.equal(r.tick(7000), 0, 'idle at zero: nothing to send');
  assert.equal(sent.length, 3);
});

test('a request-only report carries no tcp field (what old control planes expect)', () => {
  const m = new ProxyMetrics();
  const sent: StatsReport[] = [];
  const r = new StatsReporter(m, (rep) => (sent.push(rep), true));
  m.request(ctx(), 'client.default', 'id-c', 'id-w', true, 200, '');
  assert.equal(r.tick(1000), 1);
  assert.equal('tcp' in sent[0]!, false);
});
