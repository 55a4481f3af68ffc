import { test } from 'node:test';
import assert from 'node:assert/strict';
import { balancers } from './balancer.js';

const eps = (...active: number[]): Array<{ id: number; active: number }> => active.map((a, id) => ({ id, active: a }));

test('round robin visits every endpoint in turn', () => {
  const e = eps(0, 0, 0);
  const pick = balancers.RoundRobin(e);
  const seen = Array.from({ length: 9 }, () => pick(null, '')!.id);
  for (let i = 3; i < 9; i++) assert.equal(seen[i], seen[i - 3]);
  assert.deepEqual(new Set(seen.slice(0, 3)), new Set([0, 1, 2]));
});

test('least request (P2C) never picks the busiest of two, and spreads over the rest', () => {
  const e = eps(5, 0, 0, 0);
  const pick = balancers.LeastRequest(e);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) counts[pick(null, '')!.id]!++;
  // Two distinct endpoints are drawn, so endpoint 0 always meets a less busy one.
  assert.equal(counts[0], 0);
  for (let i = 1; i < 4; i++) assert.ok(counts[i]! > 1000, `endpoint ${i}: ${counts[i]}`);
  assert.equal(balancers.LeastRequest(eps(3))(null, '')!.id, 0);
});

test('balancers over no endpoints pick nothing', () => {
  assert.equal(balancers.RoundRobin([])(null, ''), null);
  assert.equal(balancers.LeastRequest([])(null, ''), null);
});
