import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Cluster } from '../../model/snapshot.js';
import type { ProxyRequest } from '../message.js';
import { balancers, maglev, ringHash, smoothSchedule, type BalancerConfig } from './balancer.js';
import { PeakEwma } from './ewma.js';
import { hash32 } from './hash.js';

interface Ep {
  id: number;
  active: number;
  weight: number;
  hashKey: string;
  latency: PeakEwma;
}
const ep = (id: number, active = 0, weight = 1): Ep => ({ id, active, weight, hashKey: `10.0.0.${id}:8080`, latency: new PeakEwma() });
const eps = (...active: number[]): Ep[] => active.map((a, id) => ep(id, a));
const weighted = (...weights: number[]): Ep[] => weights.map((w, id) => ep(id, 0, w));
const cfg = (loadBalancer: Cluster['loadBalancer'], more: Partial<BalancerConfig> = {}): BalancerConfig => ({ loadBalancer, ...more });
const req = (...headers: string[]): ProxyRequest => ({ method: 'GET', path: '/', authority: 'echo', headers, body: null });

/** Picks `n` times and counts per endpoint id. */
function counts(pick: () => Ep | null, size: number, n = 10_000): number[] {
  const out = new Array<number>(size).fill(0);
  for (let i = 0; i < n; i++) out[pick()!.id]!++;
  return out;
}
const share = (c: number[], i: number): number => (100 * c[i]!) / c.reduce((a, b) => a + b, 0);

test('round robin visits every endpoint in turn', () => {
  const pick = balancers.RoundRobin(eps(0, 0, 0), cfg('RoundRobin'));
  const seen = Array.from({ length: 9 }, () => pick(null, '')!.id);
  for (let i = 3; i < 9; i++) assert.equal(seen[i], seen[i - 3]);
  assert.deepEqual(new Set(seen.slice(0, 3)), new Set([0, 1, 2]));
});

test('weighted round robin: weights 1:3 give 25 %/75 %, interleaved (smooth), over 10k picks', () => {
  const pick = balancers.RoundRobin(weighted(1, 3), cfg('RoundRobin'));
  const c = counts(() => pick(null, ''), 2);
  console.log(`weighted round robin 1:3: ${share(c, 0).toFixed(1)} % / ${share(c, 1).toFixed(1)} %`);
  assert.ok(Math.abs(share(c, 0) - 25) <= 3, `${share(c, 0)}`);
  // Smooth: every window of 4 picks has the light endpoint exactly once (no bursts of the heavy one).
  const window = Array.from({ length: 4 }, () => pick(null, '')!.id);
  assert.equal(window.filter((id) => id === 0).length, 1);
  assert.deepEqual([...smoothSchedule([2, 4, 6])!], [2, 1, 0, 2, 1, 2], 'weights divided by their gcd, nginx order');
});

test('least request (P2C) never picks the busiest of two, and spreads over the rest', () => {
  const pick = balancers.LeastRequest(eps(5, 0, 0, 0), cfg('LeastRequest'));
  const c = counts(() => pick(null, ''), 4, 4000);
  // Two distinct endpoints are drawn, so endpoint 0 always meets a less busy one.
  assert.equal(c[0], 0);
  for (let i = 1; i < 4; i++) assert.ok(c[i]! > 1000, `endpoint ${i}: ${c[i]}`);
  assert.equal(balancers.LeastRequest(eps(3), cfg('LeastRequest'))(null, '')!.id, 0);
});

test('least request divides requests in flight by weight; idle endpoints share by weight (1:3 → 25/75 ±3)', () => {
  const c = counts(() => balancers.LeastRequest(weighted(1, 3), cfg('LeastRequest'))(null, ''), 2);
  console.log(`least request idle 1:3: ${share(c, 0).toFixed(1)} % / ${share(c, 1).toFixed(1)} %`);
  assert.ok(Math.abs(share(c, 0) - 25) <= 3, `${share(c, 0)}`);
  // 4 in flight on weight 4 (1 each) beats 2 on weight 1.
  const loaded = [ep(0, 4, 4), ep(1, 2, 1)];
  const pick = balancers.LeastRequest(loaded, cfg('LeastRequest'));
  assert.deepEqual(counts(() => pick(null, ''), 2, 1000), [1000, 0]);
});

