import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuthorizationPolicyConfig, AuthorizationRuleConfig, InboundAuthorization } from '../../model/snapshot.js';
import { buildAuthorizer, globRegExp, namespaceOf, type Decision, type HttpAuthzRequest } from './authorize.js';

const CATALOG = 'spiffe://cluster.local/ns/default/sa/catalog';
const SHOP_API = 'spiffe://cluster.local/ns/shop/sa/api';
const TEAM_A = 'spiffe://cluster.local/ns/team-a/sa/web';

type RuleSpec = Partial<AuthorizationRuleConfig>;
const rule = (r: RuleSpec = {}): AuthorizationRuleConfig => ({ from: null, to: null, when: [], ...r });
const from = (f: { identities?: string[]; namespaces?: string[] }) => ({ identities: f.identities ?? null, namespaces: f.namespaces ?? null });
const to = (o: { appPorts?: number[]; methods?: string[]; paths?: string[] }) => ({ appPorts: o.appPorts ?? null, methods: o.methods ?? null, paths: o.paths ?? null });
const header = (name: string, c: { values?: string[]; notValues?: string[] }) => ({ header: name, values: c.values ?? null, notValues: c.notValues ?? null });

const policy = (name: string, action: 'ALLOW' | 'DENY', rules: RuleSpec[], appPorts = [8080]): AuthorizationPolicyConfig => ({
  name: `default/${name}`,
  action,
  appPorts,
  rules: rules.map(rule),
});
const allow = (name: string, rules: RuleSpec[], appPorts?: number[]) => policy(name, 'ALLOW', rules, appPorts);
const deny = (name: string, rules: RuleSpec[], appPorts?: number[]) => policy(name, 'DENY', rules, appPorts);
const table = (...policies: AuthorizationPolicyConfig[]): InboundAuthorization => ({ policies });

/** A request on app port 8080 by `catalog`, `GET /`, no headers, unless overridden. */
function req(r: Partial<Omit<HttpAuthzRequest, 'headers'>> & { headers?: Record<string, string[]> } = {}): HttpAuthzRequest {
  const headers = r.headers ?? {};
  return { appPort: 8080, identity: CATALOG, method: 'GET', path: '/', ...r, headers: (name) => headers[name] };
}

const verdict = (d: Decision): string => `${d.allowed ? 'allowed' : 'denied'} ${d.policy ?? '-'}`;
const http = (auth: InboundAuthorization, r: Parameters<typeof req>[0] = {}) => verdict(buildAuthorizer(auth).http(req(r)));
const tcp = (auth: InboundAuthorization, c: { appPort?: number; identity?: string | null } = {}) =>
  verdict(buildAuthorizer(auth).tcp({ appPort: c.appPort ?? 8080, identity: c.identity === undefined ? CATALOG : c.identity }));

