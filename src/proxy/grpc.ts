/** What the proxy needs to know of gRPC: who is a gRPC caller, and the deadline it asked for. */

/** Whether a request's content type is gRPC (`application/grpc`, `application/grpc+proto`, …). */
export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && (contentType === 'application/grpc' || contentType.startsWith('application/grpc+') || contentType.startsWith('application/grpc;'));
}

const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * The deadline in a `grpc-timeout` header (`<up to 8 digits><H|M|S|m|u|n>`), in milliseconds, at
 * least 1; null when absent or malformed (a malformed one is ignored, as gRPC servers do).
 */
export function grpcTimeoutMs(value: string | undefined): number | null {
  if (value === undefined) return null;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) return null;
  return Math.max(1, Math.ceil(Number(m[1]) * UNIT_MS[m[2]!]!));
}
