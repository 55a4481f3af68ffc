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
