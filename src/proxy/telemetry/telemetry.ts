/**
 * Tracing and access logs of one proxy. Owned by the proxy (the exporter's queue and the log's file
 * survive configuration pushes); `apply` reads the Mesh's settings from each snapshot.
 *
 * Per exchange: `handle` runs before the route (or the inbound forwarder). With tracing on, it reads
 * the caller's trace context (W3C first, then B3), makes this hop's span (a CLIENT span on the
 * outbound side, a SERVER span on the inbound side) and writes it into the request as the next hop's
 * parent. `finish`, called when the exchange is over, queues the span when sampled and writes the
 * access log line when logged. With both off and no tap open, `handle` is one call to the next
 * handler: no allocation, no header touched.
 */
import { performance } from 'node:perf_hooks';
import type { ProxySnapshot, TelemetryConfig } from '../../model/snapshot.js';
import { controlPlaneId, parseSpiffeId } from '../../core/identity/spiffe.js';
import type { Handler, ProxyRequest, ProxyResponse, RequestContext } from '../message.js';
import { expectSpiffeId } from '../tls/peer-identity.js';
import type { WorkloadIdentity } from '../tls/workload-identity.js';
import { AccessLogWriter, RESPONSE_FLAGS, type AccessLogEntry } from './access-log.js';
import { SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, int, str, unixNanos, type KeyValue, type OtlpSpan } from './otlp.js';
import { SpanExporter, collectorTarget, targetPool, type ExportReport, type ExportTarget } from './span-exporter.js';
import type { ClientTls } from '../http1/simple-client.js';
import { B3Form, formatTraceparent, newSpanId, newTraceId, parseB3Multi, parseB3Single, parseTraceparent, type IncomingTrace } from './trace-context.js';

/** What telemetry keeps of one exchange between `handle` and `finish`. */
export interface ExchangeTelemetry {
  /** '' when tracing is off and the request carried no valid traceparent. */
  traceId: string;
  /** This hop's span; '' when tracing is off. */
  spanId: string;
  /** The caller's span; '' for a root. */
  parentId: string;
  traceState: string | undefined;
  sampled: boolean;
  logged: boolean;
  /** The request as received, before routes rewrite it. */
  method: string;
  path: string;
  authority: string;
  userAgent: string | undefined;
  forwardedFor: string | undefined;
  grpc: boolean;
}

/** Counters telemetry feeds: spans by target and result, access log lines dropped. */
export interface TelemetryReports {
  spans: ExportReport;
  accessLogDropped: () => void;
}

/** performance.now() + this = milliseconds since the epoch. */
const WALL_OFFSET = performance.timeOrigin;

export class Telemetry {
  private tracing: TelemetryConfig['tracing'] = null;
  /** Percent of exchanges logged; -1 when access logs are off. */
  private logPercent = -1;
  private readonly exporter: SpanExporter;
  private readonly log: AccessLogWriter;
  private collector: ExportTarget | null = null;
  /** The control plane as a span target (set when the proxy has one and an identity to show it). */
  private controlPlane: ExportTarget | null = null;

  constructor(reports: TelemetryReports) {
    this.exporter = new SpanExporter(reports.spans);
    this.log = new AccessLogWriter(reports.accessLogDropped);
  }

  /** Set while a tap concerns this proxy (tap.ts): every exchange then keeps what a tap event shows. */
  tapping = false;

  /** True when the configuration in force traces or logs. */
  get active(): boolean {
    return this.tracing !== null || this.logPercent >= 0;
  }

  /**
   * Sends spans to the control plane at `url` too (`POST /v1/traces` on its API port), over mutual TLS
   * with the proxy's certificate, checking the server is the control plane of the same trust domain.
   */
  exportToControlPlane(url: string, identity: WorkloadIdentity): void {
    const endpoint = new URL('/v1/traces', url);
    endpoint.protocol = 'https:';
    this.controlPlane = {
      name: 'control-plane',
      url: endpoint.href,
      pool: targetPool(),
      options: (): ClientTls | null => {
        const tls = identity.tlsOptions();
        const id = identity.spiffeId === null ? null : parseSpiffeId(identity.spiffeId);
        if (tls === null || id === null) return null;
        return { ...tls, minVersion: 'TLSv1.3', checkServerIdentity: expectSpiffeId(controlPlaneId(id.trustDomain)) };
      },
    };
    this.updateTargets();
  }

