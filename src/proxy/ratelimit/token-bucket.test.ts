import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TokenBuckets } from './token-bucket.js';

describe('token bucket', () => {
  test('starts full: burst requests pass at once, the next waits for one token', () => {
    const b = new TokenBuckets(10, 1000, 5); // 10 per second = one token per 100 ms, burst 5
    for (let i = 0; i < 5; i++) assert.equal(b.take('k', 0), 0);
    assert.equal(b.take('k', 0), 100);
    assert.equal(b.take('k', 40), 60, 'part of a token has come back');
    assert.equal(b.take('k', 100), 0, 'a whole token after 100 ms');
    assert.equal(b.take('k', 100), 100);
  });

  test('refills at requests/per, never above burst', () => {
    const b = new TokenBuckets(2, 1000, 2);
    assert.equal(b.take('k', 0), 0);
    assert.equal(b.take('k', 0), 0);
    assert.equal(b.take('k', 0), 500);
    // Ten seconds idle refill only to burst (2), not 20.
    let passed = 0;
    for (let i = 0; i < 5; i++) if (b.take('k', 10_000) === 0) passed++;
    assert.equal(passed, 2);
  });

  test('over a long run the rate holds: N per second', () => {
    const b = new TokenBuckets(50, 1000, 50);
    let passed = 0;
    // A request every millisecond for 10 s: the burst, then 50 per second.
    for (let t = 0; t < 10_000; t++) if (b.take('k', t) === 0) passed++;
    assert.ok(passed >= 50 + 499 && passed <= 50 + 500, String(passed));
  });

  test('keys have separate buckets', () => {
    const b = new TokenBuckets(1, 1000, 1);
    assert.equal(b.take('a', 0), 0);
    assert.notEqual(b.take('a', 0), 0);
    assert.equal(b.take('b', 0), 0);
  });

  test('the number of keys is bounded: refilled buckets go first, then the oldest tenth', () => {
    const b = new TokenBuckets(1, 1000, 1, 100);
    for (let i = 0; i < 100; i++) b.take(`k${i}`, 0);
    assert.equal(b.size, 100);
    b.take('new', 500); // none has refilled yet: the oldest ten are dropped
    assert.equal(b.size, 91);
    assert.equal(b.take('k50', 500), 500, 'a recent key keeps its (empty) bucket');
    for (let i = 0; i < 9; i++) b.take(`m${i}`, 600);
    assert.equal(b.size, 100);
    b.take('later', 5000); // all refilled: all dropped, only the new one stays
    assert.equal(b.size, 1);
  });
});
