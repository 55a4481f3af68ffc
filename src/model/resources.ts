/**
 * The resource kinds users write, in Kubernetes' shape. Loaded resources have passed validation and
 * carry `metadata.namespace` and `metadata.labels` filled in; spec defaults are applied by the compiler,
 * so a resource reads back as it was written.
 */
import type { AppProtocol, HashPolicy, LoadBalancerType } from './snapshot.js';

/** A Gateway API duration (GEP-2257): `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, e.g. `1m30s`; `0s` means none. */
export type Duration = string;

/** Kubernetes object metadata, as far as Weft reads it. */
export interface ObjectMeta {
  name: string;
  /** `default` when not written. */
  namespace: string;
  /** `{}` when not written. */
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  /** RFC 3339; orders otherwise tied routes and policies (oldest first). */
  creationTimestamp?: string;
  /** Set by the control plane: bumped on every change of the resource. */
  generation?: number;
  /** Set by the control plane: the store revision of the last write. */
  resourceVersion?: string;
}

interface KubeObject<A extends string, K extends string, S> {
  apiVersion: A;
  kind: K;
  metadata: ObjectMeta;
  spec: S;
}

export const WEFT_V1ALPHA1 = 'weft.dev/v1alpha1';
export type WeftApiVersion = typeof WEFT_V1ALPHA1;

/** Mutual TLS mode between proxies. */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLED';

/** Mesh-wide settings; at most one per mesh. */
export type Mesh = KubeObject<WeftApiVersion, 'Mesh', MeshSpec>;
export interface MeshSpec {
  /** SPIFFE trust domain; `cluster.local` by default. */
  trustDomain?: string;
  mtls?: { mode: MtlsMode };
  certificateLifetime?: Duration;
  defaults?: { connectTimeout?: Duration; loadBalancer?: LoadBalancerType; /** For every destination without a BackendPolicy `timeouts` field. */ timeouts?: BackendTimeouts };
  /** Where RateLimitPolicies' `global` limits are counted; see docs/resources.md#ratelimitpolicy. */
  rateLimiting?: { redis: { /** `host:port` (`[v6]:port`). */ address: string; /** Longest wait for Redis before `failureMode` applies; 50ms by default. */ timeout?: Duration } };
  /** Distributed tracing; absent: off. See docs/observability.md. */
  tracing?: MeshTracing;
  /** Access logs; absent: off. See docs/observability.md. */
  accessLog?: MeshAccessLog;
}

/** Mesh `spec.tracing`. */
export interface MeshTracing {
  /** Percent (0-100) of new traces recorded; 1 by default. A caller's sampled flag decides for its own traces. */
  sampling?: number;
  /** An OTLP/HTTP collector spans also go to (JSON), e.g. `http://127.0.0.1:4318/v1/traces`. */
  otlp?: { endpoint: string };
}

/** Mesh `spec.accessLog`. */
export interface MeshAccessLog {
  mode: 'On' | 'Off' | 'Sampled';
  /** Percent (0-100) of exchanges logged; required with mode Sampled, only then. */
  sampling?: number;
  /** An absolute file path (`{workload}` and `{namespace}` are replaced); stdout when absent. */
  path?: string;
}

/** A logical service: named ports over the workloads its selector matches. */
export type Service = KubeObject<WeftApiVersion, 'Service', ServiceSpec>;
export interface ServiceSpec {
  selector: Record<string, string>;
  ports: ServicePort[];
}
/** One port of a Service. */
export interface ServicePort {
  name: string;
  port: number;
  /**
   * Left out, the port is *undeclared*: HTTP for callers that address it by authority (its virtual
   * host), and protocol detection on `--upstream` local ports (see docs/resources.md).
   */
  protocol?: AppProtocol;
  /** A Workload port name, or a number used as is; the port's own name by default. */
  targetPort?: string | number;
}

/** One instance of an app: where it listens, and its proxy's inbound port when it has one. */
export type Workload = KubeObject<WeftApiVersion, 'Workload', WorkloadSpec>;
export interface WorkloadSpec {
  /** IPv4 or IPv6 literal, or a hostname. */
  address: string;
  /** App ports by name. */
  ports: Record<string, number>;
  /** `default` by default. */
  serviceAccount?: string;
  proxy?: { inboundPort: number };
  /** Services this workload calls (`name`, `namespace/name`, `namespace/*`); its proxy learns only those. Absent: all. */
  calls?: string[];
  /** Relative share of traffic this workload's endpoints take from load balancers, 1-128; 1 by default. */
  weight?: number;
}

