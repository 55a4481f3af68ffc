import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RouteMatch } from '../../model/snapshot.js';
import type { ProxyRequest } from '../message.js';
import { buildMatcher, pathPart } from './match.js';

const req = (path: string, method = 'GET', headers: string[] = []): ProxyRequest => ({ method, path, authority: 'echo', headers, body: null });
const m = (over: Partial<RouteMatch>): RouteMatch => ({ path: { type: 'PathPrefix', value: '/' }, method: null, headers: [], queryParams: [], ...over });
const run = (match: RouteMatch, r: ProxyRequest): boolean => {
  const p = pathPart(r.path);
  return buildMatcher(match)(r, p, new URLSearchParams(r.path.slice(p.length + 1)));
};

test('PathPrefix matches whole segments, ignoring a trailing slash in the prefix', () => {
  for (const value of ['/abc', '/abc/']) {
    const match = m({ path: { type: 'PathPrefix', value } });
    assert.equal(run(match, req('/abc')), true);
    assert.equal(run(match, req('/abc/')), true);
    assert.equal(run(match, req('/abc/def?x=1')), true);
    assert.equal(run(match, req('/abcd')), false);
  }
  assert.equal(run(m({}), req('/anything')), true);
});

test('Exact and RegularExpression paths match the whole path, not the query', () => {
  assert.equal(run(m({ path: { type: 'Exact', value: '/a' } }), req('/a?q=1')), true);
  assert.equal(run(m({ path: { type: 'Exact', value: '/a' } }), req('/a/')), false);
  const re = m({ path: { type: 'RegularExpression', value: '/v[0-9]+/.*' } });
  assert.equal(run(re, req('/v2/items')), true);
  assert.equal(run(re, req('/x/v2/items')), false, 'anchored at the start');
});

test('method, header and query conditions all have to hold', () => {
  const match = m({
    method: 'POST',
    headers: [{ name: 'x-canary', type: 'Exact', value: '1' }, { name: 'x-user', type: 'RegularExpression', value: 'a.*' }],
    queryParams: [{ name: 'debug', type: 'Exact', value: 'on' }],
  });
  const h = ['x-canary', '1', 'x-user', 'alice'];
  assert.equal(run(match, req('/p?debug=on', 'POST', h)), true);
  assert.equal(run(match, req('/p?debug=on', 'GET', h)), false);
  assert.equal(run(match, req('/p?debug=off', 'POST', h)), false);
  assert.equal(run(match, req('/p?debug=on', 'POST', ['x-canary', '1', 'x-user', 'bob'])), false);
  assert.equal(run(match, req('/p?debug=on', 'POST', ['x-user', 'alice'])), false);
});

test('a header sent several times is matched on its values joined; cookie crumbs with "; " (cookie routing)', () => {
  const byCookie = m({ headers: [{ name: 'cookie', type: 'RegularExpression', value: '(.*; )?canary=1(;.*)?' }] });
  assert.equal(run(byCookie, req('/', 'GET', ['cookie', 'session=abc; canary=1'])), true);
  // HTTP/2 clients may send each cookie as a field of its own.
  assert.equal(run(byCookie, req('/', 'GET', ['cookie', 'session=abc', 'cookie', 'canary=1', 'cookie', 'theme=dark'])), true);
  assert.equal(run(byCookie, req('/', 'GET', ['cookie', 'session=abc', 'cookie', 'canary=10'])), false);
  assert.equal(run(byCookie, req('/', 'GET', [])), false);
  const exact = m({ headers: [{ name: 'x-env', type: 'Exact', value: 'a, b' }] });
  assert.equal(run(exact, req('/', 'GET', ['x-env', 'a', 'x-env', 'b'])), true);
  assert.equal(run(exact, req('/', 'GET', ['x-env', 'a'])), false);
});
