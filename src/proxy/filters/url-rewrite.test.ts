import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rewritePath } from './url-rewrite.js';

test('ReplacePrefixMatch follows the Gateway API examples', () => {
  const rp = (prefix: string, value: string, path: string): string => rewritePath(path, { type: 'ReplacePrefixMatch', prefix, value });
  // Examples from the Gateway API HTTPPathModifier documentation.
  assert.equal(rp('/foo', '/xyz', '/foo/bar'), '/xyz/bar');
  assert.equal(rp('/foo', '/xyz/', '/foo/bar'), '/xyz/bar');
  assert.equal(rp('/foo/', '/xyz', '/foo/bar'), '/xyz/bar');
  assert.equal(rp('/foo/', '/xyz/', '/foo/bar'), '/xyz/bar');
  assert.equal(rp('/foo', '/xyz', '/foo'), '/xyz');
  assert.equal(rp('/foo', '/xyz/', '/foo'), '/xyz');
  assert.equal(rp('/foo', '', '/foo/bar'), '/bar');
  assert.equal(rp('/foo/', '', '/foo/bar'), '/bar');
  assert.equal(rp('/foo', '', '/foo'), '/');
  assert.equal(rp('/foo', '/', '/foo/bar'), '/bar');
  assert.equal(rp('/', '/api', '/users?id=1'), '/api/users?id=1');
});

test('ReplaceFullPath keeps the query', () => {
  assert.equal(rewritePath('/a/b?x=1', { type: 'ReplaceFullPath', value: '/c' }), '/c?x=1');
});
