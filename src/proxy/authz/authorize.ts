/**
 * Inbound authorization: the compiled AuthorizationPolicies of this workload (`InboundAuthorization`)
 * turned, once per update, into an `Authorizer` the inbound listener asks per request (HTTP) or per
 * accepted connection (TCP). Patterns become anchored RegExps (or plain string tests) here, so a
 * decision only runs prebuilt predicates; with no policies it is one property read.
 *
 * Decision order for a request on an app port: a matching DENY policy covering the port denies (the
 * oldest such policy, then by name); otherwise it is allowed when no ALLOW policy covers the port;
 * otherwise it is allowed iff some ALLOW policy covering the port matches.
 */
import { parseSpiffeId } from '../../core/identity/spiffe.js';
import type {
  AuthorizationConditionConfig,
  AuthorizationOperationConfig,
  AuthorizationPolicyConfig,
  AuthorizationRuleConfig,
  AuthorizationSourceConfig,
  InboundAuthorization,
} from '../../model/snapshot.js';

/** The facts of an HTTP request that authorization reads. */
export interface HttpAuthzRequest {
  /** The app port the request is for. */
  appPort: number;
  /** The caller's SPIFFE ID from its certificate, or null without one (plaintext, PERMISSIVE mode). */
  identity: string | null;
  method: string;
  /** The request target's path; a query string is ignored. */
  path: string;
  /** Every value of a request header, by lowercase name; undefined when absent. */
  headers: (name: string) => string[] | undefined;
}

/** The facts of a TCP connection, known at accept. */
export interface TcpAuthzRequest {
  appPort: number;
  identity: string | null;
}

/** An authorization decision. Decisions are shared, immutable objects: do not change them. */
export interface Decision {
  allowed: boolean;
  /** `namespace/name` of the policy that decided: the matching DENY, or the matching ALLOW; null by default. */
  policy: string | null;
  reason: string;
}

/** Decides requests and connections against one workload's authorization table. */
export interface Authorizer {
  /** True when no policy covers any port: every decision allows. Lets a caller skip the call entirely. */
  readonly allowsAll: boolean;
  http(req: HttpAuthzRequest): Decision;
  tcp(conn: TcpAuthzRequest): Decision;
}

const ALLOWED_UNCOVERED: Decision = Object.freeze({ allowed: true, policy: null, reason: 'no ALLOW policy covers the port' });
const DENIED_BY_DEFAULT: Decision = Object.freeze({ allowed: false, policy: null, reason: 'no ALLOW policy matched' });

/** What a rule's parts see of a request; a TCP connection has no method or headers (and no path). */
interface Facts {
  appPort: number;
  identity: string | null;
  method?: string;
  headers?: (name: string) => string[] | undefined;
}

type Test = (s: string) => boolean;

/** One rule, prebuilt; `from`/`to` null means any. */
interface RulePredicate {
  from: Array<{ identities: Test | null; namespaces: Test | null }> | null;
  to: Array<{ appPorts: readonly number[] | null; methods: readonly string[] | null; paths: Test | null }> | null;
  when: Array<{ header: string; test: Test; negated: boolean }>;
}

interface PolicyPredicate {
  decision: Decision;
  rules: RulePredicate[];
}

/** The policies covering one app port, each list oldest first, for HTTP and for TCP. */
interface PortTable {
  httpDeny: PolicyPredicate[];
  httpAllow: PolicyPredicate[];
  tcpDeny: PolicyPredicate[];
  tcpAllow: PolicyPredicate[];
}

