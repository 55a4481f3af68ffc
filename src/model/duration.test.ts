import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from './duration.js';

test('parses GEP-2257 durations to milliseconds', () => {
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('10s'), 10_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h2m3s4ms'), 3_723_004);
  assert.equal(parseDuration('99999ms'), 99_999);
});

test('rejects anything else', () => {
  for (const bad of ['', '10', '1.5s', '-1s', '1d', '100000s', '1h1m1s1ms1h', ' 1s', '1 s', '1S', '1us']) {
    assert.throws(() => parseDuration(bad), /invalid duration/, bad);
  }
});
