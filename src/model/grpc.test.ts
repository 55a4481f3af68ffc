import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapeRegExp, grpcPathMatch } from './grpc.js';
import type { GRPCMethodMatch } from './resources.js';

/** Whether a compiled path match takes a path, as the proxy evaluates it (whole-value regular expressions, whole-segment prefixes). */
function takes(m: GRPCMethodMatch | undefined, path: string): boolean {
  const p = grpcPathMatch(m);
  if (p.type === 'Exact') return path === p.value;
  if (p.type === 'RegularExpression') return new RegExp(`^(?:${p.value})$`).test(path);
  const v = p.value.length > 1 && p.value.endsWith('/') ? p.value.slice(0, -1) : p.value;
  return v === '/' || (path.startsWith(v) && (path.length === v.length || path[v.length] === '/'));
}

test('Exact service and method: an exact path; service only: a prefix; method only: a regular expression', () => {
  assert.deepEqual(grpcPathMatch(undefined), { type: 'PathPrefix', value: '/' });
  assert.deepEqual(grpcPathMatch({ service: 'shop.v1.Catalog', method: 'GetItem' }), { type: 'Exact', value: '/shop.v1.Catalog/GetItem' });
  assert.deepEqual(grpcPathMatch({ type: 'Exact', service: 'shop.v1.Catalog' }), { type: 'PathPrefix', value: '/shop.v1.Catalog/' });
  assert.deepEqual(grpcPathMatch({ method: 'GetItem' }), { type: 'RegularExpression', value: '^/[^/]+/GetItem$' });
  assert.deepEqual(grpcPathMatch({ service: '', method: 'GetItem' }), grpcPathMatch({ method: 'GetItem' }), 'an empty name is any');
});

test('Exact matches take exactly the calls they name', () => {
  const svc = { service: 'shop.v1.Catalog' };
  assert.equal(takes(svc, '/shop.v1.Catalog/GetItem'), true);
  assert.equal(takes(svc, '/shop.v1.CatalogAdmin/GetItem'), false);
  assert.equal(takes(svc, '/shopxv1.Catalog/GetItem'), false, 'the dot is literal');
  const method = { method: 'Get' };
  assert.equal(takes(method, '/a.B/Get'), true);
  assert.equal(takes(method, '/a.B/GetItem'), false);
  assert.equal(takes(method, '/Get'), false);
  assert.equal(takes(method, '/a/b/Get'), false);
  assert.equal(takes({ service: 'a.B', method: 'Get' }, '/a.B/Get'), true);
  assert.equal(takes({ service: 'a.B', method: 'Get' }, '/a.B/Get/'), false);
});

test('RegularExpression: each pattern matches a whole name, never across the "/"', () => {
  const both = { type: 'RegularExpression', service: 'shop\\.v[0-9]+\\..*', method: 'Get|List' } as const;
  assert.deepEqual(grpcPathMatch(both), { type: 'RegularExpression', value: '^(?=/[^/]+/[^/]+$)/(?:shop\\.v[0-9]+\\..*)/(?:Get|List)$' });
  assert.equal(takes(both, '/shop.v1.Catalog/Get'), true);
  assert.equal(takes(both, '/shop.v12.Orders/List'), true);
  assert.equal(takes(both, '/shop.v1.Catalog/GetItem'), false, 'alternatives stay inside their group');
  assert.equal(takes(both, '/shop.v1.Catalog/Get/List'), false);
  const service = { type: 'RegularExpression', service: '.*Catalog' } as const;
  assert.equal(takes(service, '/shop.v1.Catalog/Anything'), true);
  assert.equal(takes(service, '/a/b.Catalog/Anything'), false, 'a pattern does not swallow a "/"');
  assert.equal(takes({ type: 'RegularExpression', method: 'Get.*' }, '/x.Y/GetItem'), true);
  assert.equal(takes({ type: 'RegularExpression', method: 'Get.*' }, '/x.Y/ListItems'), false);
});

test('anchors written out of habit are dropped; an escaped "$" stays', () => {
  assert.equal(grpcPathMatch({ type: 'RegularExpression', service: '^shop\\..*$', method: '^Get$' }).value, '^(?=/[^/]+/[^/]+$)/(?:shop\\..*)/(?:Get)$');
  assert.equal(takes({ type: 'RegularExpression', service: '^shop\\..*$' }, '/shop.A/B'), true);
  assert.equal(grpcPathMatch({ type: 'RegularExpression', method: 'a\\$' }).value, '^(?=/[^/]+/[^/]+$)/[^/]+/(?:a\\$)$');
  assert.equal(grpcPathMatch({ type: 'RegularExpression', method: 'a\\\\$' }).value, '^(?=/[^/]+/[^/]+$)/[^/]+/(?:a\\\\)$');
});

test('escapeRegExp', () => {
  const s = 'a.b*c+d?e^f$g{h}i(j)k|l[m]n\\o';
  assert.equal(new RegExp(`^${escapeRegExp(s)}$`).test(s), true);
  assert.equal(escapeRegExp('shop.v1'), 'shop\\.v1');
});
