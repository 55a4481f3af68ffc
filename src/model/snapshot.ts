/**
 * The compiled configuration of one proxy: plain, JSON-serialisable data, produced by the pure
 * compiler (`compile.ts`) and consumed by the data plane. Every name lookup the proxy would need is
 * resolved here, so the proxy only builds closures from it.
 *
 * Durations are milliseconds; 0 means "no timeout".
 */

/** Snapshot of everything one proxy needs, and nothing it does not. */
export interface ProxySnapshot {
  /** Content hash of the snapshot; equal snapshots have equal versions. */
  version: string;
  /** The workload this proxy stands beside. */
  workload: WorkloadInfo;
  /** Where the inbound listener forwards: this workload's app ports on loopback. */
  inbound: InboundConfig;
  /** Outbound HTTP virtual hosts, one per (service, port) whose protocol is HTTP-like. */
  virtualHosts: VirtualHost[];
  /**
   * Outbound TCP services, one per (service, port) whose protocol is TCP or undeclared (an
   * undeclared port has a virtual host too, and its TCP service has `detect`).
   */
  tcpServices: TcpService[];
  /** Every cluster a route or TCP service refers to, by name. */
  clusters: Cluster[];
  /** Mesh tracing and access logs; absent when both are off. */
  telemetry?: TelemetryConfig;
}

/** Mesh `spec.tracing` and `spec.accessLog`, resolved (docs/observability.md). */
export interface TelemetryConfig {
  /** null: no spans, trace headers pass through untouched. */
  tracing: { samplingPercent: number; otlpEndpoint: string | null } | null;
  /** null: no access log. `path` null is stdout; it may hold `{workload}` and `{namespace}`. */
  accessLog: { samplingPercent: number; path: string | null } | null;
}

export interface WorkloadInfo {
  name: string;
  namespace: string;
  address: string;
  serviceAccount: string;
  /** SPIFFE ID: `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
  identity: string;
  labels: Record<string, string>;
  /** App ports by name. */
  ports: Record<string, number>;
}

export interface InboundConfig {
  /** Address the app listens on (the workload address). */
  appAddress: string;
  /** App ports by name, as declared on the Workload. */
  ports: Record<string, number>;
  /**
   * What each app port speaks, keyed by port number (as a string): HTTP2 and GRPC ports get h2c
   * from the proxy, HTTP ports HTTP/1.1, TCP ports bytes. It comes from the ports of the Services
   * that select the workload and lead to that app port (`protocol`, HTTP by default); when two
   * disagree, the oldest Service (then the first by namespace/name, then port order) decides. Every
   * named app port is present (HTTP when no Service leads to it), and so is every numeric
   * `targetPort` of a selecting Service.
   */
  appProtocols: Record<string, AppProtocol>;
  /** The port inbound HTTP goes to when the request names none: the workload's only port, or the one named `http`. */
  defaultPort: number | null;
  /** Mutual TLS mode of the mesh (`Mesh.spec.mtls.mode`, STRICT by default). */
  mtlsMode: 'STRICT' | 'PERMISSIVE' | 'DISABLED';
  /** Who may call this workload's app ports. */
  authorization: InboundAuthorization;
  /** The RateLimitPolicies covering some app port; absent when none does. */
  rateLimits?: InboundRateLimits;
}

/**
 * The RateLimitPolicies that cover this workload, resolved to its app ports. Every policy covering a
 * request's app port applies, in order; the first that refuses answers 429 RATE_LIMITED.
 */
export interface InboundRateLimits {
  /** Mesh `spec.rateLimiting.redis`; null when not configured (a `global` limit then acts as its `failureMode`). */
  redis: { address: string; timeoutMs: number } | null;
  /** Oldest first, then by `namespace/name`. */
  policies: RateLimitPolicyConfig[];
}

/** One RateLimitPolicy as it applies to this workload. */
export interface RateLimitPolicyConfig {
  /** `namespace/name` of the RateLimitPolicy. */
  name: string;
  /** The app ports it covers, ascending. */
  appPorts: number[];
  /** `None`: one bucket for every caller. `header` is lowercase. */
  key: { type: 'None' } | { type: 'SourceIdentity' } | { type: 'ClientAddress' } | { type: 'Header'; header: string };
  /** Token bucket: `requests` tokens every `perMs`, holding at most `burst`. */
  local: { requests: number; perMs: number; burst: number } | null;
  /** Fixed window in Redis: `requests` per `perMs`, shared by every proxy. */
  global: { requests: number; perMs: number } | null;
  failureMode: 'FailOpen' | 'FailClosed';
}