describe('decisions', () => {
  test('no policies: everything is allowed, by no policy', () => {
    const a = buildAuthorizer(table());
    assert.equal(a.allowsAll, true);
    assert.deepEqual(a.http(req()), { allowed: true, policy: null, reason: 'no ALLOW policy covers the port' });
    assert.deepEqual(a.tcp({ appPort: 1, identity: null }), { allowed: true, policy: null, reason: 'no ALLOW policy covers the port' });
  });

  test('an ALLOW policy that matches allows, naming itself', () => {
    const d = buildAuthorizer(table(allow('a', [{}]))).http(req());
    assert.deepEqual(d, { allowed: true, policy: 'default/a', reason: 'allowed by ALLOW policy default/a' });
  });

  test('once an ALLOW policy covers the port, what none matches is denied by default', () => {
    const d = buildAuthorizer(table(allow('a', [{ from: [from({ identities: [SHOP_API] })] }]))).http(req());
    assert.deepEqual(d, { allowed: false, policy: null, reason: 'no ALLOW policy matched' });
  });

  test('a DENY policy that matches denies, naming itself; one that does not match lets the request through', () => {
    assert.deepEqual(buildAuthorizer(table(deny('d', [{}]))).http(req()), { allowed: false, policy: 'default/d', reason: 'denied by DENY policy default/d' });
    assert.equal(http(table(deny('d', [{ from: [from({ identities: [SHOP_API] })] }]))), 'allowed -');
  });

  test('DENY wins over a matching ALLOW; of several matching DENYs the first (oldest) decides', () => {
    assert.equal(http(table(allow('a', [{}]), deny('d', [{}]))), 'denied default/d');
    assert.equal(http(table(deny('d2', [{}]), deny('d1', [{}]), allow('a', [{}]))), 'denied default/d2');
  });

  test('of several ALLOW policies any one is enough; the first that matches is named', () => {
    const auth = table(allow('a1', [{ from: [from({ identities: [SHOP_API] })] }]), allow('a2', [{ to: [to({ methods: ['GET'] })] }]), allow('a3', [{}]));
    assert.equal(http(auth), 'allowed default/a2');
    assert.equal(http(auth, { identity: SHOP_API }), 'allowed default/a1');
  });

  test('a policy with no rules matches nothing: as ALLOW it denies everything on its ports, as DENY it does nothing', () => {
    assert.equal(http(table(allow('a', []))), 'denied -');
    assert.equal(http(table(deny('d', []))), 'allowed -');
  });

  test('a rule matches when any from entry, any to entry and every when condition match', () => {
    const auth = table(
      allow('a', [
        {
          from: [from({ identities: [SHOP_API] }), from({ namespaces: ['default'] })],
          to: [to({ methods: ['POST'] }), to({ paths: ['/ok'] })],
          when: [header('x-a', { values: ['1'] }), header('x-b', { notValues: ['2'] })],
        },
      ]),
    );
    assert.equal(http(auth, { path: '/ok', headers: { 'x-a': ['1'] } }), 'allowed default/a');
    assert.equal(http(auth, { method: 'POST', headers: { 'x-a': ['1'], 'x-b': ['3'] } }), 'allowed default/a');
    assert.equal(http(auth, { path: '/no', headers: { 'x-a': ['1'] } }), 'denied -', 'no to entry matches');
    assert.equal(http(auth, { path: '/ok', headers: { 'x-a': ['1'], 'x-b': ['2'] } }), 'denied -', 'one condition fails');
    assert.equal(http(auth, { path: '/ok', identity: TEAM_A, headers: { 'x-a': ['1'] } }), 'denied -', 'no from entry matches');
  });

  test('within one entry every present field must match', () => {
    const auth = table(allow('a', [{ from: [from({ identities: ['spiffe://cluster.local/*'], namespaces: ['shop'] })], to: [to({ methods: ['GET'], paths: ['/x'] })] }]));
    assert.equal(http(auth, { identity: SHOP_API, path: '/x' }), 'allowed default/a');
    assert.equal(http(auth, { identity: CATALOG, path: '/x' }), 'denied -');
    assert.equal(http(auth, { identity: SHOP_API, path: '/x', method: 'PUT' }), 'denied -');
  });
});