  /** Reads the Mesh's tracing and access log settings from a new configuration. */
  apply(snapshot: ProxySnapshot): void {
    const t = snapshot.telemetry;
    this.tracing = t?.tracing ?? null;
    const endpoint = this.tracing?.otlpEndpoint ?? null;
    if (endpoint !== (this.collector?.url ?? null)) this.collector = endpoint === null ? null : collectorTarget(endpoint);
    this.updateTargets();
    const w = snapshot.workload;
    this.exporter.resource = {
      attributes: [
        str('service.name', w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? w.name),
        str('service.namespace', w.namespace),
        str('service.instance.id', `${w.name}.${w.namespace}`),
        str('weft.workload', w.name),
        str('weft.identity', w.identity),
      ],
    };
    const a = t?.accessLog ?? null;
    this.logPercent = a === null ? -1 : a.samplingPercent;
    if (a !== null) this.log.open(a.path === null ? null : a.path.replaceAll('{workload}', w.name).replaceAll('{namespace}', w.namespace));
  }

  private updateTargets(): void {
    const targets: ExportTarget[] = [];
    if (this.collector !== null) targets.push(this.collector);
    if (this.controlPlane !== null) targets.push(this.controlPlane);
    this.exporter.targets = targets;
  }

  /** Runs `next` for one exchange, with its span made and propagated, and its log decided. */
  handle(req: ProxyRequest, ctx: RequestContext, next: Handler): Promise<ProxyResponse> {
    const tracing = this.tracing;
    const p = this.logPercent;
    if (tracing === null && p < 0 && !this.tapping) return next(req, ctx);
    const logged = p >= 100 || (p > 0 && Math.random() * 100 < p);
    if (tracing === null && !logged && !this.tapping) return next(req, ctx);
    const t: ExchangeTelemetry = {
      traceId: '',
      spanId: '',
      parentId: '',
      traceState: undefined,
      sampled: false,
      logged,
      method: req.method,
      path: req.path,
      authority: req.authority,
      userAgent: undefined,
      forwardedFor: undefined,
      grpc: false,
    };
    readHeaders(req.headers, t, tracing === null ? -1 : tracing.samplingPercent);
    ctx.telemetry = t;
    return next(req, ctx);
  }

  /** The exchange is over: queue its span, write its log line. */
  finish(ctx: RequestContext, status: number, errorCode: string, grpcStatus: string): void {
    const t = ctx.telemetry;
    if (t === undefined) return;
    const end = performance.now();
    if (t.sampled && this.tracing !== null) this.exporter.add(span(ctx, t, status, errorCode, grpcStatus, end));
    if (t.logged) this.log.write(JSON.stringify(logEntry(ctx, t, status, errorCode, grpcStatus, end)));
  }

  /** Sends the spans queued and closes the log. */
  async close(): Promise<void> {
    await Promise.all([this.exporter.close(), this.log.close()]);
  }
}

/**
 * One pass over the request's fields: the caller's trace context (with tracing on, `sampling` the
 * percent of new traces kept; -1 off) and what the log wants. With tracing on, the request leaves
 * with this hop's span as its parent, in W3C form and, if the caller used B3, in B3 form too.
 */
