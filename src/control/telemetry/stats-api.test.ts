import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StatsQueryError, statsQuery } from './stats-api.js';
import { StatsStore, type TcpStatsRow } from './stats-store.js';

test('GET /api/v1/stats/tcp: rows per destination, filtered by namespace; a bad window names the parameter', () => {
  const s = new StatsStore();
  const t0 = 1_000_000_000_000;
  for (let i = 1; i <= 5; i++) {
    s.ingest('default/db-1', { intervalMs: 2000, series: [], tcp: [{ d: 'inbound', src: '', dst: 'db.default', mtls: true, opened: 4, rx: 800, tx: 200, active: 1 }] }, t0 + i * 2000);
    s.ingest('shop/client-1', { intervalMs: 2000, series: [], tcp: [{ d: 'outbound', src: 'client.shop', dst: 'cache.shop', mtls: false, opened: 2, rx: 10, tx: 10, active: 0 }] }, t0 + i * 2000);
  }
  const now = t0 + 12_500;
  const all = statsQuery(['tcp'], new URLSearchParams({ window: '6s' }), s, now) as { window: string; rows: TcpStatsRow[] };
  assert.equal(all.window, '6s');
  assert.deepEqual(all.rows.map((r) => [r.namespace, r.service, r.connectionsPerSecond, r.activeConnections, r.readBytesPerSecond, r.writeBytesPerSecond, r.mtlsRate]), [
    ['default', 'db', 2, 1, 400, 100, 1],
    ['shop', 'cache', 1, 0, 5, 5, 0],
  ]);
  const shop = statsQuery(['tcp'], new URLSearchParams({ window: '6s', namespace: 'shop' }), s, now) as { rows: TcpStatsRow[] };
  assert.deepEqual(shop.rows.map((r) => r.service), ['cache']);
  assert.throws(() => statsQuery(['tcp'], new URLSearchParams({ window: '1h' }), s, now), (e: unknown) => e instanceof StatsQueryError && e.status === 400 && /query parameter window/.test(e.message));
  assert.throws(() => statsQuery(['tcp', 'x'], new URLSearchParams(), s, now), (e: unknown) => e instanceof StatsQueryError && e.status === 404);
});

test('GET /api/v1/stats/tcp/edges: source → destination from the side that knows both ends; idle edges left out', () => {
  const s = new StatsStore();
  const t0 = 1_000_000_000_000;
  for (let i = 1; i <= 5; i++) {
    // db has a proxy: its inbound side speaks (the caller's outbound view of db is not counted twice).
    s.ingest('default/db-1', { intervalMs: 2000, series: [], tcp: [{ d: 'inbound', src: 'web.default', dst: 'db.default', mtls: true, opened: 4, rx: 800, tx: 200, active: 2 }, { d: 'inbound', src: '', dst: 'db.default', mtls: false, opened: 0, rx: 0, tx: 0, active: 1 }] }, t0 + i * 2000);
    s.ingest('default/web-1', { intervalMs: 2000, series: [], tcp: [{ d: 'outbound', src: 'web.default', dst: 'db.default', mtls: true, opened: 4, rx: 800, tx: 200, active: 2 }, { d: 'outbound', src: 'web.default', dst: 'cache.shop', mtls: false, opened: 2, rx: 10, tx: 30, active: 0 }] }, t0 + i * 2000);
  }
  // queue's proxy does not name its tunnels' sources: its caller speaks for the edge; lone has no caller reporting.
  s.ingest('default/queue-1', { intervalMs: 2000, series: [], tcp: [{ d: 'inbound', src: '', dst: 'queue.default', mtls: true, opened: 0, rx: 0, tx: 0, active: 5 }, { d: 'inbound', src: '', dst: 'lone.default', mtls: false, opened: 3, rx: 0, tx: 0, active: 0 }] }, t0 + 8000);
  s.ingest('default/worker-1', { intervalMs: 2000, series: [], tcp: [{ d: 'outbound', src: 'worker.default', dst: 'queue.default', mtls: true, opened: 0, rx: 0, tx: 0, active: 4 }] }, t0 + 8000);
  s.ingest('default/old-1', { intervalMs: 2000, series: [], tcp: [{ d: 'outbound', src: 'old.default', dst: 'gone.default', mtls: false, opened: 1, rx: 1, tx: 1, active: 0 }] }, t0);
  const now = t0 + 12_500;
  const r = statsQuery(['tcp', 'edges'], new URLSearchParams({ window: '6s' }), s, now) as { window: string; edges: Array<{ source: string; destination: string; mtls: boolean; connectionsPerSecond: number; activeConnections: number; readBytesPerSecond: number; writeBytesPerSecond: number; connections: number }> };
  assert.equal(r.window, '6s');
  assert.deepEqual(r.edges.map((e) => [e.source, e.destination, e.mtls, e.connectionsPerSecond, e.activeConnections, e.readBytesPerSecond, e.writeBytesPerSecond, e.connections]), [
    ['(unmeshed)', 'default/db', false, 0, 1, 0, 0, 0],
    ['(unmeshed)', 'default/lone', false, 0.5, 0, 0, 0, 3],
    ['default/web', 'default/db', true, 2, 2, 400, 100, 12],
    ['default/web', 'shop/cache', false, 1, 0, 5, 15, 6],
    ['default/worker', 'default/queue', true, 0, 4, 0, 0, 0],
  ]);
});
