/**
 * The one place a mesh-generated error becomes a response: status from the code, a `weft-error`
 * header, and a JSON body `{ code, message }`.
 */
import { MeshError } from '../core/errors.js';
import { Body } from './body.js';
import type { ProxyResponse } from './message.js';

/** Turns any failure into the response the caller sees. Unknown errors are our bugs: 500 INTERNAL_ERROR. */
export function meshErrorResponse(err: unknown, requestId: string | null): ProxyResponse {
  const e = err instanceof MeshError ? err : new MeshError('INTERNAL_ERROR', 'internal proxy error', { cause: err });
  const json = Buffer.from(JSON.stringify({ code: e.code, message: e.message }));
  const headers = ['content-type', 'application/json', 'weft-error', e.code];
  if (requestId !== null) headers.push('x-request-id', requestId);
  return { status: e.status, headers, body: Body.of(json) };
}

/** The mesh error code carried by a response, or '' for an app's own response. */
export function errorCodeOf(res: ProxyResponse): string {
  const h = res.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i] === 'weft-error') return h[i + 1]!;
  return '';
}
