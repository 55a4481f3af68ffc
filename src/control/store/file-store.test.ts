import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore, type StoreEvent } from './file-store.js';

const tempDir = (): string => mkdtempSync(join(tmpdir(), 'weft-store-'));

test('put, get, list, delete, and everything back after reopening', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  const seen: StoreEvent[] = [];
  s.watch((e) => seen.push(e));
  assert.deepEqual(await Promise.all([s.put('svc/b', { n: 2 }), s.put('svc/a', { n: 1 }), s.put('wl/x', 'x')]), [1, 2, 3]);
  assert.equal(await s.delete('wl/x'), 4);
  assert.deepEqual(s.list('svc/'), [['svc/a', { n: 1 }], ['svc/b', { n: 2 }]]);
  assert.deepEqual(seen.map((e) => `${e.rev}:${e.op}:${e.key}`), ['1:put:svc/b', '2:put:svc/a', '3:put:wl/x', '4:delete:wl/x']);
  s.close();
  const again = FileStore.open(dir);
  assert.equal(again.revision, 4);
  assert.deepEqual(again.list(), [['svc/a', { n: 1 }], ['svc/b', { n: 2 }]]);
  assert.equal(statSync(join(dir, 'store.log')).mode & 0o777, 0o600);
  again.close();
});

test('a torn last record (never acknowledged) is dropped; a corrupt record in the middle is refused', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir);
  await s.put('a', 1);
  s.close();
  appendFileSync(join(dir, 'store.log'), '{"rev":2,"op":"put","key":"b","val');
  const reopened = FileStore.open(dir);
  assert.deepEqual(reopened.list(), [['a', 1]]);
  assert.equal(await reopened.put('c', 3), 2, 'the torn bytes were cut, the log goes on cleanly');
  reopened.close();
  assert.equal(FileStore.open(dir).get('c'), 3);

  const bad = tempDir();
  const t = FileStore.open(bad);
  await t.put('a', 1);
  await t.put('b', 2);
  t.close();
  const log = readFileSync(join(bad, 'store.log'), 'utf8').replace('"key":"a"', '"key":"z"');
  writeFileSync(join(bad, 'store.log'), log);
  assert.throws(() => FileStore.open(bad), /checksum mismatch at byte 0/);
});

test('compaction writes a snapshot and keeps every value and the revision', async () => {
  const dir = tempDir();
  const s = FileStore.open(dir, { compactAfter: 10 });
  for (let i = 0; i < 25; i++) await s.put(`k${i % 7}`, i);
  await s.delete('k0');
  s.close();
  assert.ok(readFileSync(join(dir, 'store.log'), 'utf8').split('\n').length < 12, 'log was truncated');
  const again = FileStore.open(dir);
  assert.equal(again.revision, 26);
  assert.equal(again.get('k0'), undefined);
  assert.equal(again.get('k3'), 24);
  assert.equal(again.get('k6'), 20);
});
