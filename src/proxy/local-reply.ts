/**
 * The one place a mesh-generated error becomes a response: status from the code, a `weft-error`
 * header, and a JSON body `{ code, message }`.
 */
import { MeshError } from '../core/errors.js';
import { Body } from './body.js';
import type { ProxyResponse } from './message.js';

/** Any failure as a MeshError. Unknown errors are our bugs: INTERNAL_ERROR. */
export function toMeshError(err: unknown): MeshError {
  return err instanceof MeshError ? err : new MeshError('INTERNAL_ERROR', 'internal proxy error', { cause: err });
}

/** The response the caller sees for a mesh error. */
export function meshErrorResponse(e: MeshError, requestId: string | null): ProxyResponse {
  const json = Buffer.from(JSON.stringify({ code: e.code, message: e.message }));
  const headers = ['content-type', 'application/json', 'weft-error', e.code];
  if (requestId !== null && requestId !== '') headers.push('x-request-id', requestId);
  return { status: e.status, headers, body: Body.of(json) };
}
