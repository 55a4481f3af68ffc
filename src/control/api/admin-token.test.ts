import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdminToken } from './admin-token.js';

test('made once with mode 0600, then read back; only its own bearer header is accepted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-admin-'));
  const first = AdminToken.loadOrCreate(dir);
  assert.ok(first.created !== null, 'the first start makes it');
  assert.equal(statSync(join(dir, 'admin-token')).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(dir, 'admin-token'), 'utf8'), `${first.token}\n`);
  const again = AdminToken.loadOrCreate(dir);
  assert.equal(again.created, null, 'a restart shows nothing');
  assert.equal(again.token, first.token);
  assert.ok(again.accepts(`Bearer ${first.token}`));
  assert.ok(again.accepts(`bearer  ${first.token} `), 'the scheme is case-insensitive (RFC 9110)');
  for (const bad of [undefined, '', first.token, `Basic ${first.token}`, `Bearer ${first.token}x`, `Bearer ${first.token.slice(0, -1)}`, `Bearer ${first.token} extra`]) {
    assert.equal(again.accepts(bad), false, String(bad));
  }
});

test('a token file others can read is tightened; a file that is not a token is refused with its name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-admin-'));
  const t = AdminToken.loadOrCreate(dir);
  chmodSync(join(dir, 'admin-token'), 0o644);
  AdminToken.loadOrCreate(dir);
  assert.equal(statSync(join(dir, 'admin-token')).mode & 0o777, 0o600);
  assert.ok(t.token.startsWith('weft-admin.'));
  writeFileSync(join(dir, 'admin-token'), 'hunter2\n');
  assert.throws(() => AdminToken.loadOrCreate(dir), /admin-token: not a Weft admin token/);
});
