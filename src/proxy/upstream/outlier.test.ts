import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MeshError } from '../../core/errors.js';
import type { OutlierDetection } from '../../model/snapshot.js';
import { EndpointHealth } from './health-state.js';
import { OutlierDetector, type EjectionReason } from './outlier.js';

const base: OutlierDetection = {
  consecutive5xx: 3,
  consecutiveGatewayErrors: 0,
  consecutiveConnectFailures: 2,
  intervalMs: 60_000,
  baseEjectionTimeMs: 1000,
  maxEjectionTimeMs: 2500,
  maxEjectionPercent: 10,
  successRate: null,
};

function setup(n: number, config: Partial<OutlierDetection> = {}) {
  let t = 1_000_000;
  const eps = Array.from({ length: n }, (_, i) => new EndpointHealth({ workload: `default/w${i}`, address: '127.0.0.1', port: 1000 + i, appPort: 1000 + i, proxied: false, identity: '', labels: {} }));
  const events: Array<[EjectionReason, boolean]> = [];
  let changes = 0;
  const d = new OutlierDetector({ ...base, ...config }, new Set(eps), { changed: () => changes++, ejection: (r, e) => events.push([r, e]) }, () => t);
  for (const e of eps) e.outlier = d;
  return { d, eps, events, changes: () => changes, advance: (ms: number) => (t += ms), now: () => t };
}

describe('outlier detection', () => {
  test('N 5xx in a row eject at once; a success in between starts the count again', () => {
    const { d, eps, events, changes, now } = setup(3);
    const [a] = eps;
    a!.response(503);
    a!.response(500);
    a!.response(200);
    a!.response(500);
    a!.response(500);
    assert.equal(a!.healthy, true);
    a!.response(502);
    assert.equal(a!.healthy, false);
    assert.equal(a!.ejectedUntil, now() + 1000);
    assert.deepEqual(events, [['consecutive_5xx', true]]);
    assert.equal(changes(), 1);
    d.close();
  });

  test('connect failures eject after their own threshold; other errors do not count', () => {
    const { d, eps, events } = setup(3);
    const [a] = eps;
    a!.failure(new MeshError('DENIED', 'no'));
    a!.failure(new Error('client gone'));
    a!.failure(new MeshError('UPSTREAM_CONNECT_FAILURE', 'refused'));
    assert.equal(a!.healthy, true);
    a!.failure(new MeshError('UPSTREAM_TLS_FAILURE', 'bad cert'));
    assert.equal(a!.healthy, false);
    assert.deepEqual(events, [['consecutive_connect_failures', true]]);
    d.close();
  });

  test('gateway errors when enabled: 502/503/504 and resets, not a 500', () => {
    const { d, eps, events } = setup(3, { consecutive5xx: 0, consecutiveGatewayErrors: 2 });
    const [a] = eps;
    a!.response(503);
    a!.response(500);
    a!.failure(new MeshError('UPSTREAM_RESET', 'reset'));
    assert.equal(a!.healthy, true);
    a!.response(504);
    assert.equal(a!.healthy, false);
    assert.deepEqual(events, [['consecutive_gateway_errors', true]]);
    d.close();
  });

  test('maxEjectionPercent: at least one, then the percentage, rounded down; refusals are reported', () => {
    const { d, eps, events } = setup(5, { maxEjectionPercent: 10 });
    for (const e of eps.slice(0, 2)) for (let i = 0; i < 3; i++) e.response(500);
    assert.deepEqual(eps.map((e) => e.healthy), [false, true, true, true, true]);
    assert.deepEqual(events, [['consecutive_5xx', true], ['consecutive_5xx', false]]);
    d.close();
    const half = setup(5, { maxEjectionPercent: 50 });
    for (const e of half.eps) for (let i = 0; i < 3; i++) e.response(500);
    assert.equal(half.d.ejectedCount, 2);
    half.d.close();
    const none = setup(5, { maxEjectionPercent: 0 });
    for (let i = 0; i < 3; i++) none.eps[0]!.response(500);
    assert.equal(none.d.ejectedCount, 0);
    none.d.close();
  });

  test('each ejection lasts base × ejections, capped; a tick in service forgets one', () => {
    const { d, eps, now } = setup(1, { baseEjectionTimeMs: 1000, maxEjectionTimeMs: 2500, maxEjectionPercent: 100 });
    const [a] = eps;
    const lengths: number[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 3; i++) a!.response(500);
      lengths.push(a!.ejectedUntil - now());
      d.forget(a!); // as if the time were over
    }
    assert.deepEqual(lengths, [1000, 2000, 2500, 2500]);
    assert.equal(a!.ejections, 4);
    d.tick();
    assert.equal(a!.ejections, 3);
    d.close();
  });

  test('an ejected endpoint comes back when its time is over', async () => {
    const { d, eps, changes } = setup(2, { baseEjectionTimeMs: 30 });
    for (let i = 0; i < 3; i++) eps[0]!.response(500);
    assert.equal(eps[0]!.healthy, false);
    // Outcomes while ejected (traffic in flight, or panic mode) do not count.
    for (let i = 0; i < 10; i++) eps[0]!.response(500);
    assert.equal(eps[0]!.ejections, 1);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(eps[0]!.healthy, true);
    assert.equal(changes(), 2);
    d.close();
  });

  test('success rate: below mean − factor × stdev is ejected when enough hosts have enough volume', () => {
    const { d, eps, events } = setup(5, { consecutive5xx: 0, maxEjectionPercent: 100, successRate: { minimumHosts: 5, requestVolume: 10, stdevFactor: 1000 } });
    eps.forEach((e, i) => {
      for (let k = 0; k < 20; k++) e.response(i === 4 && k % 2 === 0 ? 500 : 200);
    });
    d.tick();
    assert.deepEqual(eps.map((e) => e.healthy), [true, true, true, true, false]);
    assert.deepEqual(events, [['success_rate', true]]);
    // Too few requests: nothing is compared.
    for (const e of eps.slice(0, 4)) for (let k = 0; k < 5; k++) e.response(500);
    d.tick();
    assert.equal(d.ejectedCount, 1);
    d.close();
  });
});
