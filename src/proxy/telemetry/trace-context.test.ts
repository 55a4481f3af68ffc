import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatTraceparent, newRequestId, newSpanId, newTraceId, parseB3Multi, parseB3Single, parseTraceparent } from './trace-context.js';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const S = '00f067aa0ba902b7';

describe('traceparent', () => {
  test('a valid version 00 header, sampled or not', () => {
    assert.deepEqual(parseTraceparent(`00-${T}-${S}-01`), { traceId: T, parentId: S, sampled: true });
    assert.deepEqual(parseTraceparent(`00-${T}-${S}-00`), { traceId: T, parentId: S, sampled: false });
    // Only bit 0 is "sampled"; other flag bits are not ours to judge.
    assert.deepEqual(parseTraceparent(`00-${T}-${S}-03`), { traceId: T, parentId: S, sampled: true });
  });

  test('bad input is refused whole', () => {
    const bad = [
      '',
      `00-${T}-${S}`, // no flags
      `00-${T}-${S}-1`, // short flags
      `00-${T}-${S}-01-extra`, // version 00 has nothing after the flags
      `00-${T.slice(1)}-${S}-01`, // short trace id
      `00-${T}0-${S}-01`, // long trace id
      `00-${T}-${S.slice(1)}-01`, // short parent id
      `00-${T.toUpperCase()}-${S}-01`, // upper case
      `00-${T}-${S.toUpperCase()}-01`,
      `00-${T}-${S}-0A`,
      `0A-${T}-${S}-01`,
      `ff-${T}-${S}-01`, // version ff is invalid
      `00-${'0'.repeat(32)}-${S}-01`, // all-zero trace id
      `00-${T}-${'0'.repeat(16)}-01`, // all-zero parent id
      `00_${T}-${S}-01`,
      `00-${T}-${S}-0g`,
      `00-${T.slice(0, 31)}x-${S}-01`,
    ];
    for (const v of bad) assert.equal(parseTraceparent(v), null, v);
  });

  test('a later version is read as 00 when its first fields have that shape', () => {
    assert.deepEqual(parseTraceparent(`01-${T}-${S}-01`), { traceId: T, parentId: S, sampled: true });
    assert.deepEqual(parseTraceparent(`01-${T}-${S}-01-what-comes-later`), { traceId: T, parentId: S, sampled: true });
    assert.equal(parseTraceparent(`01-${T}-${S}-01x`), null);
  });

  test('generation round-trips, ids are lowercase hex of the right length and never zero', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = newTraceId();
      const s = newSpanId();
      assert.match(t, /^[0-9a-f]{32}$/);
      assert.match(s, /^[0-9a-f]{16}$/);
      seen.add(s);
      assert.deepEqual(parseTraceparent(formatTraceparent(t, s, i % 2 === 0)), { traceId: t, parentId: s, sampled: i % 2 === 0 });
    }
    assert.equal(seen.size, 2000, 'span ids do not repeat');
  });

  test('request ids are version-4 UUIDs, distinct across pool refills at every offset', () => {
    const seen = new Set<string>();
    // 4096-byte pool, 16 bytes an id; trace ids (16) and span ids (8) taken between them shift the
    // offset, so refills happen with 0 and 8 bytes left over.
    for (let i = 0; i < 3000; i++) {
      const id = newRequestId();
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(id);
      if (i % 7 === 0) newTraceId();
      if (i % 5 === 0) newSpanId();
    }
    assert.equal(seen.size, 3000, 'request ids do not repeat');
  });
});

describe('B3', () => {
  test('single header: ids, sampling state, parent; 64-bit trace ids are padded', () => {
    assert.deepEqual(parseB3Single(`${T}-${S}`), { traceId: T, parentId: S, sampled: null });
    assert.deepEqual(parseB3Single(`${T}-${S}-1`), { traceId: T, parentId: S, sampled: true });
    assert.deepEqual(parseB3Single(`${T}-${S}-d-${S}`), { traceId: T, parentId: S, sampled: true });
    assert.deepEqual(parseB3Single(`${T}-${S}-0`), { traceId: T, parentId: S, sampled: false });
    assert.deepEqual(parseB3Single(`${T.slice(16)}-${S}-1`), { traceId: `${'0'.repeat(16)}${T.slice(16)}`, parentId: S, sampled: true });
    assert.deepEqual(parseB3Single('0'), { sampled: false });
    assert.deepEqual(parseB3Single('d'), { sampled: true });
  });

  test('single header: bad input', () => {
    for (const v of ['', 'x', `${T}`, `${T}-${S}-2`, `${T}-${S}-1-${S}-x`, `${T.toUpperCase()}-${S}-1`, `${T.slice(2)}-${S}`, `${'0'.repeat(32)}-${S}`, `${T}-${'0'.repeat(16)}`, `${T}-${S}-1-abc`]) {
      assert.equal(parseB3Single(v), null, v);
    }
  });

  test('multi headers', () => {
    assert.deepEqual(parseB3Multi(T, S, '1', undefined), { traceId: T, parentId: S, sampled: true });
    assert.deepEqual(parseB3Multi(T, S, undefined, undefined), { traceId: T, parentId: S, sampled: null });
    assert.deepEqual(parseB3Multi(T, S, '0', '1'), { traceId: T, parentId: S, sampled: true }, 'debug wins');
    assert.deepEqual(parseB3Multi(undefined, undefined, '0', undefined), { sampled: false });
    assert.equal(parseB3Multi(T, undefined, '1', undefined), null);
    assert.equal(parseB3Multi(T, S, 'yes', undefined), null);
    assert.equal(parseB3Multi('abc', S, '1', undefined), null);
    assert.equal(parseB3Multi(undefined, undefined, undefined, undefined), null);
  });
});