/** A BackendPolicy's balancer; see docs/resources.md#load-balancing. */
export interface LoadBalancerSpec {
  type: LoadBalancerType;
  /** PeakEWMA only: the time constant of the latency average; 10s by default. */
  decay?: Duration;
  /** RingHash only: the least number of entries on the ring; 1024 by default. */
  minimumRingSize?: number;
  /** Maglev only: the lookup table size, a prime; 65537 by default. */
  tableSize?: number;
  /** RingHash and Maglev (required there): the request's key. */
  hashOn?: HashPolicy;
}

/** Per-destination settings for the Services it targets. */
export type BackendPolicy = KubeObject<WeftApiVersion, 'BackendPolicy', BackendPolicySpec>;
export interface BackendPolicySpec {
  targetRefs: Array<{ group?: ''; kind: 'Service'; name: string }>;
  loadBalancer?: LoadBalancerSpec;
  /**
   * Locality-aware routing: prefer endpoints in the caller's zone, then region, failing over as their
   * health drops. On by default when the calling workload has a topology zone or region label.
   */
  locality?: { enabled?: boolean; overprovisioningFactor?: number };
  connectTimeout?: Duration;
  /**
   * Caps the retries sent to the targeted Services (Linkerd/Finagle style): each request deposits
   * `percent`/100 of a retry, plus `minRetriesPerSecond` always allowed. Defaults 20 and 10.
   */
  retryBudget?: { percent?: number; minRetriesPerSecond?: number };
  /**
   * Circuit breaking (Envoy's thresholds): per destination, the most connections, requests waiting
   * for a connection, requests in flight and retries in flight. Each defaults to 1024.
   */
  circuitBreaker?: { maxConnections?: number; maxPendingRequests?: number; maxRequests?: number; maxRetries?: number };
  /** Idle and stream-idle timeouts towards the targeted Services. See docs/resources.md#timeouts. */
  timeouts?: BackendTimeouts;
  /**
   * Passive health (Envoy's outlier detection): an endpoint that fails too often in a row, or (with
   * `successRate`) much more often than its peers, is ejected for a while. See
   * docs/resources.md#outlier-detection for the defaults.
   */
  outlierDetection?: OutlierDetectionSpec;
  /** Active health checks: each proxy probes the endpoints it sends to. See docs/resources.md#health-checks. */
  healthCheck?: HealthCheckSpec;
}
export interface OutlierDetectionSpec {
  /** 5xx answers and mesh upstream errors in a row that eject; default 5, 0 turns it off. */
  consecutive5xx?: number;
  /** 502, 503, 504 and mesh upstream errors (connect, reset, timeout) in a row that eject; default 0 (off). */
  consecutiveGatewayErrors?: number;
  /** Connect failures in a row (HTTP and TCP) that eject; default 5, 0 turns it off. */
  consecutiveConnectFailures?: number;
  /** How often success rates are compared and ejection counts decay; default 10s. */
  interval?: Duration;
  /** An ejection lasts this times the endpoint's number of ejections; default 30s. */
  baseEjectionTime?: Duration;
  /** The longest one ejection lasts; default 300s. */
  maxEjectionTime?: Duration;
  /** The most endpoints ejected at once, in % (always at least one); default 10. */
  maxEjectionPercent?: number;
  /** Success-rate ejection, off unless set (Envoy's fields; `stdevFactor` in thousandths: 1900 is 1.9). */
  successRate?: { minimumHosts?: number; requestVolume?: number; stdevFactor?: number };
}
export interface HealthCheckSpec {
  /** An HTTP GET of `path`; healthy when the status is one of `expectedStatuses` (default 200-299). */
  http?: { path: string; expectedStatuses?: number[] };
  /** A connection (through the endpoint's proxy, a tunnel) that opens. */
  tcp?: Record<string, never>;
  /** Between checks of one endpoint, jittered by up to 10 %; default 5s. */
  interval?: Duration;
  /** A check that takes longer fails; default 1s. */
  timeout?: Duration;
  /** Checks passed in a row that bring a failing endpoint back; default 1. */
  healthyThreshold?: number;
  /** Checks failed in a row that take an endpoint out; default 2. */
  unhealthyThreshold?: number;
}

/** Timeouts of a destination (Envoy's cluster `idle_timeout` and route `idle_timeout`); `0s` turns one off. */
export interface BackendTimeouts {
  /** An upstream connection with no request in flight is closed after this; default 60s. */
  idle?: Duration;
  /** A request or response that makes no progress (no byte either way) for this long is cut; default 5m. */
  streamIdle?: Duration;
  /** A forwarded TCP connection that moves no byte either way for this long is closed; default 1h. */
  tcpIdle?: Duration;
}

