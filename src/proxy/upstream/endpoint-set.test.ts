import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Cluster, LoadBalancerType } from '../../model/snapshot.js';
import type { ProxyRequest } from '../message.js';
import { PeakEwma } from './ewma.js';
import { buildPicker, localityTiers, REGION_LABEL, ZONE_LABEL } from './endpoint-set.js';

interface Ep {
  name: string;
  active: number;
  weight: number;
  hashKey: string;
  latency: PeakEwma;
  healthy: boolean;
  endpoint: { labels: Record<string, string> };
}
/** An endpoint in `region/zone` (either may be left empty). */
const ep = (name: string, where: string, healthy = true): Ep => {
  const [region, zone] = where.split('/');
  const labels: Record<string, string> = {};
  if (region) labels[REGION_LABEL] = region;
  if (zone) labels[ZONE_LABEL] = zone;
  return { name, active: 0, weight: 1, hashKey: `${name}:80`, latency: new PeakEwma(), healthy, endpoint: { labels } };
};
const cluster = (loadBalancer: LoadBalancerType = 'RoundRobin', more: Partial<Cluster> = {}): Cluster => ({
  name: 'echo.default:80', service: 'echo', namespace: 'default', port: 80, protocol: 'HTTP', loadBalancer, connectTimeoutMs: 1000, endpoints: [], ...more,
});
const at = (region: string, zone?: string): Record<string, string> => ({ [REGION_LABEL]: region, ...(zone === undefined ? {} : { [ZONE_LABEL]: zone }) });
const req = (...headers: string[]): ProxyRequest => ({ method: 'GET', path: '/', authority: 'echo', headers, body: null });

/** Share of `n` picks per endpoint name, in percent. */
function shares(pick: () => Ep | null, n = 10_000): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const name = pick()!.name;
    out[name] = (out[name] ?? 0) + 100 / n;
  }
  return out;
}
const sum = (s: Record<string, number>, ...names: string[]): number => names.reduce((a, n) => a + (s[n] ?? 0), 0);

test('unhealthy endpoints take no traffic; when none is healthy, all do (panic mode)', () => {
  const e = [ep('a', ''), ep('b', '', false), ep('c', '')];
  const s = shares(buildPicker(cluster(), e).bind(null, null, ''));
  assert.equal(s.b, undefined);
  for (const x of e) x.healthy = false;
  const panic = shares(buildPicker(cluster(), e).bind(null, null, ''), 3000);
  assert.deepEqual(Object.keys(panic).sort(), ['a', 'b', 'c']);
});

test('locality: all traffic stays in the zone while it is healthy', () => {
  const e = [ep('a1', 'r1/a'), ep('a2', 'r1/a'), ep('b1', 'r1/b'), ep('c1', 'r2/c')];
  const s = shares(buildPicker(cluster('LeastRequest'), e, at('r1', 'a')).bind(null, null, ''));
  assert.equal(Math.round(sum(s, 'a1', 'a2')), 100);
  assert.ok(s.a1! > 40 && s.a2! > 40, JSON.stringify(s));
});

test('locality spill: the local zone 50 % healthy keeps 70 % (× 1.4), the rest goes to the region', () => {
  const e = [ep('a1', 'r1/a'), ep('a2', 'r1/a', false), ep('b1', 'r1/b'), ep('b2', 'r1/b'), ep('c1', 'r2/c')];
  const s = shares(buildPicker(cluster('RoundRobin'), e, at('r1', 'a')).bind(null, null, ''));
  console.log(`locality spill (zone 1/2 healthy): local ${sum(s, 'a1').toFixed(1)} %, region ${sum(s, 'b1', 'b2').toFixed(1)} %, remote ${sum(s, 'c1').toFixed(1)} %`);
  assert.ok(Math.abs(s.a1! - 70) <= 3, JSON.stringify(s));
  assert.ok(Math.abs(sum(s, 'b1', 'b2') - 30) <= 3, JSON.stringify(s));
  assert.equal(s.a2, undefined);
  assert.equal(s.c1, undefined, 'the region has room for the rest');
});