/** Builds the authorizer for one compiled authorization table. Patterns are compiled here, once. */
export function buildAuthorizer(auth: InboundAuthorization): Authorizer {
  if (auth.policies.length === 0) return ALLOW_ALL;
  const ports = new Map<number, PortTable>();
  for (const policy of auth.policies) {
    const http = policyPredicate(policy, policy.rules);
    const tcp = policyPredicate(policy, policy.rules.flatMap((r) => tcpRule(r, policy.action)));
    for (const port of policy.appPorts) {
      let t = ports.get(port);
      if (t === undefined) ports.set(port, (t = { httpDeny: [], httpAllow: [], tcpDeny: [], tcpAllow: [] }));
      if (policy.action === 'DENY') {
        t.httpDeny.push(http);
        t.tcpDeny.push(tcp);
      } else {
        t.httpAllow.push(http);
        t.tcpAllow.push(tcp);
      }
    }
  }
  return {
    allowsAll: false,
    http(req) {
      const t = ports.get(req.appPort);
      if (t === undefined) return ALLOWED_UNCOVERED;
      return decide(t.httpDeny, t.httpAllow, req, pathOnly(req.path));
    },
    tcp(conn) {
      const t = ports.get(conn.appPort);
      if (t === undefined) return ALLOWED_UNCOVERED;
      return decide(t.tcpDeny, t.tcpAllow, conn, null);
    },
  };
}

const ALLOW_ALL: Authorizer = Object.freeze({
  allowsAll: true,
  http: () => ALLOWED_UNCOVERED,
  tcp: () => ALLOWED_UNCOVERED,
});

/** `path` is the request path without its query string, or null for a TCP connection. */
function decide(deny: PolicyPredicate[], allow: PolicyPredicate[], f: Facts, path: string | null): Decision {
  for (const p of deny) if (policyMatches(p, f, path)) return p.decision;
  if (allow.length === 0) return ALLOWED_UNCOVERED;
  for (const p of allow) if (policyMatches(p, f, path)) return p.decision;
  return DENIED_BY_DEFAULT;
}

function policyMatches(p: PolicyPredicate, f: Facts, path: string | null): boolean {
  for (const r of p.rules) if (ruleMatches(r, f, path)) return true;
  return false;
}