/**
 * Who may call the Services it targets, enforced by the inbound side of the proxies beside their
 * workloads. DENY policies win over ALLOW policies; once an ALLOW policy covers a port, only what
 * some ALLOW policy matches gets through. See docs/resources.md#authorizationpolicy.
 */
export type AuthorizationPolicy = KubeObject<WeftApiVersion, 'AuthorizationPolicy', AuthorizationPolicySpec>;
export interface AuthorizationPolicySpec {
  /** Services in the policy's own namespace. */
  targetRefs: Array<{ group?: ''; kind: 'Service'; name: string }>;
  /** `ALLOW` by default. */
  action?: AuthorizationAction;
  /** A request matches the policy if any rule matches; none (or `[]`) matches nothing; `{}` matches everything. */
  rules?: AuthorizationRule[];
}
export type AuthorizationAction = 'ALLOW' | 'DENY';
/** Every present part must match: some `from` entry, some `to` entry, and every `when` condition. */
export interface AuthorizationRule {
  from?: AuthorizationSource[];
  to?: AuthorizationOperation[];
  when?: AuthorizationCondition[];
}
/** Who calls; every present field must match. Patterns use `*` for any run of characters. */
export interface AuthorizationSource {
  /** SPIFFE IDs, e.g. `spiffe://cluster.local/ns/shop/sa/*`. */
  identities?: string[];
  /** The caller's namespace, as its SPIFFE ID names it. */
  namespaces?: string[];
}
/** What is called; every present field must match. */
export interface AuthorizationOperation {
  /** Ports of the targeted Service (not app ports). */
  ports?: number[];
  /** Exact, upper-case HTTP methods. */
  methods?: string[];
  /** `/exact`, `/prefix/*`, or a glob with `*` anywhere; `*` alone matches any path. */
  paths?: string[];
}
/** A request header condition: exactly one of `values` and `notValues`. */
export interface AuthorizationCondition {
  /** Header name, case-insensitive. */
  header: string;
  /** Matches when the header is present and some value matches one of these patterns. */
  values?: string[];
  /** Matches when the header is absent or no value matches any of these patterns. */
  notValues?: string[];
}

/**
 * Request rate limits for the Services it targets, enforced by the inbound side of the proxies
 * beside their workloads, after authorization: a token bucket per proxy (`local`) and/or a count
 * shared by every proxy through Redis (`global`). See docs/resources.md#ratelimitpolicy.
 */
export type RateLimitPolicy = KubeObject<WeftApiVersion, 'RateLimitPolicy', RateLimitPolicySpec>;
export interface RateLimitPolicySpec {
  /** Services in the policy's own namespace. */
  targetRefs: Array<{ group?: ''; kind: 'Service'; name: string }>;
  /** What separates buckets; absent: one bucket for all callers. */
  key?: RateLimitKey;
  /** A token bucket in each proxy: `requests` every `per`, up to `burst` at once (`requests` by default). */
  local?: { requests: number; per: Duration; burst?: number };
  /** A fixed window shared by every proxy through the Mesh's Redis: `requests` per `per`. */
  global?: { requests: number; per: Duration };
  /** When Redis is unreachable, slow or not configured: `FailOpen` (default) lets requests through. */
  failureMode?: 'FailOpen' | 'FailClosed';
}
/** `SourceIdentity`: the caller's SPIFFE ID (one bucket for callers without one); `Header`: a request header's value; `ClientAddress`: the peer address. */
export type RateLimitKey = { type: 'SourceIdentity' } | { type: 'ClientAddress' } | { type: 'Header'; header: string };

export const GATEWAY_V1 = 'gateway.networking.k8s.io/v1';
export const GATEWAY_V1BETA1 = 'gateway.networking.k8s.io/v1beta1';
export const GATEWAY_V1ALPHA2 = 'gateway.networking.k8s.io/v1alpha2';

/** A route's attachment to a Service (GAMMA); without `port` it attaches to every fitting port. */
export interface ServiceParentRef {
  group?: '';
  kind: 'Service';
  name: string;
  namespace?: string;
  port?: number;
}

/** A weighted reference to a Service port that receives a route's traffic. */
export interface BackendRef {
  group?: '';
  kind?: 'Service';
  name: string;
  namespace?: string;
  port: number;
  /** 1 by default; 0 keeps the backend but sends it nothing. */
  weight?: number;
}

