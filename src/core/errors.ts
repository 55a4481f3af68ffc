/**
 * Every error the mesh itself generates has one code. The code decides the HTTP status, and one
 * function (`meshErrorResponse` in the proxy) turns it into the response the caller sees, with a
 * `weft-error` header and a small JSON body, so no mesh failure is ever an anonymous 503.
 */
export type MeshErrorCode =
  | 'BAD_REQUEST'
  | 'HEADERS_TOO_LARGE'
  | 'REQUEST_TIMEOUT'
  | 'NO_ROUTE'
  | 'DENIED'
  | 'MTLS_REQUIRED'
  | 'NO_CONFIGURATION'
  | 'INVALID_BACKEND'
  | 'NO_HEALTHY_UPSTREAM'
  | 'CIRCUIT_OPEN'
  | 'UPSTREAM_CONNECT_FAILURE'
  | 'UPSTREAM_TLS_FAILURE'
  | 'UPSTREAM_TIMEOUT'
  | 'STREAM_IDLE_TIMEOUT'
  | 'UPSTREAM_RESET'
  | 'CLIENT_CLOSED'
  | 'UPSTREAM_PROTOCOL_ERROR'
  | 'HEADERS_OVER_PEER_LIMIT'
  | 'EXPECTATION_FAILED'
  | 'NOT_IMPLEMENTED'
  | 'VERSION_NOT_SUPPORTED'
  | 'FAULT_INJECTED'
  | 'RATE_LIMITED'
  | 'INTERNAL_ERROR';

/** HTTP status for each mesh error code. */
export const meshErrorStatus: Readonly<Record<MeshErrorCode, number>> = {
  BAD_REQUEST: 400,
  HEADERS_TOO_LARGE: 431,
  REQUEST_TIMEOUT: 408,
  NO_ROUTE: 404,
  DENIED: 403,
  MTLS_REQUIRED: 403,
  NO_CONFIGURATION: 503,
  INVALID_BACKEND: 500,
  NO_HEALTHY_UPSTREAM: 503,
  CIRCUIT_OPEN: 503,
  UPSTREAM_CONNECT_FAILURE: 503,
  UPSTREAM_TLS_FAILURE: 503,
  UPSTREAM_TIMEOUT: 504,
  STREAM_IDLE_TIMEOUT: 504,
  UPSTREAM_RESET: 502,
  /** Never sent (the client is gone): nginx's 499, for metrics and logs. */
  CLIENT_CLOSED: 499,
  UPSTREAM_PROTOCOL_ERROR: 502,
  /** A head the proxy was to send over HTTP/2 is over the receiver's SETTINGS_MAX_HEADER_LIST_SIZE. */
  HEADERS_OVER_PEER_LIMIT: 502,
  EXPECTATION_FAILED: 417,
  NOT_IMPLEMENTED: 501,
  VERSION_NOT_SUPPORTED: 505,
  /** The default only: an injected abort answers the HTTPFault's `httpStatus`. */
  FAULT_INJECTED: 503,
  RATE_LIMITED: 429,
  INTERNAL_ERROR: 500,
};

/** An error produced by the mesh (as opposed to one relayed from an app), with a stable code. */
export class MeshError extends Error {
  readonly code: MeshErrorCode;
  readonly status: number;
  /** Whole seconds the caller should wait before trying again (`retry-after`), when the mesh knows. */
  readonly retryAfter: number | undefined;

  /** `status` overrides the code's own (an injected fault answers the status it was configured with). */
  constructor(code: MeshErrorCode, message: string, options?: { cause?: unknown; status?: number; retryAfter?: number }) {
    super(message, options);
    this.name = 'MeshError';
    this.code = code;
    this.status = options?.status ?? meshErrorStatus[code];
    this.retryAfter = options?.retryAfter;
  }
}

/** True for a MeshError, including one from another copy of this module. */
export function isMeshError(err: unknown): err is MeshError {
  return err instanceof MeshError;
}
