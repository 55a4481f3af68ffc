/**
 * The one place a mesh-generated error becomes a response: status from the code, a `weft-error`
 * header, and a JSON body `{ code, message }`.
 */
import { STATUS_CODES } from 'node:http';
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

/**
 * The same answer as whole HTTP/1.1 bytes, for a socket that is not (or no longer) served by the
 * HTTP/1.1 server: a refused plaintext caller, a refused tunnel. The connection closes after it.
 */
export function meshErrorWire(e: MeshError): string {
  const json = JSON.stringify({ code: e.code, message: e.message });
  return `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\ncontent-type: application/json\r\nweft-error: ${e.code}\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`;
}
