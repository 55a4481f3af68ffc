import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatResourceError, type ResourceError } from './errors.js';

const base: ResourceError = {
  file: 'mesh.yaml',
  line: 14,
  kind: 'HTTPRoute',
  namespace: 'default',
  name: 'echo',
  path: 'spec.rules[0].matches[0].path.value',
  message: 'must start with "/"',
};

test('formats file, line, kind/name, path and message', () => {
  assert.equal(formatResourceError(base), 'mesh.yaml:14 HTTPRoute/echo: spec.rules[0].matches[0].path.value: must start with "/"');
});

test('shows the namespace only when it is not default', () => {
  assert.equal(formatResourceError({ ...base, namespace: 'shop' }), 'mesh.yaml:14 HTTPRoute/shop/echo: spec.rules[0].matches[0].path.value: must start with "/"');
});

test('omits what is unknown', () => {
  assert.equal(formatResourceError({ ...base, line: null }), 'mesh.yaml HTTPRoute/echo: spec.rules[0].matches[0].path.value: must start with "/"');
  assert.equal(formatResourceError({ ...base, file: null, line: null }), 'HTTPRoute/echo: spec.rules[0].matches[0].path.value: must start with "/"');
  assert.equal(formatResourceError({ ...base, file: null }), 'line 14 HTTPRoute/echo: spec.rules[0].matches[0].path.value: must start with "/"');
  assert.equal(formatResourceError({ ...base, path: '' , message: 'workload not found' }), 'mesh.yaml:14 HTTPRoute/echo: workload not found');
  assert.equal(formatResourceError({ ...base, name: '' }), 'mesh.yaml:14 HTTPRoute: spec.rules[0].matches[0].path.value: must start with "/"');
  assert.equal(formatResourceError({ ...base, kind: '', name: '', path: '', message: 'Map keys must be unique' }), 'mesh.yaml:14: Map keys must be unique');
});
