/**
 * Route matching, built once per route from its Gateway API match: the request path only sees
 * prebuilt predicates, and a route with no header or query conditions costs one path test.
 */
import type { RouteMatch } from '../../model/snapshot.js';
import type { ProxyRequest } from '../message.js';

/** A prebuilt predicate over a request. */
export type Matcher = (req: ProxyRequest, pathOnly: string, query: URLSearchParams | null) => boolean;

/** Splits a request path into its path part; the query is parsed lazily only when a route asks. */
export function pathPart(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

function pathMatcher(m: RouteMatch['path']): (p: string) => boolean {
  switch (m.type) {
    case 'Exact': {
      const v = m.value;
      return (p) => p === v;
    }
    case 'RegularExpression': {
      const re = new RegExp(`^(?:${m.value})$`);
      return (p) => re.test(p);
    }
    case 'PathPrefix': {
      // Prefixes match whole path segments: /abc matches /abc and /abc/def, never /abcd.
      const v = m.value.length > 1 && m.value.endsWith('/') ? m.value.slice(0, -1) : m.value;
      if (v === '/') return () => true;
      return (p) => p.startsWith(v) && (p.length === v.length || p.charCodeAt(v.length) === 0x2f);
    }
  }
}

function valueMatcher(type: 'Exact' | 'RegularExpression', value: string): (v: string | undefined | null) => boolean {
  if (type === 'Exact') return (v) => v === value;
  const re = new RegExp(`^(?:${value})$`);
  return (v) => v !== undefined && v !== null && re.test(v);
}

/**
 * The value a header match sees: the field's value, or for a field sent several times all of them
 * joined as RFC 9110 5.3 allows (`, `), and `cookie` crumbs joined with `; ` (RFC 9113 8.2.3), so a
 * RegularExpression on `cookie` routes by a cookie however the client split them. One field (the
 * usual case) allocates nothing.
 */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== name) continue;
    out = out === undefined ? headers[i + 1]! : `${out}${name === 'cookie' ? '; ' : ', '}${headers[i + 1]!}`;
  }
  return out;
}

/** Whether the route needs the parsed query string. */
export function needsQuery(m: RouteMatch): boolean {
  return m.queryParams.length > 0;
}

/** Builds the predicate for one match. */
export function buildMatcher(m: RouteMatch): Matcher {
  const path = pathMatcher(m.path);
  const method = m.method;
  const headers = m.headers.map((h) => ({ name: h.name, test: valueMatcher(h.type, h.value) }));
  const params = m.queryParams.map((q) => ({ name: q.name, test: valueMatcher(q.type, q.value) }));
  if (method === null && headers.length === 0 && params.length === 0) return (_req, p) => path(p);
  return (req, p, query) => {
    if (!path(p)) return false;
    if (method !== null && req.method !== method) return false;
    for (const h of headers) if (!h.test(headerValue(req.headers, h.name))) return false;
    for (const q of params) if (!q.test(query?.get(q.name))) return false;
    return true;
  };
}
