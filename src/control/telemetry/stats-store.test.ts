import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STATS_DURATION_BOUNDS, type StatsSeriesDelta, type StatsTcpDelta } from '../../model/golden-signals.js';
import { MAX_SERIES, StatsStore, histogramQuantile, type TcpStatsRow } from './stats-store.js';

const B = STATS_DURATION_BOUNDS.length + 1;
/** `n` requests, `err` failed, all in the duration bucket `bucket`. */
function delta(over: Partial<StatsSeriesDelta>, n: number, err: number, bucket: number): StatsSeriesDelta {
  const b = new Array<number>(B).fill(0);
  b[bucket] = n;
  return { d: 'inbound', src: 'client.default', srcId: 'spiffe://cluster.local/ns/default/sa/client', dst: 'web.default', dstId: 'spiffe://cluster.local/ns/default/sa/web', route: 'inbound', mtls: true, n, err, b, ...over };
}

test('histogramQuantile interpolates inside the bucket, as Prometheus does', () => {
  const counts = new Array<number>(B).fill(0);
  counts[6] = 100; // (0.025, 0.05]
  assert.ok(Math.abs(histogramQuantile(0.5, counts) - 0.0375) < 1e-12);
  assert.ok(Math.abs(histogramQuantile(0.99, counts) - 0.04975) < 1e-9);
  counts[0] = 100; // (0, 0.0005]
  assert.ok(Math.abs(histogramQuantile(0.25, counts) - 0.00025) < 1e-12);
  const over = new Array<number>(B).fill(0);
  over[B - 1] = 5;
  assert.equal(histogramQuantile(0.5, over), 30, 'the overflow bucket answers the highest finite bound');
  assert.ok(Number.isNaN(histogramQuantile(0.5, new Array<number>(B).fill(0))));
});

test('rates, success and quantiles over a window; the two newest buckets are left out', () => {
  const s = new StatsStore();
  const t0 = 1_000_000_000_000; // a multiple of 2 s
  // 20 req/s for 20 s: one report every 2 s of 40 requests, 4 failed, all in (25, 50] ms.
  for (let i = 1; i <= 10; i++) assert.equal(s.ingest('default/web-1', { intervalMs: 2000, series: [delta({}, 40, 4, 6)] }, t0 + i * 2000), '');
  const now = t0 + 20_000 + 500;
  const [row] = s.rows('service', 10_000, null, now);
  assert.equal(row!.namespace, 'default');
  assert.equal(row!.service, 'web');
  assert.equal(row!.requestsPerSecond, 20);
  assert.equal(row!.requests, 200);
  assert.equal(row!.successRate, 0.9);
  assert.equal(row!.mtlsRate, 1);
  assert.ok(row!.p50Ms! > 25 && row!.p50Ms! <= 50, String(row!.p50Ms));
  // Nothing reported for a while: the window empties.
  const [idle] = s.rows('service', 10_000, null, now + 30_000);
  assert.equal(idle!.requestsPerSecond, 0);
  assert.equal(idle!.successRate, null);
  assert.equal(idle!.p99Ms, null);
  const points = s.points('default/web', 20_000, 10_000, now);
  assert.equal(points.length, 2);
  assert.ok(points.every((p) => p.requestsPerSecond > 15), JSON.stringify(points));
});