test('peak EWMA: a latency peak counts at once, lower ones are averaged in and the estimate decays', () => {
  const e = new PeakEwma(30, 0);
  e.observe(200, 100, 10_000);
  assert.equal(e.current(100, 10_000), 200, 'jumps to the peak');
  e.observe(10, 10_100, 10_000); // 10 s later: weight 1 - e^-1 ≈ 0.63 to the new value
  assert.ok(Math.abs(e.current(10_100, 10_000) - (200 * Math.exp(-1) + 10 * (1 - Math.exp(-1)))) < 1e-9);
  const before = e.current(10_100, 10_000);
  assert.ok(Math.abs(e.current(20_100, 10_000) - before * Math.exp(-1)) < 1e-9, 'unobserved, it decays towards zero (tried again)');
});

test('peak EWMA prefers the fast endpoint, until its load outweighs the latency', () => {
  const e = eps(0, 0, 0);
  const now = performance.now();
  e[0]!.latency.observe(100, now, 10_000);
  e[1]!.latency.observe(30, now, 10_000);
  e[2]!.latency.observe(30, now, 10_000);
  // Observe 10 ms several times on endpoint 1 (averaged down from its 30 ms start).
  for (let i = 1; i <= 5; i++) e[1]!.latency.observe(10, now + i * 2000, 10_000);
  const pick = balancers.PeakEWMA(e, cfg('PeakEWMA', { ewmaDecayMs: 10_000 }));
  const c = counts(() => pick(null, ''), 3, 3000);
  console.log(`peak EWMA picks (100 ms / ~16 ms / 30 ms): ${c.join(' / ')}`);
  assert.equal(c[0], 0, 'the slow endpoint always loses its pair');
  assert.ok(c[1]! > c[2]! && c[1]! >= 1900, `fastest gets its pairs: ${c}`);
  // Load counts: 20 requests in flight on the fast ones make the idle slow one cheaper (100 × 1 < 16 × 21).
  e[1]!.active = 20;
  e[2]!.active = 20;
  const loaded = counts(() => pick(null, ''), 3, 3000);
  assert.ok(loaded[0]! >= 1900, `${loaded}`);
});