function readHeaders(h: string[], t: ExchangeTelemetry, sampling: number): void {
  let traceparent: string | undefined;
  let traceparents = 0;
  let b3: string | undefined;
  let xTrace: string | undefined;
  let xSpan: string | undefined;
  let xSampled: string | undefined;
  let xFlags: string | undefined;
  let multi = false;
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i]!;
    const c = n.charCodeAt(0);
    if (c === 0x74 /* t */) {
      if (n === 'traceparent') {
        traceparent = h[i + 1];
        traceparents++;
      } else if (n === 'tracestate') t.traceState = t.traceState === undefined ? h[i + 1] : `${t.traceState},${h[i + 1]}`;
    } else if (c === 0x62 /* b */) {
      if (n === 'b3') b3 = h[i + 1];
    } else if (c === 0x78 /* x */) {
      if (n === 'x-forwarded-for') t.forwardedFor = h[i + 1];
      else if (n.startsWith('x-b3-')) {
        multi = true;
        if (n === 'x-b3-traceid') xTrace = h[i + 1];
        else if (n === 'x-b3-spanid') xSpan = h[i + 1];
        else if (n === 'x-b3-sampled') xSampled = h[i + 1];
        else if (n === 'x-b3-flags') xFlags = h[i + 1];
      }
    } else if (c === 0x75 /* u */) {
      if (n === 'user-agent') t.userAgent = h[i + 1];
    } else if (c === 0x63 /* c */) {
      if (n === 'content-type') t.grpc = h[i + 1]!.startsWith('application/grpc');
    }
  }
  // W3C: more than one traceparent is as good as none (and so is its tracestate).
  const w3c = traceparents === 1 ? parseTraceparent(traceparent!) : null;
  if (sampling < 0) {
    if (w3c !== null) t.traceId = w3c.traceId;
    return;
  }
  let incoming: IncomingTrace | null = w3c;
  let decision: boolean | null = null;
  const form = b3 !== undefined ? B3Form.Single : multi ? B3Form.Multi : B3Form.None;
  if (incoming === null && form !== B3Form.None) {
    const parsed = form === B3Form.Single ? parseB3Single(b3!) : parseB3Multi(xTrace, xSpan, xSampled, xFlags);
    if (parsed !== null && 'traceId' in parsed) incoming = parsed;
    else if (parsed !== null) decision = parsed.sampled;
  }
  if (w3c === null && t.traceState !== undefined) {
    // A tracestate belongs to the traceparent it came with; a new trace starts without it.
    t.traceState = undefined;
    removeField(h, 'tracestate');
  }
  t.traceId = incoming?.traceId ?? newTraceId();
  t.parentId = incoming?.parentId ?? '';
  t.spanId = newSpanId();
  t.sampled = incoming?.sampled ?? decision ?? (sampling >= 100 || (sampling > 0 && Math.random() * 100 < sampling));
  setField(h, 'traceparent', formatTraceparent(t.traceId, t.spanId, t.sampled));
  const s = t.sampled ? '1' : '0';
  if (form === B3Form.Single) {
    setField(h, 'b3', t.parentId === '' ? `${t.traceId}-${t.spanId}-${s}` : `${t.traceId}-${t.spanId}-${s}-${t.parentId}`);
  } else if (form === B3Form.Multi) {
    setField(h, 'x-b3-traceid', t.traceId);
    setField(h, 'x-b3-spanid', t.spanId);
    if (t.parentId === '') removeField(h, 'x-b3-parentspanid');
    else setField(h, 'x-b3-parentspanid', t.parentId);
    if (xFlags !== '1') setField(h, 'x-b3-sampled', s);
  }
}

function removeField(h: string[], name: string): void {
  let w = 0;
  for (let r = 0; r < h.length; r += 2) {
    if (h[r] !== name) {
      h[w++] = h[r]!;
      h[w++] = h[r + 1]!;
    }
  }
  h.length = w;
}

/**
 * Replaces the first field named `name` (dropping any others), or appends it. Only the fields after
 * a second occurrence move; a request without the field (the usual case) is only read, then appended to.
 */
function setField(h: string[], name: string, value: string): void {
  let first = -1;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] !== name) continue;
    if (first !== -1) {
      removeFrom(h, name, i);
      break;
    }
    first = i;
    h[i + 1] = value;
  }
  if (first === -1) h.push(name, value);
}

/** Removes the fields named `name` at `from` and after. */
function removeFrom(h: string[], name: string, from: number): void {
  let w = from;
  for (let r = from; r < h.length; r += 2) {
    if (h[r] !== name) {
      h[w++] = h[r]!;
      h[w++] = h[r + 1]!;
    }
  }
  h.length = w;
}

function hostOf(hostPort: string): { host: string; port: number | null } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(hostPort);
  return m === null ? { host: hostPort, port: null } : { host: m[1]!, port: m[2] === undefined ? null : Number(m[2]) };
}