function ruleMatches(r: RulePredicate, f: Facts, path: string | null): boolean {
  if (r.from !== null) {
    let any = false;
    for (const s of r.from) {
      if (sourceMatches(s, f.identity)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if (r.to !== null) {
    let any = false;
    for (const o of r.to) {
      if (operationMatches(o, f, path)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  for (const c of r.when) if (!conditionMatches(c, f.headers)) return false;
  return true;
}

function sourceMatches(s: NonNullable<RulePredicate['from']>[number], identity: string | null): boolean {
  // A caller without an identity has no namespace either: neither condition can match it.
  if (identity === null) return false;
  if (s.identities !== null && !s.identities(identity)) return false;
  if (s.namespaces !== null) {
    const ns = namespaceOf(identity);
    if (ns === null || !s.namespaces(ns)) return false;
  }
  return true;
}

// For TCP, `methods` and `paths` were removed (DENY) or their entry dropped (ALLOW) at build time;
// a TCP connection never meets a method or path condition here.
function operationMatches(o: NonNullable<RulePredicate['to']>[number], f: Facts, path: string | null): boolean {
  if (o.appPorts !== null && !o.appPorts.includes(f.appPort)) return false;
  if (o.methods !== null && (f.method === undefined || !o.methods.includes(f.method))) return false;
  if (o.paths !== null && (path === null || !o.paths(path))) return false;
  return true;
}

function conditionMatches(c: RulePredicate['when'][number], headers: Facts['headers']): boolean {
  const values = headers === undefined ? undefined : headers(c.header);
  let some = false;
  if (values !== undefined) {
    for (const v of values) {
      if (c.test(v)) {
        some = true;
        break;
      }
    }
  }
  return c.negated ? !some : some;
}

/**
 * A rule as it applies to a TCP connection, which has no method, path or headers: in an ALLOW
 * policy a rule or `to` entry that needs them never matches (dropped); in a DENY policy those
 * conditions are ignored, so the rule matches more broadly. Both fail closed.
 */
function tcpRule(r: AuthorizationRuleConfig, action: 'ALLOW' | 'DENY'): AuthorizationRuleConfig[] {
  const httpOnly = (o: AuthorizationOperationConfig): boolean => o.methods !== null || o.paths !== null;
  if (action === 'ALLOW') {
    if (r.when.length > 0) return [];
    if (r.to === null) return [r];
    const to = r.to.filter((o) => !httpOnly(o));
    return to.length === 0 ? [] : [{ ...r, to }];
  }
  return [{ from: r.from, to: r.to === null ? null : r.to.map((o) => ({ appPorts: o.appPorts, methods: null, paths: null })), when: [] }];
}

function policyPredicate(policy: AuthorizationPolicyConfig, rules: AuthorizationRuleConfig[]): PolicyPredicate {
  const decision: Decision = Object.freeze(
    policy.action === 'DENY'
      ? { allowed: false, policy: policy.name, reason: `denied by DENY policy ${policy.name}` }
      : { allowed: true, policy: policy.name, reason: `allowed by ALLOW policy ${policy.name}` },
  );
  return { decision, rules: rules.map(rulePredicate) };
}

function rulePredicate(r: AuthorizationRuleConfig): RulePredicate {
  return {
    from: r.from?.map((s: AuthorizationSourceConfig) => ({ identities: anyOf(s.identities, globTest), namespaces: anyOf(s.namespaces, globTest) })) ?? null,
    to:
      r.to?.map((o: AuthorizationOperationConfig) => ({
        appPorts: o.appPorts,
        methods: o.methods,
        paths: anyOf(o.paths, pathTest),
      })) ?? null,
    when: r.when.map((c: AuthorizationConditionConfig) => ({
      header: c.header.toLowerCase(),
      test: anyOf(c.values ?? c.notValues ?? [], globTest)!,
      negated: c.values === null,
    })),
  };
}

/** One test for a list of patterns: true when any matches; null for an absent list. */
function anyOf(patterns: readonly string[] | null, build: (p: string) => Test): Test | null {
  if (patterns === null) return null;
  if (patterns.includes('*')) return () => true;
  const tests = patterns.map(build);
  if (tests.length === 1) return tests[0]!;
  return (s) => {
    for (const t of tests) if (t(s)) return true;
    return false;
  };
}

/** A `*` glob: `*` is any run of characters (`/` included), everything else literal. */
export function globTest(pattern: string): Test {
  if (!pattern.includes('*')) return (s) => s === pattern;
  const re = globRegExp(pattern);
  return (s) => re.test(s);
}

/** A path pattern: no `*` is exact, one trailing `*` a prefix, `*` elsewhere a glob. */
function pathTest(pattern: string): Test {
  const star = pattern.indexOf('*');
  if (star === pattern.length - 1) {
    const prefix = pattern.slice(0, -1);
    return (s) => s.startsWith(prefix);
  }
  return globTest(pattern);
}

/** The anchored RegExp of a `*` glob, with every other character matched literally. */
export function globRegExp(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))
    .join('[\\s\\S]*');
  return new RegExp(`^${body}$`);
}

/** The request path without its query string. */
function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

// Callers are few (a workload's clients), so their namespaces are remembered rather than reparsed.
const NAMESPACES = new Map<string, string | null>();
const NAMESPACE_CACHE_LIMIT = 4096;

/** The namespace of a SPIFFE ID of the form `spiffe://<td>/ns/<ns>/sa/<sa>`, or null for any other. */
export function namespaceOf(identity: string): string | null {
  let ns = NAMESPACES.get(identity);
  if (ns !== undefined) return ns;
  ns = parseSpiffeId(identity)?.namespace ?? null;
  if (NAMESPACES.size >= NAMESPACE_CACHE_LIMIT) NAMESPACES.clear();
  NAMESPACES.set(identity, ns);
  return ns;
}