/** Gateway API HTTPRoute attached to Services. */
export type HTTPRoute = KubeObject<typeof GATEWAY_V1 | typeof GATEWAY_V1BETA1, 'HTTPRoute', HTTPRouteSpec>;
export interface HTTPRouteSpec {
  parentRefs: ServiceParentRef[];
  /** Accepted for compatibility; mesh routes select by parent Service, not by hostname. */
  hostnames?: string[];
  rules?: HTTPRouteRule[];
}
export interface HTTPRouteRule {
  matches?: HTTPRouteMatch[];
  filters?: HTTPRouteFilter[];
  backendRefs?: HTTPBackendRef[];
  timeouts?: { request?: Duration; backendRequest?: Duration };
  retry?: HTTPRouteRetry;
}
/**
 * Gateway API HTTPRouteRetry (GEP-1731): `codes`, `attempts`, `backoff`; plus two Weft extensions.
 * The per-try timeout is the rule's `timeouts.backendRequest` (GEP-1742). See docs/resources.md#retries.
 */
export interface HTTPRouteRetry {
  /** Response status codes (400-599) that are retried. */
  codes?: number[];
  /** Retries after the first try (default 1). */
  attempts?: number;
  /** Minimum wait before a retry (default 25ms); jittered above it, growing per retry. */
  backoff?: Duration;
  /** Weft: retry a connect failure or a reset before any response byte (default true). */
  onConnectFailure?: boolean;
  /** Weft: also retry non-idempotent methods (POST, PATCH, …) (default false). */
  allowNonIdempotent?: boolean;
}
export interface HTTPRouteMatch {
  /** `PathPrefix /` by default. */
  path?: { type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; value?: string };
  headers?: HTTPValueMatch[];
  queryParams?: HTTPValueMatch[];
  method?: string;
}
/** A header or query parameter match; `Exact` by default. */
export interface HTTPValueMatch {
  type?: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}
export type HTTPRouteFilter =
  | { type: 'RequestHeaderModifier'; requestHeaderModifier: HTTPHeaderFilter }
  | { type: 'ResponseHeaderModifier'; responseHeaderModifier: HTTPHeaderFilter }
  | { type: 'URLRewrite'; urlRewrite: { hostname?: string; path?: HTTPPathModifier } }
  | { type: 'RequestRedirect'; requestRedirect: HTTPRequestRedirect }
  /** Gateway API custom filter: Weft knows one, `weft.dev` `HTTPFault`, named in the route's namespace. */
  | { type: 'ExtensionRef'; extensionRef: LocalObjectReference }
  /** A copy of (a share of) the requests to another Service, fire and forget; may repeat. */
  | { type: 'RequestMirror'; requestMirror: HTTPRequestMirror };
/** Gateway API LocalObjectReference, as an ExtensionRef filter names its extension. */
export interface LocalObjectReference {
  group: 'weft.dev';
  kind: 'HTTPFault';
  name: string;
}
export interface HTTPHeaderFilter {
  set?: Array<{ name: string; value: string }>;
  add?: Array<{ name: string; value: string }>;
  remove?: string[];
}
export type HTTPPathModifier =
  | { type: 'ReplaceFullPath'; replaceFullPath: string }
  | { type: 'ReplacePrefixMatch'; replacePrefixMatch: string };
export interface HTTPRequestRedirect {
  scheme?: 'http' | 'https';
  hostname?: string;
  path?: HTTPPathModifier;
  port?: number;
  /** 302 by default. */
  statusCode?: 301 | 302;
}
export interface HTTPBackendRef extends BackendRef {
  filters?: HTTPRouteFilter[];
}

/**
 * Gateway API GRPCRoute attached to Services' GRPC and HTTP2 ports. A gRPC call is `POST
 * /<service>/<method>` over HTTP/2; the compiler turns method matches into path matches.
 */
