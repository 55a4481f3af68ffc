/**
 * The one composable unit of the data plane: a Handler takes a request and its context and returns
 * a response; a Layer wraps a Handler. Filters are layers, the router and the upstream call are
 * terminal handlers. Protocol code (HTTP/1.1 today, HTTP/2 later) only converts wire messages to and
 * from these shapes.
 */
import type { Socket } from 'node:net';
import type { Body } from './body.js';
import type { ExchangeTelemetry } from './telemetry/telemetry.js';

/** A request on its way through the proxy. Handlers may change it before passing it on. */
export interface ProxyRequest {
  method: string;
  /** Origin-form path and query. */
  path: string;
  /** Lowercase `host[:port]` the request is for. */
  authority: string;
  /** End-to-end header fields, flattened [name, value, …], lowercase names; no Host, no hop-by-hop. */
  headers: string[];
  body: Body | null;
  /**
   * An HTTP/1.1 protocol upgrade the client asked for (RFC 9110 7.8): the `Upgrade` field value to
   * forward, e.g. `websocket`. Absent for ordinary requests.
   */
  upgrade?: string;
}

/** A response on its way back. */
export interface ProxyResponse {
  status: number;
  headers: string[];
  body: Body | null;
  /** With status 101 only: the upstream connection, switched to the upgraded protocol and no longer HTTP. */
  upgraded?: UpgradedStream;
}

/**
 * An upstream connection that answered `101 Switching Protocols`: out of its pool for good, paused,
 * with no listener of the pool's left on it. Whoever gets it joins it to the client's connection.
 */
export interface UpgradedStream {
  socket: Socket;
  /** The protocol switched to: the 101's `Upgrade` field value. */
  protocol: string;
  /** Bytes that followed the 101 head: already the upgraded protocol's. */
  rest: Buffer | null;
}

/** Facts about the request that handlers read and layers annotate. */
export interface RequestContext {
  /** `inbound` or `outbound`. */
  readonly direction: 'inbound' | 'outbound';
  readonly requestId: string;
  readonly clientAddress: string;
  /** The caller's SPIFFE ID, from its mTLS certificate; null for plaintext callers. */
  readonly peerIdentity: string | null;
  /** When the request head was complete (performance.now()). */
  readonly start: number;
  /** Set by the router: the metrics/route label. */
  route: string;
  /** Set by the router: the destination service label. */
  destination: string;
  /** Set by the upstream call: `address:port` of the chosen endpoint. */
  upstreamHost: string;
  /** Called when the downstream gives up or a timeout fires, so upstream work stops. */
  readonly abortHandlers: Array<(err: Error) => void>;
  /** Relays an interim (1xx) response to the client, when the client asked for one (Expect: 100-continue). */
  readonly interim: ((status: number, headers: string[]) => void) | null;
  /** The mesh error code of the response, or '' when the app answered. */
  errorCode: string;
  /** Set once the exchange was given up (timeout, client gone); upstream work not yet begun must not begin. */
  aborted: Error | null;
  /** Inbound: the caller's service (`name.namespace`) as its proxy told over mTLS, or ''. Metrics label. */
  sourceService: string;
  /** Outbound: the SPIFFE ID of the proxied endpoint the request went to, or ''. Metrics label. */
  destinationIdentity: string;
  /** Request body bytes received from the client so far. */
  bytesReceived: number;
  /** Response body bytes sent to the client so far. */
  bytesSent: number;
  /** `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`, as the client spoke (set by the listener; for logs and spans). */
  protocol?: string;
  /** Set by telemetry when the Mesh traces or logs; absent otherwise. */
  telemetry?: ExchangeTelemetry;
}

/**
 * A new exchange's context, every field present from the start and in one order, so that every
 * context (each listener's, a mirror's, a health check's) has one shape and the code reading them
 * stays monomorphic. The listeners call this for each request.
 */
export function requestContext(
  direction: RequestContext['direction'],
  requestId: string,
  clientAddress: string,
  peerIdentity: string | null,
  interim: RequestContext['interim'],
  protocol: string | undefined,
): RequestContext {
  return {
    direction,
    requestId,
    clientAddress,
    peerIdentity,
    start: performance.now(),
    route: '',
    destination: '',
    upstreamHost: '',
    abortHandlers: [],
    interim,
    errorCode: '',
    aborted: null,
    sourceService: '',
    destinationIdentity: '',
    bytesReceived: 0,
    bytesSent: 0,
    protocol,
    // Present from the start, so telemetry setting it later keeps the shape.
    telemetry: undefined,
  };
}

/**
 * A context for an exchange the proxy starts itself (a mirror copy, a health check) or a test
 * drives: the given fields, and every other one at its empty value.
 */
export function newRequestContext(
  fields: Pick<RequestContext, 'direction'> & Partial<Omit<RequestContext, 'direction'>>,
): RequestContext {
  return Object.assign(requestContext(fields.direction, '', '', null, null, undefined), fields);
}

/**
 * `ctx.route` of an active health check's probe: it bypasses the circuit breaker's connection
 * queue (as Envoy's health checks do not take connections from the pool's limits).
 */
export const HEALTH_CHECK_ROUTE = 'health-check';

export type Handler = (req: ProxyRequest, ctx: RequestContext) => Promise<ProxyResponse>;
export type Layer = (next: Handler) => Handler;

/** Applies layers so the first listed is outermost. */
export function compose(layers: readonly Layer[], terminal: Handler): Handler {
  let h = terminal;
  for (let i = layers.length - 1; i >= 0; i--) h = layers[i]!(h);
  return h;
}

/** Aborts upstream work attached to the context (idempotent per handler list). */
export function abortContext(ctx: RequestContext, err: Error): void {
  ctx.aborted ??= err;
  const handlers = ctx.abortHandlers.splice(0);
  for (const h of handlers) h(err);
}

/** First value of a header (lowercase name), or undefined. */
export function getHeader(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** Removes every field named `name` (lowercase) in place. */
export function removeHeader(headers: string[], name: string): void {
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    if (headers[r] !== name) {
      headers[w++] = headers[r]!;
      headers[w++] = headers[r + 1]!;
    }
  }
  headers.length = w;
}

/** Replaces every field named `name` with one field. */
export function setHeader(headers: string[], name: string, value: string): void {
  removeHeader(headers, name);
  headers.push(name, value);
}
