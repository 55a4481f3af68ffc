/**
 * Local answers of the HTTP/2 listeners, shared by both engines (server.ts on node:http2,
 * downstream.ts on Weft's own) without loading node:http2 for the latter.
 */
import { MeshError } from '../../core/errors.js';
import { meshErrorGrpcResponse, meshErrorResponse, toMeshError } from '../local-reply.js';
import type { ProxyResponse, RequestContext } from '../message.js';

/** The error of a request head a listener does not serve: CONNECT (no tunnels here), no authority, a path not origin-form. */
export function badRequest(method: string, path: string, authority: string): MeshError {
  if (method === 'CONNECT') return new MeshError('NOT_IMPLEMENTED', 'CONNECT over HTTP/2 is not taken on this listener');
  if (authority === '') return new MeshError('BAD_REQUEST', 'missing :authority (and Host)');
  return new MeshError('BAD_REQUEST', `:path ${JSON.stringify(path.slice(0, 60))} is not origin-form`);
}

/** The mesh error's answer (gRPC status for a gRPC caller), its code noted on the context. */
export function errorResponse(ctx: RequestContext, err: unknown, grpc: boolean): ProxyResponse {
  const e = toMeshError(err);
  ctx.errorCode = e.code;
  return grpc ? meshErrorGrpcResponse(e, ctx.requestId) : meshErrorResponse(e, ctx.requestId);
}