test('inbound speaks for a service that has a proxy; outbound otherwise; edges name both ends', () => {
  const s = new StatsStore();
  const t = 2_000_000_000_000;
  s.ingest('default/web-1', { intervalMs: 2000, series: [delta({}, 10, 1, 3)] }, t);
  s.ingest('default/client-1', { intervalMs: 2000, series: [delta({ d: 'outbound', route: 'web-route', dstId: 'spiffe://cluster.local/ns/default/sa/web' }, 10, 0, 3), delta({ d: 'outbound', dst: 'ext.other', dstId: '', mtls: false, route: 'ext' }, 6, 6, 3)] }, t);
  s.ingest('default/web-1', { intervalMs: 2000, series: [delta({ src: '', srcId: '', mtls: false }, 4, 0, 3)] }, t);
  const now = t + 6000;
  const rows = s.rows('service', 10_000, null, now);
  assert.deepEqual(rows.map((r) => [r.namespace, r.service, r.requests, r.errors]), [['default', 'web', 14, 1], ['other', 'ext', 6, 6]]);
  assert.equal(rows[0]!.mtlsRate, 0.7143);
  assert.deepEqual(s.rows('route', 10_000, null, now).map((r) => [r.service, r.route, r.requests]), [['web', 'web-route', 10], ['ext', 'ext', 6]]);
  assert.deepEqual(s.rows('workload', 10_000, 'default', now).map((r) => [r.workload, r.requests]), [['default/web-1', 14]]);
  const edges = s.edges(10_000, now);
  assert.deepEqual(edges.map((e) => [e.source, e.destination, e.sourceIdentity, e.destinationIdentity, e.mtls, e.requests]), [
    ['(unmeshed)', 'default/web', null, 'spiffe://cluster.local/ns/default/sa/web', false, 4],
    ['default/client', 'default/web', 'spiffe://cluster.local/ns/default/sa/client', 'spiffe://cluster.local/ns/default/sa/web', true, 10],
    ['default/client', 'other/ext', 'spiffe://cluster.local/ns/default/sa/client', null, false, 6],
  ]);
});

test('malformed series are skipped with the field named; series beyond the cap are dropped and counted', () => {
  const s = new StatsStore();
  const t = 3_000_000_000_000;
  assert.match(s.ingest('default/a', { intervalMs: 2000, series: [{ ...delta({}, 1, 0, 1), b: [1] }] }, t), /report\.series\[0\]\.b: must be 16 counts/);
  assert.match(s.ingest('default/a', { intervalMs: 2000, series: [delta({}, 1, 2, 1)] }, t), /err: must be a count no larger than n/);
  const many = Array.from({ length: MAX_SERIES + 5 }, (_, i) => delta({ src: `c${i}.default` }, 1, 0, 1));
  s.ingest('default/a', { intervalMs: 0, series: many }, t);
  assert.equal(s.size, MAX_SERIES);
  assert.equal(s.counters.seriesDropped, 5);
  assert.equal(s.counters.malformed, 2);
});

test('a window longer than the time the store has had reports is measured over that time, not diluted', () => {
  const s = new StatsStore();
  const t0 = 1_000_000_000_000;
  // 8 req/s for 10 s, then a 1-minute window: 8/s, not 80 requests / 60 s.
  for (let i = 1; i <= 5; i++) s.ingest('default/web-1', { intervalMs: 2000, series: [delta({}, 16, 0, 6)] }, t0 + i * 2000);
  const [row] = s.rows('service', 60_000, null, t0 + 12_500);
  assert.ok(Math.abs(row!.requestsPerSecond - 8) < 0.01, String(row!.requestsPerSecond));
  const [edge] = s.edges(60_000, t0 + 12_500);
  assert.ok(Math.abs(edge!.requestsPerSecond - 8) < 0.01, String(edge!.requestsPerSecond));
});

/** A TCP delta: `opened` connections, `rx`/`tx` bytes, `active` open now. */
function tcpDelta(over: Partial<StatsTcpDelta>, opened: number, rx: number, tx: number, active: number): StatsTcpDelta {
  return { d: 'inbound', src: '', dst: 'db.default', mtls: true, opened, rx, tx, active, ...over };
}