/**
 * The AuthorizationPolicies that cover this workload, resolved to its app ports. Patterns stay
 * strings (`*` = any run of characters); the proxy compiles them once per update.
 *
 * For a request on an app port: a matching DENY policy covering the port denies it; otherwise, when
 * no ALLOW policy covers the port it is allowed; otherwise it is allowed iff a covering ALLOW policy
 * matches. Empty `policies`: everything is allowed.
 */
export interface InboundAuthorization {
  /** Policies covering at least one app port, oldest first, then by `namespace/name`. */
  policies: AuthorizationPolicyConfig[];
}

/** One AuthorizationPolicy as it applies to this workload. */
export interface AuthorizationPolicyConfig {
  /** `namespace/name` of the AuthorizationPolicy. */
  name: string;
  action: 'ALLOW' | 'DENY';
  /** The app ports it covers (the targeted Services' ports mapped to this workload), ascending. */
  appPorts: number[];
  /** A request matches the policy if any rule matches; empty matches nothing. */
  rules: AuthorizationRuleConfig[];
}

/** A rule: some `from` entry (null: any), some `to` entry (null: any), and every `when` condition. */
export interface AuthorizationRuleConfig {
  from: AuthorizationSourceConfig[] | null;
  to: AuthorizationOperationConfig[] | null;
  when: AuthorizationConditionConfig[];
}

/** Every non-null field must match. */
export interface AuthorizationSourceConfig {
  /** SPIFFE ID patterns. */
  identities: string[] | null;
  /** Caller namespace patterns (the namespace in the caller's SPIFFE ID). */
  namespaces: string[] | null;
}

/** Every non-null field must match. */
export interface AuthorizationOperationConfig {
  /** App ports (resolved from the Service ports written); empty matches nothing. */
  appPorts: number[] | null;
  /** Exact upper-case methods. */
  methods: string[] | null;
  /** Path patterns: no `*` exact, one trailing `*` a prefix, otherwise a glob; matched without the query string. */
  paths: string[] | null;
}

/** Exactly one of `values` and `notValues` is non-null. */
export interface AuthorizationConditionConfig {
  /** Lowercase header name. */
  header: string;
  /** Matches when the header is present and some value matches a pattern. */
  values: string[] | null;
  /** Matches when the header is absent or no value matches any pattern. */
  notValues: string[] | null;
}

export type AppProtocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'TCP';

/** One (service, port) reachable over HTTP; requests pick it by authority. */
export interface VirtualHost {
  /** `<service>.<namespace>:<port>` */
  name: string;
  service: string;
  namespace: string;
  port: number;
  protocol: AppProtocol;
  /**
   * Every lowercase authority that selects this host, e.g. `echo`, `echo:80`, `echo.default`,
   * `echo.default:80`, `echo.default.svc`, `echo.default.svc.cluster.local:80`. Forms without a port
   * are present only when the port is 80 or it is the service's only HTTP-like port.
   */
  domains: string[];
  /** Routes in precedence order: the first that matches wins. */
  routes: Route[];
}

/**
 * One match of one HTTPRoute or GRPCRoute rule (a rule with N matches yields N routes). A GRPCRoute
 * match is a path match on `/<service>/<method>` (see model/grpc.ts); a port's routes are all of
 * one kind.
 */
export interface Route {
  /** `<namespace>/<route-name>/rule/<i>/match/<j>`: stable, used as the metrics `route` label. */
  name: string;
  /** HTTPRoute or GRPCRoute `namespace/name`, or `default` for the implicit route to the service itself. */
  routeRef: string;
  match: RouteMatch;
  /** Request filters in declared order (header modifiers, URL rewrite, faults, mirrors). */
  requestFilters: RequestFilter[];
  /** Response header modifiers in declared order. */
  responseFilters: HeaderModifier[];
  /** Either a redirect (answered by the proxy), or weighted backends. */
  action: RouteAction;
  timeouts: RouteTimeouts;
  /** Retry policy; absent when the rule has none (no retry layer is built). */
  retry?: RetryPolicy;
}

/** A rule's `retry`, with defaults applied. */
export interface RetryPolicy {
  /** Status codes that are retried. */
  codes: number[];
  /** gRPC status codes retried when a call's answer is trailers-only (GRPCRoute); absent: none. */
  grpcCodes?: number[];
  /** Retries after the first try. */
  attempts: number;
  /** Minimum wait before a retry. */
  backoffMs: number;
  /** Retry UPSTREAM_CONNECT_FAILURE and UPSTREAM_RESET that came before any response byte. */
  onConnectFailure: boolean;
  /** Retry methods that are not idempotent too. */
  allowNonIdempotent: boolean;
}

