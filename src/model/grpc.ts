/**
 * gRPC routing in terms of HTTP: a gRPC call is `POST /<service>/<method>` over HTTP/2, so a
 * GRPCRoute method match becomes a path match the proxy already evaluates. Shared by validation
 * (a pattern must still compile once combined) and the compiler.
 */
import type { GRPCMethodMatch } from './resources.js';
import type { PathMatch } from './snapshot.js';

/** Gateway API rules for Exact names (the CRD's CEL rules; the service check is case-insensitive). */
export const GRPC_SERVICE = /^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$/;
export const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

/** gRPC status codes by name (grpc/doc/statuscodes.md), OK left out: what a GRPCRoute retry may name. */
export const GRPC_STATUS_CODES: Readonly<Record<string, number>> = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** One path segment: what an absent service or method matches. */
const SEGMENT = '[^/]+';

/** Escapes every character a regular expression gives meaning to. */
export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A user pattern as a part of the path expression: the proxy and Weft's docs say patterns match the
 * whole name, so a leading `^` and an unescaped trailing `$` (often written out of habit) are dropped.
 */
function patternPart(p: string | undefined): string {
  if (p === undefined || p === '') return SEGMENT;
  let s = p.startsWith('^') ? p.slice(1) : p;
  const trailingBackslashes = /(\\*)\$$/.exec(s)?.[1]?.length;
  if (trailingBackslashes !== undefined && trailingBackslashes % 2 === 0) s = s.slice(0, -1);
  return `(?:${s})`;
}

/**
 * The path match for a method match (absent: every call):
 *
 * - Exact service and method: path Exact `/<service>/<method>`;
 * - Exact service only: PathPrefix `/<service>/` (whole segments: not `/<service>Other/…`);
 * - Exact method only: RegularExpression `^/[^/]+/<method>$`;
 * - RegularExpression: `^(?=/[^/]+/[^/]+$)/(?:<service>)/(?:<method>)$`, an absent or empty part
 *   being `[^/]+`; the lookahead keeps a pattern from matching across the `/` between the two.
 */
export function grpcPathMatch(m: GRPCMethodMatch | undefined): PathMatch {
  if (m === undefined) return { type: 'PathPrefix', value: '/' };
  const service = m.service === '' ? undefined : m.service;
  const method = m.method === '' ? undefined : m.method;
  if ((m.type ?? 'Exact') === 'Exact') {
    if (service !== undefined && method !== undefined) return { type: 'Exact', value: `/${service}/${method}` };
    if (service !== undefined) return { type: 'PathPrefix', value: `/${service}/` };
    return { type: 'RegularExpression', value: `^/${SEGMENT}/${escapeRegExp(method ?? '')}$` };
  }
  return { type: 'RegularExpression', value: `^(?=/${SEGMENT}/${SEGMENT}$)/${patternPart(service)}/${patternPart(method)}$` };
}