function span(ctx: RequestContext, t: ExchangeTelemetry, status: number, errorCode: string, grpcStatus: string, end: number): OtlpSpan {
  const server = ctx.direction === 'inbound';
  const q = t.path.indexOf('?');
  const authority = hostOf(t.authority);
  const attributes: KeyValue[] = [
    str('http.request.method', t.method),
    str('url.path', q === -1 ? t.path : t.path.slice(0, q)),
    str('url.scheme', 'http'),
    str('server.address', authority.host),
    int('http.response.status_code', status),
    str('network.protocol.version', ctx.protocol === 'HTTP/2' ? '2' : ctx.protocol === 'HTTP/1.0' ? '1.0' : '1.1'),
    str('weft.direction', ctx.direction),
    str('weft.route', ctx.route),
    str('weft.destination_service', ctx.destination),
    str('weft.request_id', ctx.requestId),
  ];
  if (q !== -1) attributes.push(str('url.query', t.path.slice(q + 1)));
  if (authority.port !== null) attributes.push(int('server.port', authority.port));
  if (t.userAgent !== undefined) attributes.push(str('user_agent.original', t.userAgent));
  if (server) {
    attributes.push(str('client.address', ctx.clientAddress));
    if (ctx.peerIdentity !== null) attributes.push(str('weft.peer.identity', ctx.peerIdentity));
  } else {
    if (ctx.upstreamHost !== '') {
      const peer = hostOf(ctx.upstreamHost);
      attributes.push(str('network.peer.address', peer.host));
      if (peer.port !== null) attributes.push(int('network.peer.port', peer.port));
    }
    if (ctx.destinationIdentity !== '') attributes.push(str('weft.peer.identity', ctx.destinationIdentity));
  }
  if (errorCode !== '') attributes.push(str('weft.error_code', errorCode));
  const grpc = grpcStatus !== '' && grpcStatus !== 'none' ? Number(grpcStatus) : null;
  if (grpcStatus !== '') attributes.push(str('rpc.system', 'grpc'));
  if (grpc !== null && Number.isInteger(grpc)) attributes.push(int('rpc.grpc.status_code', grpc));
  // OTel HTTP conventions: 5xx is an error on both sides, 4xx only for the client.
  const failed = errorCode !== '' || status >= 500 || (!server && status >= 400) || (grpc !== null && grpc !== 0 && (!server || [2, 4, 12, 13, 14, 15].includes(grpc)));
  const out: OtlpSpan = {
    traceId: t.traceId,
    spanId: t.spanId,
    name: `${t.method} ${ctx.destination !== '' ? ctx.destination : authority.host}`,
    kind: server ? SPAN_KIND_SERVER : SPAN_KIND_CLIENT,
    startTimeUnixNano: unixNanos(WALL_OFFSET + ctx.start),
    endTimeUnixNano: unixNanos(WALL_OFFSET + end),
    attributes,
    status: failed ? { code: STATUS_ERROR, message: errorCode !== '' ? errorCode : `HTTP ${status}` } : { code: STATUS_UNSET },
  };
  if (t.parentId !== '') out.parentSpanId = t.parentId;
  if (t.traceState !== undefined) out.traceState = t.traceState;
  return out;
}

function logEntry(ctx: RequestContext, t: ExchangeTelemetry, status: number, errorCode: string, grpcStatus: string, end: number): AccessLogEntry {
  return {
    start_time: new Date(WALL_OFFSET + ctx.start).toISOString(),
    direction: ctx.direction,
    method: t.method,
    path: t.path,
    protocol: ctx.protocol ?? 'HTTP/1.1',
    response_code: status,
    response_flags: errorCode === '' ? '-' : (RESPONSE_FLAGS[errorCode] ?? '-'),
    weft_error: errorCode === '' ? null : errorCode,
    grpc_status: grpcStatus === '' ? null : grpcStatus,
    bytes_received: ctx.bytesReceived,
    bytes_sent: ctx.bytesSent,
    duration: Math.round((end - ctx.start) * 1000) / 1000,
    upstream_host: ctx.upstreamHost === '' ? null : ctx.upstreamHost,
    upstream_cluster: ctx.destination === '' ? null : ctx.destination,
    route_name: ctx.route === '' ? null : ctx.route,
    authority: t.authority,
    request_id: ctx.requestId,
    trace_id: t.traceId === '' ? null : t.traceId,
    downstream_remote_address: ctx.clientAddress,
    downstream_peer_identity: ctx.peerIdentity,
    user_agent: t.userAgent ?? null,
    x_forwarded_for: t.forwardedFor ?? null,
  };
}