/** A cluster's retry budget. */
export interface RetryBudget {
  /** Retries allowed per request, as a percentage (deposits expire after about 10 s). */
  percent: number;
  /** Retries allowed every second whatever the request volume. */
  minRetriesPerSecond: number;
}

export interface RouteMatch {
  path: PathMatch;
  /** Upper-case method, or null for any. */
  method: string | null;
  headers: HeaderMatch[];
  queryParams: QueryParamMatch[];
}

export type PathMatch =
  | { type: 'Exact'; value: string }
  | { type: 'PathPrefix'; value: string }
  | { type: 'RegularExpression'; value: string };

export interface HeaderMatch {
  /** Lowercase header name. */
  name: string;
  type: 'Exact' | 'RegularExpression';
  value: string;
}

export interface QueryParamMatch {
  /** Query parameter names are case-sensitive, kept as written. */
  name: string;
  type: 'Exact' | 'RegularExpression';
  value: string;
}

export type RequestFilter =
  | { type: 'RequestHeaderModifier'; modifier: HeaderModifier }
  | { type: 'URLRewrite'; hostname: string | null; path: PathRewrite | null }
  /** An ExtensionRef to an HTTPFault; `fault` null when it named none that exists (requests get 500 INVALID_BACKEND). */
  | { type: 'Fault'; ref: string; fault: FaultConfig | null }
  /**
   * A RequestMirror: a copy of `percent` (0-100, fractions allowed) of the requests goes to `cluster`,
   * with `-shadow` appended to the authority's host; the answer is discarded. Mirrors run after the
   * rule's other request filters, in declared order. `cluster` null: its backendRef did not resolve
   * (reported), nothing is mirrored.
   */
  | { type: 'RequestMirror'; cluster: string | null; percent: number };

/** An HTTPFault, resolved. */
export interface FaultConfig {
  /** Hold requests `ms` milliseconds, `percentage` (0-100) of them. */
  delay: { ms: number; percentage: number } | null;
  /** Answer `status` at once, for `percentage` (0-100) of requests. */
  abort: { status: number; percentage: number } | null;
}

export type PathRewrite =
  | { type: 'ReplaceFullPath'; value: string }
  /** `prefix` is the matched PathPrefix, `value` what replaces it. */
  | { type: 'ReplacePrefixMatch'; prefix: string; value: string };

export interface HeaderModifier {
  /** Lowercase names. */
  set: Array<{ name: string; value: string }>;
  add: Array<{ name: string; value: string }>;
  remove: string[];
}

export type RouteAction =
  | { type: 'forward'; backends: WeightedBackend[] }
  | { type: 'redirect'; redirect: Redirect };

export interface WeightedBackend {
  /** Cluster name, or null when the backendRef did not resolve (requests to it get 500 INVALID_BACKEND). */
  cluster: string | null;
  weight: number;
}

export interface Redirect {
  scheme: string | null;
  hostname: string | null;
  port: number | null;
  path: PathRewrite | null;
  statusCode: 301 | 302 | 303 | 307 | 308;
}

export interface RouteTimeouts {
  /** Whole request, from the first byte received to the last byte of the response; 0 = none. */
  requestMs: number;
  /** Each request to a backend, until its response headers; 0 = none. */
  backendRequestMs: number;
}

/** One (service, port) reached over opaque TCP. */
export interface TcpService {
  /** `<service>.<namespace>:<port>` */
  name: string;
  service: string;
  namespace: string;
  port: number;
  /** Weighted backends from a TCPRoute, or the service's own cluster. */
  backends: WeightedBackend[];
  /**
   * True for a Service port whose `protocol` was not declared: a connection to an `--upstream`
   * local port of it is told apart by its first bytes (protocol detection): HTTP/1 and HTTP/2 go
   * through the routes of `virtualHost`, anything else (TLS, other protocols, or nothing sent
   * within a short wait) is opaque TCP to `backends`. Absent for a port declared `TCP`, which is
   * opaque at once.
   */
  detect?: boolean;
  /** With `detect`: the `name` of the port's VirtualHost, whose routes serve the connections detected as HTTP. */
  virtualHost?: string;
}

/**
 * How a cluster picks an endpoint: RoundRobin (weighted), LeastRequest (power of two choices on
 * requests in flight per weight), PeakEWMA (power of two choices on latency × load), RingHash and
 * Maglev (consistent hashing on `Cluster.hash`).
 */