describe('sources', () => {
  test('identities: exact, or with * standing for any run of characters', () => {
    const auth = (pattern: string) => table(allow('a', [{ from: [from({ identities: [pattern] })] }]));
    assert.equal(http(auth(CATALOG)), 'allowed default/a');
    assert.equal(http(auth(`${CATALOG}x`)), 'denied -');
    assert.equal(http(auth('spiffe://*/ns/default/sa/*')), 'allowed default/a');
    assert.equal(http(auth('spiffe://*/ns/shop/sa/*')), 'denied -');
    assert.equal(http(auth('spiffe://cluster.local/ns/default/sa/cat*')), 'allowed default/a');
    assert.equal(http(auth('spiffe://*')), 'allowed default/a');
    assert.equal(http(auth('*')), 'allowed default/a');
    // Regular expression characters are literal.
    assert.equal(http(auth('spiffe://cluster.local/ns/default/sa/catalo.')), 'denied -');
    assert.equal(http(auth('spiffe://cluster.local/ns/default/sa/(catalog)?')), 'denied -');
  });

  test('namespaces come from the SPIFFE ID path; * globs', () => {
    const auth = (...namespaces: string[]) => table(allow('a', [{ from: [from({ namespaces })] }]));
    assert.equal(http(auth('default')), 'allowed default/a');
    assert.equal(http(auth('shop', 'default')), 'allowed default/a');
    assert.equal(http(auth('shop')), 'denied -');
    assert.equal(http(auth('team-*'), { identity: TEAM_A }), 'allowed default/a');
    assert.equal(http(auth('team-*'), { identity: CATALOG }), 'denied -');
    assert.equal(http(auth('*')), 'allowed default/a');
    assert.equal(http(auth('*'), { identity: 'spiffe://cluster.local/not-a-workload' }), 'denied -', 'an ID without /ns/<ns>/sa/<sa> has no namespace');
  });

  test('a caller without an identity matches no identities or namespaces condition, only rules without from', () => {
    const byIdentity = table(allow('a', [{ from: [from({ identities: ['*'] })] }]));
    const byNamespace = table(allow('a', [{ from: [from({ namespaces: ['*'] })] }]));
    assert.equal(http(byIdentity, { identity: null }), 'denied -');
    assert.equal(http(byNamespace, { identity: null }), 'denied -');
    assert.equal(http(table(allow('a', [{ to: [to({ paths: ['/public/*'] })] }])), { identity: null, path: '/public/x' }), 'allowed default/a');
    assert.equal(tcp(byIdentity, { identity: null }), 'denied -');
    // A DENY by identity does not catch an anonymous caller (deny "not from X" with an ALLOW instead).
    assert.equal(http(table(deny('d', [{ from: [from({ namespaces: ['*'] })] }])), { identity: null }), 'allowed -');
  });

  test('namespaceOf', () => {
    assert.equal(namespaceOf(CATALOG), 'default');
    assert.equal(namespaceOf('spiffe://example.org/ns/team-a/sa/web'), 'team-a');
    assert.equal(namespaceOf('spiffe://example.org/ns/team-a'), null);
    assert.equal(namespaceOf('spiffe://example.org/ns/a/sa/b/extra'), null);
    assert.equal(namespaceOf('not a spiffe id'), null);
  });
});