test('TCP: rates and bytes over a window from the destination side, active summed over its proxies, old proxies accepted', () => {
  const s = new StatsStore();
  const t0 = 1_000_000_000_000;
  // db has two proxies: db-1 opens 5 connections a second (10 a report), 1000 bytes in and 3000 out each,
  // 3 open at a time; db-2 opens none but keeps 2 open. The client's outbound view of db must not count.
  // An old proxy reports requests only; `cache` has no proxy: its callers speak for it, over plaintext.
  for (let i = 1; i <= 10; i++) {
    const t = t0 + i * 2000;
    assert.equal(s.ingest('default/db-1', { intervalMs: 2000, series: [], tcp: [tcpDelta({}, 10, 10_000, 30_000, 3)] }, t), '');
    assert.equal(s.ingest('default/db-2', { intervalMs: 2000, series: [], tcp: [tcpDelta({}, 0, 0, 0, 2)] }, t), '');
    assert.equal(s.ingest('default/client-1', { intervalMs: 2000, series: [], tcp: [tcpDelta({ d: 'outbound', src: 'client.default' }, 99, 1, 1, 9), tcpDelta({ d: 'outbound', src: 'client.default', dst: 'cache.other', mtls: false }, 4, 400, 0, 1)] }, t), '');
    assert.equal(s.ingest('default/old-1', { intervalMs: 2000, series: [delta({}, 2, 0, 3)] }, t), '');
  }
  const now = t0 + 20_000 + 500;
  const rows = s.tcpRows(10_000, null, now);
  assert.deepEqual(rows.map((r) => [r.namespace, r.service]), [['default', 'db'], ['other', 'cache']]);
  const [db, cache] = rows as [TcpStatsRow, TcpStatsRow];
  assert.equal(db.connectionsPerSecond, 5);
  assert.equal(db.connections, 50);
  assert.equal(db.readBytesPerSecond, 5000);
  assert.equal(db.writeBytesPerSecond, 15000);
  assert.equal(db.readBytes, 50_000);
  assert.equal(db.activeConnections, 5, 'db-1 and db-2 together');
  assert.equal(db.mtlsRate, 1);
  assert.equal(cache.connectionsPerSecond, 2);
  assert.equal(cache.activeConnections, 1);
  assert.equal(cache.readBytesPerSecond, 200);
  assert.equal(cache.mtlsRate, 0);
  assert.deepEqual(s.tcpRows(10_000, 'other', now).map((r) => r.service), ['cache']);
  // The HTTP rows are untouched by TCP, and the old proxy's requests are there.
  assert.deepEqual(s.rows('service', 10_000, null, now).map((r) => [r.service, r.requests]), [['web', 10]]);
  // Nothing reported for a while: no rate, and no connection open (the gauge is not held forever).
  const [idle] = s.tcpRows(10_000, null, now + 30_000);
  assert.deepEqual([idle!.connectionsPerSecond, idle!.activeConnections, idle!.mtlsRate], [0, 0, null]);
  // Malformed TCP entries are skipped, naming the field; a tcp that is not a list is refused.
  assert.match(s.ingest('default/db-1', { intervalMs: 2000, series: [], tcp: [tcpDelta({}, -1, 0, 0, 0)] }, now), /report\.tcp\[0\]\.opened: must be a count/);
  assert.match(s.ingest('default/db-1', { intervalMs: 2000, series: [], tcp: 'x' as unknown as StatsTcpDelta[] }, now), /report\.tcp: must be a list/);
  assert.deepEqual([s.counters.tcpMalformed, s.counters.malformed], [1, 0], 'a malformed TCP entry counts as TCP only');
});

test('TCP series beyond the cap are dropped and counted apart from request series', () => {
  const s = new StatsStore();
  const t = 3_000_000_000_000;
  const many = Array.from({ length: MAX_SERIES + 3 }, (_, i) => tcpDelta({ d: 'outbound', src: 'client.default', dst: `db${i}.default` }, 1, 10, 10, 1));
  assert.equal(s.ingest('default/client-1', { intervalMs: 2000, series: [delta({}, 1, 0, 1)], tcp: many }, t), '');
  assert.deepEqual([s.counters.tcpSeriesDropped, s.counters.seriesDropped], [3, 0]);
  // The request series of the same report was kept: the TCP cap is the TCP ring's alone.
  assert.equal(s.size, 1);
});