test('locality: the shares follow Envoy priority arithmetic, including normalisation', () => {
  const loads = (e: Ep[], local = at('r1', 'a')) => localityTiers(cluster(), e, local)?.map((t) => `${t.level}:${Math.round(t.load * 1000) / 10}`) ?? null;
  // Zone down entirely: the region (1/4 healthy → 35 %) and then elsewhere (65 %).
  const z = [ep('a1', 'r1/a', false), ...['b1', 'b2', 'b3'].map((n) => ep(n, 'r1/b', false)), ep('b4', 'r1/b'), ep('c1', 'r2/c')];
  assert.deepEqual(loads(z), ['1:35', '2:65']);
  // Everything thin: health 0.35 + 0.35 + 0.28 = 0.98 < 1, scaled up to fill 100 %.
  const thin = [ep('a1', 'r1/a'), ...[2, 3, 4].map((i) => ep(`a${i}`, 'r1/a', false)), ep('b1', 'r1/b'), ...[2, 3, 4].map((i) => ep(`b${i}`, 'r1/b', false)), ep('c1', 'r2/c'), ...[2, 3, 4, 5].map((i) => ep(`c${i}`, 'r2/c', false))];
  assert.deepEqual(loads(thin), ['0:35.7', '1:35.7', '2:28.6']);
  // Off: no zone or region on the proxy, locality disabled, or every endpoint in one tier.
  assert.equal(loads(z, {}), null);
  assert.equal(localityTiers(cluster('RoundRobin', { locality: { enabled: false, overprovisioningFactor: 140 } }), z, at('r1', 'a')), null);
  assert.equal(loads([ep('x', 'r9/x'), ep('y', 'r9/y')]), null);
  // A region label alone on the proxy: the region first. A zone label alone: compared alone.
  assert.deepEqual(loads([ep('b1', 'r1/b'), ep('c1', 'r2/c')], at('r1')), ['1:100']);
  assert.deepEqual(loads([ep('a1', '/a'), ep('c1', 'r2/c')], { [ZONE_LABEL]: 'a' }), ['0:100']);
  // A factor of 100 % (no overprovisioning): half healthy is half the traffic.
  const half = [ep('a1', 'r1/a'), ep('a2', 'r1/a', false), ep('b1', 'r1/b')];
  assert.deepEqual(localityTiers(cluster('RoundRobin', { locality: { enabled: true, overprovisioningFactor: 100 } }), half, at('r1', 'a'))?.map((t) => t.load), [0.5, 0.5]);
});

test('locality: traffic leaves an unhealthy zone and comes back when it recovers (pickers rebuilt)', () => {
  const e = [ep('a1', 'r1/a'), ep('b1', 'r1/b'), ep('b2', 'r1/b')];
  const local = at('r1', 'a');
  const c = cluster('LeastRequest');
  assert.equal(Math.round(shares(buildPicker(c, e, local).bind(null, null, ''), 2000).a1!), 100);
  e[0]!.healthy = false;
  assert.equal(shares(buildPicker(c, e, local).bind(null, null, ''), 2000).a1, undefined);
  e[0]!.healthy = true;
  assert.equal(Math.round(shares(buildPicker(c, e, local).bind(null, null, ''), 2000).a1!), 100);
});

test('hashing with locality: a key keeps its endpoint, and keys spread within the zone', () => {
  const e = [ep('a1', 'r1/a'), ep('a2', 'r1/a'), ep('a3', 'r1/a', false), ep('a4', 'r1/a', false), ep('b1', 'r1/b'), ep('b2', 'r1/b')];
  for (const type of ['RingHash', 'Maglev'] as const) {
    const c = cluster(type, { hash: { on: { header: { name: 'x-user' } }, size: type === 'Maglev' ? 65537 : 1024 } });
    const pick = buildPicker(c, e, at('r1', 'a'));
    let local = 0;
    const seen = new Set<string>();
    for (let u = 0; u < 2000; u++) {
      const first = pick(req('x-user', `u${u}`), '')!;
      seen.add(first.name);
      if (first.name.startsWith('a')) local++;
      for (let i = 0; i < 3; i++) assert.equal(pick(req('x-user', `u${u}`), ''), first, `${type}: key u${u}`);
    }
    console.log(`${type} with locality (zone 1/2 healthy): ${(local / 20).toFixed(1)} % of 2000 keys local`);
    assert.ok(Math.abs(local / 20 - 70) <= 4, `${type}: ${local / 20}`);
    assert.deepEqual([...seen].sort(), ['a1', 'a2', 'b1', 'b2']);
  }
});

test('weights apply within a tier', () => {
  const e = [ep('a1', 'r1/a'), { ...ep('a2', 'r1/a'), weight: 3 }, ep('b1', 'r1/b')];
  const s = shares(buildPicker(cluster('RoundRobin'), e, at('r1', 'a')).bind(null, null, ''));
  assert.ok(Math.abs(s.a1! - 25) <= 3 && Math.abs(s.a2! - 75) <= 3, JSON.stringify(s));
});
