/**
 * The one place a mesh-generated error becomes a response: status from the code, a `weft-error`
 * header, and a JSON body `{ code, message }` — or, for a gRPC caller, a gRPC status.
 */
import { STATUS_CODES } from './http1/status.js';
import { MeshError, type MeshErrorCode } from '../core/errors.js';
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
  if (e.retryAfter !== undefined) headers.push('retry-after', String(e.retryAfter));
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

/**
 * The gRPC status each mesh error becomes for a gRPC caller (codes of grpc/doc/statuscodes.md),
 * close to what Envoy answers: the caller's library turns it into its own error type.
 */
export const GRPC_STATUS: Readonly<Record<MeshErrorCode, number>> = {
  BAD_REQUEST: 13, // INTERNAL: the request was not valid HTTP/2 for the mesh
  HEADERS_TOO_LARGE: 8, // RESOURCE_EXHAUSTED
  REQUEST_TIMEOUT: 4, // DEADLINE_EXCEEDED
  NO_ROUTE: 12, // UNIMPLEMENTED
  DENIED: 7, // PERMISSION_DENIED
  MTLS_REQUIRED: 16, // UNAUTHENTICATED
  NO_CONFIGURATION: 14, // UNAVAILABLE
  INVALID_BACKEND: 13, // INTERNAL
  NO_HEALTHY_UPSTREAM: 14, // UNAVAILABLE
  CIRCUIT_OPEN: 14, // UNAVAILABLE (Envoy's answer to an overflow)
  UPSTREAM_CONNECT_FAILURE: 14,
  UPSTREAM_TLS_FAILURE: 14,
  UPSTREAM_TIMEOUT: 4, // DEADLINE_EXCEEDED
  STREAM_IDLE_TIMEOUT: 4, // DEADLINE_EXCEEDED
  UPSTREAM_RESET: 14,
  CLIENT_CLOSED: 1, // CANCELLED
  UPSTREAM_PROTOCOL_ERROR: 13,
  HEADERS_OVER_PEER_LIMIT: 8, // RESOURCE_EXHAUSTED, as gRPC answers metadata over a limit
  EXPECTATION_FAILED: 13,
  NOT_IMPLEMENTED: 12,
  VERSION_NOT_SUPPORTED: 12,
  FAULT_INJECTED: 14, // UNAVAILABLE: an injected abort looks like an unavailable upstream
  RATE_LIMITED: 8, // RESOURCE_EXHAUSTED, as Envoy's rate limit filters answer
  INTERNAL_ERROR: 13,
};

/** `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%` itself (gRPC over HTTP/2, "Responses"). */
function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** The trailer fields that carry a mesh error to a gRPC caller. */
export function meshErrorGrpcTrailers(e: MeshError): string[] {
  return ['grpc-status', String(GRPC_STATUS[e.code]), 'grpc-message', grpcMessage(`${e.code}: ${e.message}`), 'weft-error', e.code];
}

/** A mesh error for a gRPC caller: a "trailers-only" response, HTTP 200 with the gRPC status in its head. */
export function meshErrorGrpcResponse(e: MeshError, requestId: string | null): ProxyResponse {
  const headers = ['content-type', 'application/grpc', ...meshErrorGrpcTrailers(e)];
  if (requestId !== null && requestId !== '') headers.push('x-request-id', requestId);
  return { status: 200, headers, body: null };
}