export type LoadBalancerType = 'RoundRobin' | 'LeastRequest' | 'PeakEWMA' | 'RingHash' | 'Maglev';

/** What a hashing balancer keys a request on: exactly one member is set. */
export interface HashPolicy {
  /** The first value of this request header. */
  header?: { name: string };
  /** The value of this cookie. */
  cookie?: { name: string };
  /** The client's address (the only key a TCP connection has). */
  sourceAddress?: true;
}

/** A hashing balancer's settings (RingHash, Maglev). */
export interface HashBalancing {
  on: HashPolicy;
  /** RingHash: the least number of entries on the ring (1024 by default). Maglev: the table size, a prime (65537 by default). */
  size: number;
}

/** Locality-aware routing as a BackendPolicy sets it. */
export interface LocalityPolicy {
  enabled: boolean;
  /** Percent: a locality tier takes traffic in proportion to its healthy fraction × this / 100 (140 by default). */
  overprovisioningFactor: number;
}

/** A set of endpoints of one (service, port), and how to reach them. */
export interface Cluster {
  /** `<service>.<namespace>:<port>` */
  name: string;
  service: string;
  namespace: string;
  port: number;
  protocol: AppProtocol;
  loadBalancer: LoadBalancerType;
  /** PeakEWMA only: the time constant of the latency average, in milliseconds. */
  ewmaDecayMs?: number;
  /** RingHash and Maglev only: what requests hash on, and the ring or table size. */
  hash?: HashBalancing;
  /**
   * Set when a BackendPolicy sets it. Absent, locality-aware routing is on (factor 140) whenever the
   * proxy's own workload has a `topology.kubernetes.io/zone` or `/region` label.
   */
  locality?: LocalityPolicy;
  connectTimeoutMs: number;
  /** Set when a BackendPolicy sets one; the proxy defaults to 20 % + 10/s. */
  retryBudget?: RetryBudget;
  /** Set when a BackendPolicy sets one (unset fields filled with 1024); the proxy defaults to 1024 each. */
  circuitBreaker?: CircuitBreakerLimits;
  /** Idle upstream connections close after this (0: never); set when a BackendPolicy or the Mesh sets it, the proxy defaults to 60 s. */
  idleTimeoutMs?: number;
  /** An exchange with no progress either way for this long is cut (0: never); set when a BackendPolicy or the Mesh sets it, the proxy defaults to 5 min. */
  streamIdleTimeoutMs?: number;
  /** A forwarded TCP connection with no byte either way for this long is closed (0: never); set when a BackendPolicy or the Mesh sets it, the proxy defaults to 1 h. */
  tcpIdleTimeoutMs?: number;
  /** Set when a BackendPolicy sets `outlierDetection`, every default filled in; absent: no ejection. */
  outlierDetection?: OutlierDetection;
  /** Set when a BackendPolicy sets `healthCheck`, every default filled in; absent: no active checks. */
  healthCheck?: HealthCheck;
  endpoints: Endpoint[];
}

/** Outlier detection of a cluster (Envoy's); a threshold of 0 is off. Times in ms. */
export interface OutlierDetection {
  consecutive5xx: number;
  consecutiveGatewayErrors: number;
  consecutiveConnectFailures: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionPercent: number;
  /** Success-rate ejection, or null; `stdevFactor` in thousandths (1900 is 1.9 standard deviations). */
  successRate: { minimumHosts: number; requestVolume: number; stdevFactor: number } | null;
}

/** Active health checking of a cluster's endpoints. Times in ms. */
export interface HealthCheck {
  /** An HTTP GET of `path` expecting one of `expectedStatuses` (empty: any 2xx), or a TCP connect. */
  probe: { type: 'http'; path: string; expectedStatuses: number[] } | { type: 'tcp' };
  intervalMs: number;
  timeoutMs: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
}

/** Circuit-breaking thresholds of a cluster (Envoy's `thresholds`). */
export interface CircuitBreakerLimits {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

export interface Endpoint {
  /** Workload `namespace/name`. */
  workload: string;
  address: string;
  /** The port to dial: the app port, or the workload proxy's inbound port when `proxied`. */
  port: number;
  /** The app port on the workload (equal to `port` unless proxied). */
  appPort: number;
  /** True when the workload has a proxy (`spec.proxy.inboundPort`): traffic goes through it. */
  proxied: boolean;
  /** SPIFFE ID of the workload, which its proxy's certificate must carry. */
  identity: string;
  labels: Record<string, string>;
  /** Relative share of the cluster's traffic (Workload `spec.weight`, 1-128); absent means 1. */
  weight?: number;
}