export type GRPCRoute = KubeObject<typeof GATEWAY_V1 | typeof GATEWAY_V1ALPHA2, 'GRPCRoute', GRPCRouteSpec>;
export interface GRPCRouteSpec {
  parentRefs: ServiceParentRef[];
  /** Accepted for compatibility; mesh routes select by parent Service, not by hostname. */
  hostnames?: string[];
  rules?: GRPCRouteRule[];
}
export interface GRPCRouteRule {
  /** None (or `[]`): every call. */
  matches?: GRPCRouteMatch[];
  filters?: GRPCRouteFilter[];
  backendRefs?: GRPCBackendRef[];
  /** Weft (the Gateway API's GRPCRoute has none): retries on gRPC status codes. See docs/resources.md#retries. */
  retry?: GRPCRouteRetry;
}
/** Weft's GRPCRoute retry: HTTPRouteRetry's shape, with gRPC status code names for `codes`. */
export interface GRPCRouteRetry {
  /** gRPC status code names (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`, …) of trailers-only answers that are retried. */
  codes?: string[];
  /** Retries after the first try (default 1). */
  attempts?: number;
  /** Minimum wait before a retry (default 25ms); jittered above it, growing per retry. */
  backoff?: Duration;
  /** Retry a connect failure or a reset before any response byte (default true). */
  onConnectFailure?: boolean;
}
export interface GRPCRouteMatch {
  /** Absent: every service and method. */
  method?: GRPCMethodMatch;
  /** Header (gRPC metadata) matches, all of which must match; `Exact` by default. */
  headers?: HTTPValueMatch[];
}
/** At least one of `service` and `method`; `Exact` by default (case-sensitive), or ECMAScript regular expressions. */
export interface GRPCMethodMatch {
  type?: 'Exact' | 'RegularExpression';
  /** Fully qualified service, e.g. `shop.v1.Catalog`; absent or empty: any. */
  service?: string;
  /** Method, e.g. `GetItem`; absent or empty: any. */
  method?: string;
}
export type GRPCRouteFilter =
  | { type: 'RequestHeaderModifier'; requestHeaderModifier: HTTPHeaderFilter }
  | { type: 'ResponseHeaderModifier'; responseHeaderModifier: HTTPHeaderFilter }
  /** A copy of (a share of) the calls to another Service, fire and forget; may repeat. */
  | { type: 'RequestMirror'; requestMirror: HTTPRequestMirror };
/** Gateway API HTTPRequestMirrorFilter (GEP-3171 adds `percent` and `fraction`); neither: every request. */
export interface HTTPRequestMirror {
  backendRef: { group?: ''; kind?: 'Service'; name: string; namespace?: string; port: number };
  /** 0-100; not together with `fraction`. */
  percent?: number;
  /** `numerator`/`denominator` of requests; `denominator` 100 by default. */
  fraction?: { numerator: number; denominator?: number };
}
export interface GRPCBackendRef extends BackendRef {
  filters?: GRPCRouteFilter[];
}

/** Gateway API TCPRoute attached to Services' TCP ports. */
export type TCPRoute = KubeObject<typeof GATEWAY_V1ALPHA2, 'TCPRoute', TCPRouteSpec>;
export interface TCPRouteSpec {
  parentRefs: ServiceParentRef[];
  rules: Array<{ backendRefs: BackendRef[] }>;
}

/**
 * A process `weft up` runs beside its own sidecar: a local app. Its labels become its workload's
 * labels (so Services select it); the control plane itself never runs processes.
 */
export type App = KubeObject<WeftApiVersion, 'App', AppSpec>;
export interface AppSpec {
  /** Program and arguments, run from the mesh file's folder; `node` means the Node running weft. */
  command: string[];
  env?: Record<string, string>;
  /** Named ports the app listens on; 0 (or absent: `{ http: 0 }`) means chosen by `weft up`. `{}` for none. */
  ports?: Record<string, number>;
  /** `Always` by default; `Never` makes a one-shot job whose sidecar stops when it exits. */
  restart?: 'Always' | 'OnFailure' | 'Never';
  serviceAccount?: string;
  /** Services the app calls; its sidecar learns only those (see WorkloadSpec.calls). Absent: all. */
  calls?: string[];
}

/**
 * Fault injection for the HTTPRoute rules whose `ExtensionRef` filter names it: a delay, an abort,
 * or both, each for a percentage of requests. See docs/resources.md#httpfault.
 */
export type HTTPFault = KubeObject<WeftApiVersion, 'HTTPFault', HTTPFaultSpec>;
export interface HTTPFaultSpec {
  /** Hold the request `fixedDelay` before it goes on. */
  delay?: { fixedDelay: Duration; /** 0-100, fractions allowed; 100 by default. */ percentage?: number };
  /** Answer at once with `httpStatus` (and `weft-error: FAULT_INJECTED`) instead of forwarding. */
  abort?: { httpStatus: number; /** 0-100, fractions allowed; 100 by default. */ percentage?: number };
}

/** Any resource Weft reads. */
export type Resource = Mesh | Service | Workload | BackendPolicy | AuthorizationPolicy | RateLimitPolicy | HTTPRoute | GRPCRoute | TCPRoute | App | HTTPFault;