describe('operations', () => {
  test('methods are exact', () => {
    const auth = table(allow('a', [{ to: [to({ methods: ['GET', 'HEAD'] })] }]));
    assert.equal(http(auth, { method: 'HEAD' }), 'allowed default/a');
    assert.equal(http(auth, { method: 'POST' }), 'denied -');
    assert.equal(http(auth, { method: 'get' }), 'denied -');
  });

  test('paths: exact without *, prefix with one trailing *, glob with * elsewhere, * alone for any', () => {
    const ok = (pattern: string, path: string) => http(table(allow('a', [{ to: [to({ paths: [pattern] })] }])), { path }) === 'allowed default/a';
    assert.ok(ok('/healthz', '/healthz'));
    assert.ok(!ok('/healthz', '/healthz/'));
    assert.ok(!ok('/healthz', '/healthzz'));
    assert.ok(ok('/reviews/*', '/reviews/'));
    assert.ok(ok('/reviews/*', '/reviews/1/votes'));
    assert.ok(!ok('/reviews/*', '/reviews'));
    assert.ok(!ok('/reviews/*', '/reviewsx'));
    assert.ok(ok('*.json', '/a/b.json'));
    assert.ok(!ok('*.json', '/a/bjson'), 'the dot is literal');
    assert.ok(!ok('*.json', '/a.json/x'));
    assert.ok(ok('/api/*/items', '/api/v1/items'));
    assert.ok(ok('/api/*/items', '/api/v1/x/items'), '* crosses /');
    assert.ok(!ok('/api/*/items', '/api/v1/items/1'));
    assert.ok(ok('/a/*/b/*', '/a/1/b/2'), 'stars elsewhere make the trailing one part of a glob');
    assert.ok(!ok('/a/*/b/*', '/a/1/c/2'));
    assert.ok(ok('*', '/anything'));
    assert.ok(ok('/a+b(c)', '/a+b(c)'));
    assert.ok(!ok('/a+b(c)', '/aab'));
  });

  test('the query string is not part of the path matched', () => {
    const auth = table(allow('a', [{ to: [to({ paths: ['/healthz', '/files/*.json'] })] }]));
    assert.equal(http(auth, { path: '/healthz?verbose=1' }), 'allowed default/a');
    assert.equal(http(auth, { path: '/files/a.json?x=/y' }), 'allowed default/a');
    assert.equal(http(auth, { path: '/files/a.txt?as=.json' }), 'denied -');
    assert.equal(http(table(deny('d', [{ to: [to({ paths: ['/admin'] })] }])), { path: '/admin?x=1' }), 'denied default/d');
  });

  test('a policy covers only its app ports; to.ports narrows within them', () => {
    const auth = table(allow('a', [{ to: [to({ appPorts: [9090] })] }], [8080, 9090]));
    assert.equal(http(auth, { appPort: 9090 }), 'allowed default/a');
    assert.equal(http(auth, { appPort: 8080 }), 'denied -', 'covered, but narrowed away');
    assert.equal(http(auth, { appPort: 7070 }), 'allowed -', 'not covered at all');
    const denyAdmin = table(deny('d', [{ to: [to({ appPorts: [9090] })] }], [8080, 9090]), allow('a', [{}], [8080]));
    assert.equal(http(denyAdmin, { appPort: 9090 }), 'denied default/d');
    assert.equal(http(denyAdmin, { appPort: 8080 }), 'allowed default/a');
  });

  test('an entry whose ports resolved to none matches nothing', () => {
    assert.equal(http(table(allow('a', [{ to: [to({ appPorts: [] })] }]))), 'denied -');
    assert.equal(http(table(deny('d', [{ to: [to({ appPorts: [] })] }]))), 'allowed -');
  });
});

describe('header conditions', () => {
  const when = (c: ReturnType<typeof header>) => table(allow('a', [{ when: [c] }]));

  test('values: the header is present and some value matches a pattern', () => {
    const auth = when(header('x-user', { values: ['alice', 'b*'] }));
    assert.equal(http(auth, { headers: { 'x-user': ['alice'] } }), 'allowed default/a');
    assert.equal(http(auth, { headers: { 'x-user': ['bob'] } }), 'allowed default/a');
    assert.equal(http(auth, { headers: { 'x-user': ['mallory', 'bob'] } }), 'allowed default/a', 'any value of a repeated header');
    assert.equal(http(auth, { headers: { 'x-user': ['alicea'] } }), 'denied -');
    assert.equal(http(auth, { headers: { 'x-user': ['Alice'] } }), 'denied -', 'values are case-sensitive');
    assert.equal(http(auth), 'denied -', 'absent');
    assert.equal(http(when(header('x-user', { values: ['*'] })), { headers: { 'x-user': [''] } }), 'allowed default/a', '* means present');
  });

  test('notValues: the header is absent or no value matches', () => {
    const auth = when(header('x-user', { notValues: ['mallory', 'eve*'] }));
    assert.equal(http(auth), 'allowed default/a');
    assert.equal(http(auth, { headers: { 'x-user': ['alice'] } }), 'allowed default/a');
    assert.equal(http(auth, { headers: { 'x-user': ['mallory'] } }), 'denied -');
    assert.equal(http(auth, { headers: { 'x-user': ['alice', 'eve2'] } }), 'denied -');
  });

  test('header names are looked up in lowercase', () => {
    const auth = table(allow('a', [{ when: [header('X-User', { values: ['alice'] })] }]));
    assert.equal(http(auth, { headers: { 'x-user': ['alice'] } }), 'allowed default/a');
  });
});