test('ring hash: a key always lands on one endpoint; removing one of 10 remaps only its keys (about 1/10)', () => {
  const all = eps(0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const before = ringHash(all, 1024);
  const after = ringHash(all.filter((e) => e.id !== 3), 1024);
  let moved = 0;
  const per = new Array<number>(10).fill(0);
  for (let k = 0; k < 10_000; k++) {
    const h = hash32(`user-${k}`);
    const a = before(h)!;
    const b = after(h)!;
    per[a.id]!++;
    assert.equal(before(h), a, 'stable');
    if (a !== b) {
      moved++;
      assert.equal(a.id, 3, 'only keys of the removed endpoint move');
    }
  }
  console.log(`ring hash: ${(moved / 100).toFixed(1)} % of 10k keys moved when 1 of 10 endpoints left; shares ${per.map((x) => (x / 100).toFixed(1)).join(' ')} %`);
  assert.ok(moved > 500 && moved < 1600, `${moved}`);
  for (const x of per) assert.ok(x > 500 && x < 1600, `share ${x}`);
});

test('ring hash and Maglev give weight-proportional shares (1:3 → 25/75 ±3)', () => {
  for (const [name, build] of [['ring hash', (e: Ep[]) => ringHash(e, 1024)], ['maglev', (e: Ep[]) => maglev(e, 65537)]] as const) {
    const lookup = build(weighted(1, 3));
    const c = counts(() => lookup((Math.random() * 4294967296) >>> 0), 2);
    console.log(`${name} 1:3: ${share(c, 0).toFixed(1)} % / ${share(c, 1).toFixed(1)} %`);
    assert.ok(Math.abs(share(c, 0) - 25) <= 3, `${name}: ${share(c, 0)}`);
  }
});

test('maglev: stable, even, and removing one of 10 endpoints remaps about 1/10 of keys', () => {
  const all = eps(0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const before = maglev(all, 65537);
  const after = maglev(all.filter((e) => e.id !== 7), 65537);
  const again = maglev(all, 65537);
  let moved = 0;
  let movedOthers = 0;
  const per = new Array<number>(10).fill(0);
  for (let k = 0; k < 10_000; k++) {
    const h = hash32(`user-${k}`);
    const a = before(h)!;
    per[a.id]!++;
    assert.equal(again(h), a, 'the same table from the same endpoints');
    if (a !== after(h)) {
      moved++;
      if (a.id !== 7) movedOthers++;
    }
  }
  console.log(`maglev: ${(moved / 100).toFixed(1)} % of 10k keys moved when 1 of 10 endpoints left (${(movedOthers / 100).toFixed(1)} % not of the removed one); shares ${per.map((x) => (x / 100).toFixed(1)).join(' ')} %`);
  assert.ok(moved > 700 && moved < 1500, `${moved}`);
  assert.ok(movedOthers < 400, `${movedOthers}`);
  for (const x of per) assert.ok(x > 850 && x < 1150, `share ${x}`);
});

test('hashing balancers key on a header, a cookie or the client address; without the key, anywhere', () => {
  const e = eps(0, 0, 0);
  for (const type of ['RingHash', 'Maglev'] as const) {
    const byHeader = balancers[type](e, cfg(type, { hash: { on: { header: { name: 'x-user' } }, size: type === 'Maglev' ? 65537 : 1024 } }));
    const byCookie = balancers[type](e, cfg(type, { hash: { on: { cookie: { name: 'sid' } }, size: type === 'Maglev' ? 65537 : 1024 } }));
    const bySource = balancers[type](e, cfg(type, { hash: { on: { sourceAddress: true }, size: type === 'Maglev' ? 65537 : 1024 } }));
    const users = new Set<number>();
    for (let u = 0; u < 30; u++) {
      const first = byHeader(req('x-user', `u${u}`), '')!;
      users.add(first.id);
      for (let i = 0; i < 20; i++) assert.equal(byHeader(req('accept', '*/*', 'x-user', `u${u}`), '127.0.0.1'), first);
      const c = byCookie(req('cookie', `a=1; sid=s${u}; b=2`), '')!;
      assert.equal(byCookie(req('cookie', 'a=2', 'cookie', `sid="s${u}"`), ''), c, 'split cookie fields, quoted value');
      assert.equal(bySource(null, `10.1.0.${u}`), bySource(req(), `10.1.0.${u}`));
    }
    assert.equal(users.size, 3, `${type}: different keys spread`);
    const noKey = counts(() => byHeader(req('x-other', '1'), '')!, 3, 3000);
    assert.ok(noKey.every((x) => x > 700), `${type}: a request without the key goes anywhere: ${noKey}`);
    assert.equal(byHeader(null, '10.0.0.1') === null, false, 'a TCP connection (no headers) still gets an endpoint');
  }
});

test('the hash is stable across versions (FNV-1a 32 + fmix32)', () => {
  // Pinned: a change here sends every key to another endpoint after an upgrade.
  assert.deepEqual([hash32(''), hash32('user-1'), hash32('10.0.0.1:8080')], [2872998923, 2005895916, 3150401971]);
  assert.notEqual(hash32('a'), hash32('b'));
  assert.equal(hash32('xa-b', 1, 4), hash32('a-b'), 'a range hashes like the substring');
});

test('balancers over no endpoints pick nothing', () => {
  for (const type of ['RoundRobin', 'LeastRequest', 'PeakEWMA', 'RingHash', 'Maglev'] as const) {
    assert.equal(balancers[type]([], cfg(type, { hash: { on: { sourceAddress: true }, size: 1024 } }))(null, '1.2.3.4'), null, type);
  }
});