describe('TCP connections: only identity, namespace and port are known', () => {
  test('rules on sources and ports apply as for HTTP', () => {
    const auth = table(allow('a', [{ from: [from({ namespaces: ['default'] })], to: [to({ appPorts: [8080] })] }]));
    assert.equal(tcp(auth), 'allowed default/a');
    assert.equal(tcp(auth, { identity: SHOP_API }), 'denied -');
    assert.equal(tcp(table(deny('d', [{ from: [from({ identities: [CATALOG] })] }]))), 'denied default/d');
  });

  test('in an ALLOW rule, a method, path or header condition never matches a connection', () => {
    assert.equal(tcp(table(allow('a', [{ to: [to({ methods: ['GET'] })] }]))), 'denied -');
    assert.equal(tcp(table(allow('a', [{ to: [to({ paths: ['*'] })] }]))), 'denied -');
    assert.equal(tcp(table(allow('a', [{ when: [header('x', { notValues: ['y'] })] }]))), 'denied -', 'not even notValues, which an absent header would satisfy');
    // Only the entry that needs HTTP facts is dropped; a sibling entry or rule still applies.
    assert.equal(tcp(table(allow('a', [{ to: [to({ methods: ['GET'] }), to({ appPorts: [8080] })] }]))), 'allowed default/a');
    assert.equal(tcp(table(allow('a', [{ to: [to({ paths: ['/x'] })] }, { from: [from({ namespaces: ['default'] })] }]))), 'allowed default/a');
  });

  test('in a DENY rule, method, path and header conditions are ignored, so it matches more broadly', () => {
    assert.equal(tcp(table(deny('d', [{ to: [to({ methods: ['DELETE'] })] }]))), 'denied default/d');
    assert.equal(tcp(table(deny('d', [{ to: [to({ paths: ['/admin/*'], appPorts: [8080] })] }]))), 'denied default/d');
    assert.equal(tcp(table(deny('d', [{ to: [to({ paths: ['/admin/*'], appPorts: [9090] })] }], [8080, 9090]))), 'allowed -', 'the port condition still applies');
    assert.equal(tcp(table(deny('d', [{ from: [from({ namespaces: ['shop'] })], when: [header('x', { values: ['y'] })] }]))), 'allowed -', 'the source condition still applies');
    assert.equal(tcp(table(deny('d', [{ from: [from({ namespaces: ['shop'] })], when: [header('x', { values: ['y'] })] }])), { identity: SHOP_API }), 'denied default/d');
  });

  test('the same DENY for HTTP stays narrow', () => {
    const auth = table(deny('d', [{ to: [to({ methods: ['DELETE'] })] }]));
    assert.equal(http(auth), 'allowed -');
    assert.equal(http(auth, { method: 'DELETE' }), 'denied default/d');
  });
});

test('globs compile to anchored expressions with every other character literal', () => {
  assert.equal(globRegExp('a*b').source, '^a[\\s\\S]*b$');
  assert.equal(globRegExp('.+?^$(){}[]|\\/').test('.+?^$(){}[]|\\/'), true);
  assert.equal(globRegExp('a.c').test('abc'), false);
  assert.equal(globRegExp('x*').test('x\ny'), true, '* crosses line breaks too');
});

test('decisions are prebuilt objects, shared by every request they decide', () => {
  const a = buildAuthorizer(table(allow('a', [{ from: [from({ namespaces: ['default'] })], to: [to({ paths: ['/x/*'] })] }])));
  assert.equal(a.http(req({ path: '/x/1' })), a.http(req({ path: '/x/2' })));
  assert.equal(a.http(req({ path: '/y' })), a.http(req({ path: '/z' })));
});
