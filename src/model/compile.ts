/**
 * The compiler: a pure function from validated resources to the snapshot of one proxy. Problems are
 * recorded against the resource that has them (one bad backendRef is reported, the rest applies), and
 * the output is deterministic: the same resources in any order give the same snapshot and version.
 */
import { createHash } from 'node:crypto';
import { parseDuration } from './duration.js';
import { resourceError, type ResourceError } from './errors.js';
import type {
  AuthorizationOperation,
  AuthorizationPolicy,
  AuthorizationRule,
  BackendPolicy,
  BackendRef,
  GRPCRoute,
  GRPCRouteRetry,
  GRPCRouteFilter,
  GRPCRouteMatch,
  HTTPFault,
  HealthCheckSpec,
  HTTPHeaderFilter,
  HTTPPathModifier,
  HTTPRoute,
  HTTPRouteFilter,
  HTTPRouteMatch,
  HTTPRouteRetry,
  HTTPRouteRule,
  LoadBalancerSpec,
  Mesh,
  MtlsMode,
  OutlierDetectionSpec,
  RateLimitPolicy,
  Resource,
  Service,
  ServicePort,
  TCPRoute,
  Workload,
} from './resources.js';
import type {
  AppProtocol,
  AuthorizationOperationConfig,
  AuthorizationPolicyConfig,
  AuthorizationRuleConfig,
  Cluster,
  Endpoint,
  FaultConfig,
  HealthCheck,
  HashPolicy,
  HeaderModifier,
  LoadBalancerType,
  OutlierDetection,
  PathRewrite,
  ProxySnapshot,
  InboundRateLimits,
  RateLimitPolicyConfig,
  Redirect,
  RequestFilter,
  RetryBudget,
  CircuitBreakerLimits,
  RetryPolicy,
  Route,
  RouteAction,
  RouteMatch,
  TcpService,
  VirtualHost,
  WeightedBackend,
  TelemetryConfig,
} from './snapshot.js';
import { sourceOf, type SourceInfo } from './source.js';
import { scopeKey, scopeOutbound } from './scope.js';
import { GRPC_STATUS_CODES, grpcPathMatch } from './grpc.js';

/** The proxy to compile for: a Workload by name (namespace `default` unless given). */
export interface CompileTarget {
  workload: string;
  namespace?: string;
}

/** Compiler options. */
export interface CompileOptions {
  /** Where a resource came from, for error lines; by default what `loadResources` remembered. */
  sourceOf?: (r: Resource) => SourceInfo | undefined;
}

/** A snapshot (null when the target workload does not exist) and every problem found on the way. */
export interface CompileResult {
  snapshot: ProxySnapshot | null;
  errors: ResourceError[];
}

// Kubernetes' cluster DNS zone. It is not the SPIFFE trust domain, even though both default to this value.
const CLUSTER_DOMAIN = 'cluster.local';
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_LOAD_BALANCER: LoadBalancerType = 'LeastRequest';
/** Linkerd's and Finagle's peak-EWMA time constant. */
const DEFAULT_EWMA_DECAY = '10s';
/** Envoy's defaults: the ring's minimum size, and Maglev's table size (a prime). */
const DEFAULT_RING_SIZE = 1024;
const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/** Envoy's overprovisioning factor, in percent. */
const DEFAULT_OVERPROVISIONING_FACTOR = 140;
const DEFAULT_TRUST_DOMAIN = 'cluster.local';
const DEFAULT_MTLS_MODE: MtlsMode = 'STRICT';
const HTTP_LIKE = new Set(['HTTP', 'HTTP2', 'GRPC']);
/** Ports a GRPCRoute attaches to: those that speak HTTP/2. */
const H2 = new Set(['HTTP2', 'GRPC']);

/** Resources by kind, each list in a fixed order, plus the errors being collected. */
interface Context {
  clientNamespace: string;
  services: Service[];
  serviceByKey: Map<string, Service>;
  /** Workloads by namespace and by each of their labels (`ns\0key\0value`), each list in name order. */
  workloadsByLabel: Map<string, Workload[]>;
  httpRoutes: HTTPRoute[];
  grpcRoutes: GRPCRoute[];
  tcpRoutes: TCPRoute[];
  policies: BackendPolicy[];
  authorizationPolicies: AuthorizationPolicy[];
  rateLimitPolicies: RateLimitPolicy[];
  /** HTTPFaults by `namespace/name`. */
  faults: Map<string, HTTPFault>;
  mesh: Mesh | undefined;
  trustDomain: string;
  sourceOf: (r: Resource) => SourceInfo | undefined;
  // Keyed by content: a rule attached to several ports, or with several matches, reports a problem once.
  errors: Map<string, ResourceError>;
}

/**
 * Compiles the snapshot of the proxy beside `target`. `resources` must have passed validation
 * (`loadResources` or `validateResource`); names are unique per kind and namespace.
 */
export function compileProxySnapshot(resources: Resource[], target: CompileTarget, opts: CompileOptions = {}): CompileResult {
  const namespace = target.namespace ?? 'default';
  const self = resources.find((r): r is Workload => r.kind === 'Workload' && r.metadata.name === target.workload && r.metadata.namespace === namespace);
  if (self === undefined) {
    const error = { kind: 'Workload', namespace, name: target.workload, file: null, line: null, path: '' };
    return { snapshot: null, errors: [{ ...error, message: 'workload not found; the proxy has nothing to stand beside' }] };
  }
  const outbound = scopeOutbound(compileOutbound(resources, namespace, opts), scopeKey(namespace, self.spec.calls));
  const body = { ...compileWorkload(self, prepareWorkloadIndex(resources)), virtualHosts: outbound.virtualHosts, tcpServices: outbound.tcpServices, clusters: outbound.clusters };
  const version = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 16);
  return { snapshot: { version, ...body }, errors: outbound.errors };
}

/** What every proxy of one namespace sees of the mesh: the same for all of them, so compiled once. */
export interface OutboundView {
  virtualHosts: VirtualHost[];
  tcpServices: TcpService[];
  clusters: Cluster[];
  errors: ResourceError[];
}

/** Compiles the outbound part of the snapshot for proxies in `namespace` (routes depend on the client's namespace). */
export function compileOutbound(resources: Resource[], namespace: string, opts: CompileOptions = {}): OutboundView {
  const ctx = index(resources, namespace, opts.sourceOf ?? sourceOf);
  checkReferences(ctx);
  checkAppProtocols(ctx);
  const clusters: Cluster[] = [];
  const virtualHosts: VirtualHost[] = [];
  const tcpServices: TcpService[] = [];
  for (const svc of ctx.services) {
    const httpPorts = svc.spec.ports.filter((p) => HTTP_LIKE.has(p.protocol ?? 'HTTP')).length;
    for (const port of [...svc.spec.ports].sort((a, b) => a.port - b.port)) {
      clusters.push(cluster(ctx, svc, port));
      if (port.protocol === 'TCP') {
        tcpServices.push(tcpService(ctx, svc, port));
        continue;
      }
      const vh = virtualHost(ctx, svc, port, httpPorts);
      virtualHosts.push(vh);
      // An undeclared port is HTTP by authority, and is detected on `--upstream` local ports.
      if (port.protocol === undefined) tcpServices.push(detectingTcpService(vh));
    }
  }
  return { virtualHosts, tcpServices, clusters, errors: [...ctx.errors.values()] };
}

/**
 * What the part about one workload needs of the rest of the mesh — the Mesh settings, and the
 * Services that AuthorizationPolicies target — indexed once per set of resources, so compiling the
 * part of each of many workloads costs only what concerns that workload.
 */
export interface WorkloadIndex {
  /**
   * Content hash of everything indexed: two indexes with equal versions compile equal parts for the
   * same Workload, so a compiled part can be reused while the version stays (e.g. across endpoint churn).
   */
  readonly version: string;
  readonly trustDomain: string;
  readonly mtlsMode: MtlsMode;
  /** By namespace: each Service some AuthorizationPolicy targets, with those policies. */
  readonly guarded: ReadonlyMap<string, ReadonlyArray<{ service: Service; policies: readonly TargetedPolicy[] }>>;
  /** By namespace: each Service some RateLimitPolicy targets, with those policies (oldest first). */
  readonly rateLimited: ReadonlyMap<string, ReadonlyArray<{ service: Service; policies: readonly RateLimitPolicy[] }>>;
  /** Mesh `spec.rateLimiting.redis`, resolved; null when not set. */
  readonly rateLimitRedis: InboundRateLimits['redis'];
  /** Mesh `spec.tracing` and `spec.accessLog`, resolved; undefined when both are off. */
  readonly telemetry: TelemetryConfig | undefined;
  /**
   * By namespace, oldest first (then by name): the Services that decide app port protocols — every
   * Service of a namespace where some port is not HTTP. Where all are HTTP, every app port is HTTP
   * whatever selects it, so those namespaces are left out (and their Services' churn reuses parts).
   */
  readonly protocolServices: ReadonlyMap<string, readonly Service[]>;
}

/** An AuthorizationPolicy with the Services it targets that exist. */
interface TargetedPolicy {
  policy: AuthorizationPolicy;
  targets: Service[];
  /** Every port number of those Services: a `to.ports` value outside it is a mistake (reported). */
  servicePorts: Set<number>;
}

/** Indexes what `compileWorkload` needs; cheap (one pass over the resources), done once per set of resources. */
export function prepareWorkloadIndex(resources: Resource[]): WorkloadIndex {
  const serviceByKey = new Map<string, Service>();
  const meshes: Mesh[] = [];
  const policies: AuthorizationPolicy[] = [];
  const rateLimitPolicies: RateLimitPolicy[] = [];
  const protocolServices = new Map<string, Service[]>();
  for (const r of resources) {
    if (r.kind === 'Service') serviceByKey.set(key(r.metadata.namespace, r.metadata.name), r);
    else if (r.kind === 'AuthorizationPolicy') policies.push(r);
    else if (r.kind === 'RateLimitPolicy') rateLimitPolicies.push(r);
    else if (r.kind === 'Mesh') meshes.push(r);
  }
  const mesh = meshes.sort(byAgeThenName)[0];
  const byService = new Map<Service, TargetedPolicy[]>();
  for (const policy of policies.sort(byAgeThenName)) {
    const targeted = targetedPolicy(policy, serviceByKey);
    for (const svc of targeted.targets) {
      const list = byService.get(svc);
      if (list === undefined) byService.set(svc, [targeted]);
      else list.push(targeted);
    }
  }
  const guarded = new Map<string, Array<{ service: Service; policies: TargetedPolicy[] }>>();
  for (const service of [...byService.keys()].sort(byName)) {
    const ns = service.metadata.namespace;
    if (!guarded.has(ns)) guarded.set(ns, []);
    guarded.get(ns)!.push({ service, policies: byService.get(service)! });
  }
  const rateLimited = rateLimitIndex(rateLimitPolicies.sort(byAgeThenName), serviceByKey);
  const redis = mesh?.spec.rateLimiting?.redis;
  const rateLimitRedis = redis === undefined ? null : { address: redis.address, timeoutMs: parseDuration(redis.timeout ?? '50ms') };
  for (const ns of namespacesWithProtocols(serviceByKey.values())) protocolServices.set(ns, []);
  for (const svc of [...serviceByKey.values()].sort(byAgeThenName)) protocolServices.get(svc.metadata.namespace)?.push(svc);
  const trustDomain = mesh?.spec.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const mtlsMode = mesh?.spec.mtls?.mode ?? DEFAULT_MTLS_MODE;
  const telemetry = telemetryConfig(mesh);
  // Only what the compiled parts depend on: a change to an unguarded Service in an all-HTTP namespace does not invalidate them.
  const content = {
    trustDomain,
    mtlsMode,
    services: [...byService.keys()].sort(byName).map((s) => [s.metadata.namespace, s.metadata.name, s.spec]),
    policies: policies.map((p) => [p.metadata.namespace, p.metadata.name, p.metadata.creationTimestamp ?? null, p.spec]),
    protocols: [...protocolServices.values()].flat().map((s) => [s.metadata.namespace, s.metadata.name, s.metadata.creationTimestamp ?? null, s.spec]),
    rateLimitRedis,
    telemetry: telemetry ?? null,
    rateLimited: [...rateLimited.values()].flat().map((e) => [e.service.metadata.namespace, e.service.metadata.name, e.service.spec]),
    rateLimitPolicies: rateLimitPolicies.map((p) => [p.metadata.namespace, p.metadata.name, p.metadata.creationTimestamp ?? null, p.spec]),
  };
  const version = createHash('sha256').update(JSON.stringify(content)).digest('hex').slice(0, 16);
  return { version, trustDomain, mtlsMode, guarded, protocolServices, rateLimited, rateLimitRedis, telemetry };
}

/** Percent of new traces recorded when `spec.tracing` leaves `sampling` out (Istio's default). */
const DEFAULT_TRACE_SAMPLING = 1;

/** Mesh `spec.tracing` and `spec.accessLog` as the proxy reads them; undefined when both are off. */
function telemetryConfig(mesh: Mesh | undefined): TelemetryConfig | undefined {
  const t = mesh?.spec.tracing;
  const a = mesh?.spec.accessLog;
  const tracing = t === undefined ? null : { samplingPercent: t.sampling ?? DEFAULT_TRACE_SAMPLING, otlpEndpoint: t.otlp?.endpoint ?? null };
  const accessLog = a === undefined || a.mode === 'Off' ? null : { samplingPercent: a.mode === 'Sampled' ? (a.sampling ?? 100) : 100, path: a.path ?? null };
  return tracing === null && accessLog === null ? undefined : { tracing, accessLog };
}

/** The Services RateLimitPolicies target, by namespace, each with its policies (in the order given). */
function rateLimitIndex(policies: RateLimitPolicy[], serviceByKey: ReadonlyMap<string, Service>): Map<string, Array<{ service: Service; policies: RateLimitPolicy[] }>> {
  const byService = new Map<Service, RateLimitPolicy[]>();
  for (const policy of policies) {
    for (const ref of policy.spec.targetRefs) {
      const svc = serviceByKey.get(key(policy.metadata.namespace, ref.name));
      if (svc === undefined) continue;
      const list = byService.get(svc);
      if (list === undefined) byService.set(svc, [policy]);
      else if (!list.includes(policy)) list.push(policy);
    }
  }
  const out = new Map<string, Array<{ service: Service; policies: RateLimitPolicy[] }>>();
  for (const service of [...byService.keys()].sort(byName)) {
    const ns = service.metadata.namespace;
    if (!out.has(ns)) out.set(ns, []);
    out.get(ns)!.push({ service, policies: byService.get(service)! });
  }
  return out;
}

/** The RateLimitPolicies covering some app port of `self`, oldest first, then by name; undefined when none. */
function rateLimitsFor(self: Workload, index: WorkloadIndex): InboundRateLimits | undefined {
  const ports = new Map<RateLimitPolicy, Set<number>>();
  for (const { service, policies } of index.rateLimited.get(self.metadata.namespace) ?? []) {
    if (!selects(service, self)) continue;
    for (const p of policies) {
      const set = ports.get(p) ?? new Set<number>();
      for (const port of service.spec.ports) {
        const app = appPortOf(port, self);
        if (app !== undefined) set.add(app);
      }
      ports.set(p, set);
    }
  }
  const out: RateLimitPolicyConfig[] = [];
  for (const [policy, appPorts] of [...ports].sort(([a], [b]) => byAgeThenName(a, b))) {
    if (appPorts.size === 0) continue;
    const { key: k, local, global, failureMode } = policy.spec;
    out.push({
      name: key(policy.metadata.namespace, policy.metadata.name),
      appPorts: ascending(appPorts),
      key: k === undefined ? { type: 'None' } : k.type === 'Header' ? { type: 'Header', header: k.header.toLowerCase() } : { type: k.type },
      local: local === undefined ? null : { requests: local.requests, perMs: parseDuration(local.per), burst: local.burst ?? local.requests },
      global: global === undefined ? null : { requests: global.requests, perMs: parseDuration(global.per) },
      failureMode: failureMode ?? 'FailOpen',
    });
  }
  return out.length === 0 ? undefined : { redis: index.rateLimitRedis, policies: out };
}

/**
 * The part of the snapshot that is about the proxy's own workload: who it is, and its inbound side
 * (where the app listens, the mTLS mode, and which AuthorizationPolicies cover which app ports).
 * Problems of the policies are reported by `compileOutbound` (they do not depend on the workload).
 */
export function compileWorkload(self: Workload, index: WorkloadIndex): Pick<ProxySnapshot, 'workload' | 'inbound' | 'telemetry'> {
  const ports = sortedRecord(self.spec.ports);
  const serviceAccount = self.spec.serviceAccount ?? 'default';
  return {
    workload: {
      name: self.metadata.name,
      namespace: self.metadata.namespace,
      address: self.spec.address,
      serviceAccount,
      identity: spiffeId(index.trustDomain, self.metadata.namespace, serviceAccount),
      labels: sortedRecord(self.metadata.labels),
      ports,
    },
    inbound: {
      appAddress: self.spec.address,
      ports: { ...ports },
      appProtocols: appProtocolsFor(self, index),
      defaultPort: defaultPort(ports),
      mtlsMode: index.mtlsMode,
      authorization: { policies: authorizationFor(self, index) },
      ...rateLimitsField(self, index),
    },
    ...(index.telemetry !== undefined ? { telemetry: index.telemetry } : {}),
  };
}

function rateLimitsField(self: Workload, index: WorkloadIndex): { rateLimits?: InboundRateLimits } {
  const rateLimits = rateLimitsFor(self, index);
  return rateLimits === undefined ? {} : { rateLimits };
}

/** Namespaces with a Service port that is not HTTP: only there can app port protocols differ from HTTP, or conflict. */
function namespacesWithProtocols(services: Iterable<Service>): Set<string> {
  const out = new Set<string>();
  for (const svc of services) if (svc.spec.ports.some((p) => (p.protocol ?? 'HTTP') !== 'HTTP')) out.add(svc.metadata.namespace);
  return out;
}

/**
 * The protocol of each app port of `self`: that of the first Service port leading to it, Services
 * oldest first (then by name), ports in order; HTTP for an app port no Service port leads to.
 * Conflicts are reported by `compileOutbound` (`checkAppProtocols`), in the same order.
 */
function appProtocolsFor(self: Workload, index: WorkloadIndex): Record<string, AppProtocol> {
  const found = new Map<number, AppProtocol>();
  for (const svc of index.protocolServices.get(self.metadata.namespace) ?? []) {
    if (!selects(svc, self)) continue;
    for (const port of svc.spec.ports) {
      const app = appPortOf(port, self);
      if (app !== undefined && !found.has(app)) found.set(app, port.protocol ?? 'HTTP');
    }
  }
  for (const app of Object.values(self.spec.ports)) if (!found.has(app)) found.set(app, 'HTTP');
  return Object.fromEntries(ascending(found.keys()).map((p) => [String(p), found.get(p)!]));
}

/** The AuthorizationPolicies covering some app port of `self`, oldest first, then by name. */
function authorizationFor(self: Workload, index: WorkloadIndex): AuthorizationPolicyConfig[] {
  // The Services of each policy that select this workload (a policy may target several of them).
  const selecting = new Map<TargetedPolicy, Service[]>();
  for (const { service, policies } of index.guarded.get(self.metadata.namespace) ?? []) {
    if (!selects(service, self)) continue;
    for (const p of policies) {
      const list = selecting.get(p);
      if (list === undefined) selecting.set(p, [service]);
      else list.push(service);
    }
  }
  const out: AuthorizationPolicyConfig[] = [];
  for (const [targeted, services] of [...selecting].sort(([a], [b]) => byAgeThenName(a.policy, b.policy))) {
    const appPorts = new Set<number>();
    for (const svc of services) {
      for (const port of svc.spec.ports) {
        const app = appPortOf(port, self);
        if (app !== undefined) appPorts.add(app);
      }
    }
    if (appPorts.size === 0) continue;
    const { policy } = targeted;
    const action = policy.spec.action ?? 'ALLOW';
    out.push({
      name: key(policy.metadata.namespace, policy.metadata.name),
      action,
      appPorts: ascending(appPorts),
      rules: (policy.spec.rules ?? []).map((rule) => authorizationRule(rule, action, targeted, services, self)),
    });
  }
  return out;
}

function authorizationRule(rule: AuthorizationRule, action: 'ALLOW' | 'DENY', targeted: TargetedPolicy, services: Service[], self: Workload): AuthorizationRuleConfig {
  return {
    from: rule.from?.map((f) => ({ identities: f.identities ?? null, namespaces: f.namespaces ?? null })) ?? null,
    to: rule.to?.map((t) => ({ appPorts: operationPorts(t, action, targeted, services, self), methods: t.methods ?? null, paths: t.paths ?? null })) ?? null,
    when: (rule.when ?? []).map((c) => ({ header: c.header.toLowerCase(), values: c.values ?? null, notValues: c.notValues ?? null })),
  };
}

/**
 * The app ports of `self` that a `to` entry's Service ports map to. A port that no targeted Service
 * has is a mistake (reported by `compileOutbound`); the policy then fails closed: an ALLOW entry
 * ignores the value (left with no ports, it matches nothing), a DENY entry drops its port condition.
 */
function operationPorts(t: AuthorizationOperation, action: 'ALLOW' | 'DENY', targeted: TargetedPolicy, services: Service[], self: Workload): AuthorizationOperationConfig['appPorts'] {
  if (t.ports === undefined) return null;
  if (action === 'DENY' && t.ports.some((p) => !targeted.servicePorts.has(p))) return null;
  const out = new Set<number>();
  for (const svc of services) {
    for (const port of svc.spec.ports) {
      if (!t.ports.includes(port.port)) continue;
      const app = appPortOf(port, self);
      if (app !== undefined) out.add(app);
    }
  }
  return ascending(out);
}

function targetedPolicy(policy: AuthorizationPolicy, serviceByKey: ReadonlyMap<string, Service>): TargetedPolicy {
  const targets: Service[] = [];
  for (const ref of policy.spec.targetRefs) {
    const svc = serviceByKey.get(key(policy.metadata.namespace, ref.name));
    if (svc !== undefined && !targets.includes(svc)) targets.push(svc);
  }
  return { policy, targets, servicePorts: new Set(targets.flatMap((s) => s.spec.ports.map((p) => p.port))) };
}

function index(resources: Resource[], clientNamespace: string, source: Context['sourceOf']): Context {
  const of = <K extends Resource['kind']>(kind: K) => resources.filter((r): r is Extract<Resource, { kind: K }> => r.kind === kind);
  const services = of('Service').sort(byName);
  const meshes = of('Mesh').sort(byAgeThenName);
  const mesh = meshes[0];
  const ctx: Context = {
    clientNamespace,
    services,
    serviceByKey: new Map(services.map((s) => [key(s.metadata.namespace, s.metadata.name), s])),
    workloadsByLabel: labelIndex(of('Workload').sort(byName)),
    httpRoutes: of('HTTPRoute').sort(byAgeThenName),
    grpcRoutes: of('GRPCRoute').sort(byAgeThenName),
    tcpRoutes: of('TCPRoute').sort(byAgeThenName),
    policies: of('BackendPolicy').sort(byAgeThenName),
    authorizationPolicies: of('AuthorizationPolicy').sort(byAgeThenName),
    rateLimitPolicies: of('RateLimitPolicy').sort(byAgeThenName),
    faults: new Map(of('HTTPFault').map((f) => [key(f.metadata.namespace, f.metadata.name), f])),
    mesh,
    trustDomain: mesh?.spec.trustDomain ?? DEFAULT_TRUST_DOMAIN,
    sourceOf: source,
    errors: new Map(),
  };
  for (const extra of meshes.slice(1)) report(ctx, extra, '', `ignored: only one Mesh is allowed; Mesh/${meshes[0]!.metadata.name} applies (the oldest, then first by name)`);
  return ctx;
}

function labelIndex(workloads: Workload[]): Map<string, Workload[]> {
  const out = new Map<string, Workload[]>();
  for (const w of workloads) {
    for (const [k, v] of Object.entries(w.metadata.labels)) {
      const key = `${w.metadata.namespace}\0${k}\0${v}`;
      const list = out.get(key);
      if (list === undefined) out.set(key, [w]);
      else list.push(w);
    }
  }
  return out;
}

/** The Service port protocols each route kind attaches to. */
const PARENT_PROTOCOLS: Record<'HTTPRoute' | 'GRPCRoute' | 'TCPRoute', { protocols: ReadonlySet<string>; kinds: string }> = {
  HTTPRoute: { protocols: HTTP_LIKE, kinds: 'HTTP, HTTP2 or GRPC' },
  GRPCRoute: { protocols: H2, kinds: 'GRPC or HTTP2' },
  TCPRoute: { protocols: new Set(['TCP']), kinds: 'TCP' },
};

/** Reports references to Services that do not exist, wherever they would silently do nothing. */
function checkReferences(ctx: Context): void {
  for (const route of [...ctx.httpRoutes, ...ctx.grpcRoutes, ...ctx.tcpRoutes]) {
    const { protocols, kinds } = PARENT_PROTOCOLS[route.kind];
    route.spec.parentRefs.forEach((ref, i) => {
      const ns = ref.namespace ?? route.metadata.namespace;
      const svc = ctx.serviceByKey.get(key(ns, ref.name));
      const path = `spec.parentRefs[${i}]`;
      const shown = `Service ${display(ns, ref.name)}`;
      if (svc === undefined) return report(ctx, route, path, `parent ${shown} not found`);
      const fits = svc.spec.ports.filter((p) => protocols.has(p.protocol ?? 'HTTP'));
      if (ref.port === undefined) {
        if (fits.length === 0) report(ctx, route, path, `${shown} has no ${kinds} port`);
      } else if (!svc.spec.ports.some((p) => p.port === ref.port)) {
        report(ctx, route, `${path}.port`, `${shown} has no port ${ref.port}`);
      } else if (!fits.some((p) => p.port === ref.port)) {
        report(ctx, route, `${path}.port`, `port ${ref.port} of ${shown} is not ${kinds}`);
      }
    });
  }
  for (const policy of [...ctx.policies, ...ctx.authorizationPolicies, ...ctx.rateLimitPolicies]) {
    const ns = policy.metadata.namespace;
    policy.spec.targetRefs.forEach((ref, i) => {
      if (!ctx.serviceByKey.has(key(ns, ref.name))) report(ctx, policy, `spec.targetRefs[${i}]`, `Service ${display(ns, ref.name)} not found`);
    });
  }
  for (const policy of ctx.authorizationPolicies) checkAuthorizationPorts(ctx, policy);
  if (ctx.mesh?.spec.rateLimiting === undefined) {
    for (const policy of ctx.rateLimitPolicies) {
      if (policy.spec.global === undefined) continue;
      const mode = policy.spec.failureMode ?? 'FailOpen';
      const acts = mode === 'FailOpen' ? 'not enforced (failureMode FailOpen)' : 'refusing every request (failureMode FailClosed)';
      report(ctx, policy, 'spec.global', `no Redis to count in: set Mesh spec.rateLimiting.redis.address; until then the global limit is ${acts}`);
    }
  }
}

/** Reports `to.ports` values that no targeted Service has (a common slip: writing the app port). */
function checkAuthorizationPorts(ctx: Context, policy: AuthorizationPolicy): void {
  const { targets, servicePorts } = targetedPolicy(policy, ctx.serviceByKey);
  if (targets.length === 0) return; // the missing targets are reported; there are no ports to check against
  const shown = targets.map((s) => display(s.metadata.namespace, s.metadata.name));
  const lacks = (p: number): string => (shown.length === 1 ? `Service ${shown[0]} has no port ${p}` : `none of the targeted Services (${shown.join(', ')}) has port ${p}`);
  const consequence =
    (policy.spec.action ?? 'ALLOW') === 'ALLOW'
      ? 'the value is ignored (an entry left without ports matches nothing)'
      : 'this DENY entry therefore applies to every port, to fail closed';
  (policy.spec.rules ?? []).forEach((rule, i) => {
    rule.to?.forEach((t, j) => {
      t.ports?.forEach((p, k) => {
        if (!servicePorts.has(p)) report(ctx, policy, `spec.rules[${i}].to[${j}].ports[${k}]`, `${lacks(p)} (ports are the Service's, not the app's); ${consequence}`);
      });
    });
  });
}

/** The workloads a Service selects, in name order. */
function selectedWorkloads(ctx: Context, svc: Service): Workload[] {
  const selector = Object.entries(svc.spec.selector);
  if (selector.length === 0) return [];
  // Candidates come from the index by the selector's rarest label; the rest of the selector filters them.
  const lists = selector.map(([k, v]) => ctx.workloadsByLabel.get(`${svc.metadata.namespace}\0${k}\0${v}`) ?? []);
  const candidates = lists.reduce((a, b) => (b.length < a.length ? b : a));
  return candidates.filter((w) => selector.every(([k, v]) => w.metadata.labels[k] === v));
}

/**
 * Reports Service ports that give an app port another protocol than an older Service port leading to
 * the same app port of the same workload already did (the order `appProtocolsFor` decides in).
 */
function checkAppProtocols(ctx: Context): void {
  const namespaces = namespacesWithProtocols(ctx.services);
  if (namespaces.size === 0) return;
  const first = new Map<string, { svc: Service; port: ServicePort }>();
  // Per losing port, winning port and app port: the workloads where it lost.
  const conflicts = new Map<string, { loser: Service; index: number; protocol: string; winner: { svc: Service; port: ServicePort }; app: number; workloads: string[] }>();
  for (const svc of ctx.services.filter((s) => namespaces.has(s.metadata.namespace)).sort(byAgeThenName)) {
    const workloads = selectedWorkloads(ctx, svc);
    svc.spec.ports.forEach((port, index) => {
      const protocol = port.protocol ?? 'HTTP';
      for (const w of workloads) {
        const app = appPortOf(port, w);
        if (app === undefined) continue;
        const slot = `${w.metadata.namespace}\0${w.metadata.name}\0${app}`;
        const winner = first.get(slot);
        if (winner === undefined) {
          first.set(slot, { svc, port });
          continue;
        }
        if ((winner.port.protocol ?? 'HTTP') === protocol) continue;
        const k = `${svc.metadata.namespace}\0${svc.metadata.name}\0${index}\0${winner.svc.metadata.name}\0${winner.port.port}\0${app}`;
        const c = conflicts.get(k) ?? { loser: svc, index, protocol, winner, app, workloads: [] };
        c.workloads.push(w.metadata.name);
        conflicts.set(k, c);
      }
    });
  }
  for (const c of conflicts.values()) {
    const won = c.winner.port.protocol ?? 'HTTP';
    const by = c.winner.svc === c.loser ? `port ${c.winner.port.port} of this Service` : `Service ${display(c.winner.svc.metadata.namespace, c.winner.svc.metadata.name)} (port ${c.winner.port.port})`;
    const where = `app port ${c.app} of Workload ${c.workloads[0]}${c.workloads.length > 1 ? ` (and ${c.workloads.length - 1} more)` : ''}`;
    report(ctx, c.loser, `spec.ports[${c.index}].protocol`, `${c.protocol} conflicts with ${won} from ${by} for ${where}; ${won} applies there (the oldest Service, then the first by name, decides)`);
  }
}

function cluster(ctx: Context, svc: Service, port: ServicePort): Cluster {
  const { name, namespace } = svc.metadata;
  const endpoints: Endpoint[] = [];
  for (const w of selectedWorkloads(ctx, svc)) {
    const appPort = appPortOf(port, w);
    if (appPort === undefined) continue;
    const inbound = w.spec.proxy?.inboundPort;
    endpoints.push({
      workload: key(w.metadata.namespace, w.metadata.name),
      address: w.spec.address,
      port: inbound ?? appPort,
      appPort,
      proxied: inbound !== undefined,
      identity: spiffeId(ctx.trustDomain, w.metadata.namespace, w.spec.serviceAccount ?? 'default'),
      labels: sortedRecord(w.metadata.labels),
      ...(w.spec.weight === undefined ? {} : { weight: w.spec.weight }),
    });
  }
  // GEP-713: of several policies on one Service, the oldest that sets a field decides it.
  const policies = ctx.policies.filter((p) => p.metadata.namespace === namespace && p.spec.targetRefs.some((t) => t.name === name));
  const lb = policies.find((p) => p.spec.loadBalancer)?.spec.loadBalancer;
  const locality = policies.find((p) => p.spec.locality)?.spec.locality;
  const timeout = policies.find((p) => p.spec.connectTimeout)?.spec.connectTimeout ?? ctx.mesh?.spec.defaults?.connectTimeout;
  const budget = policies.find((p) => p.spec.retryBudget)?.spec.retryBudget;
  const breaker = policies.find((p) => p.spec.circuitBreaker)?.spec.circuitBreaker;
  const idle = policies.find((p) => p.spec.timeouts?.idle)?.spec.timeouts?.idle ?? ctx.mesh?.spec.defaults?.timeouts?.idle;
  const streamIdle = policies.find((p) => p.spec.timeouts?.streamIdle)?.spec.timeouts?.streamIdle ?? ctx.mesh?.spec.defaults?.timeouts?.streamIdle;
  const tcpIdle = policies.find((p) => p.spec.timeouts?.tcpIdle)?.spec.timeouts?.tcpIdle ?? ctx.mesh?.spec.defaults?.timeouts?.tcpIdle;
  const outlier = policies.find((p) => p.spec.outlierDetection)?.spec.outlierDetection;
  const check = policies.find((p) => p.spec.healthCheck)?.spec.healthCheck;
  return {
    name: clusterName(name, namespace, port.port),
    service: name,
    namespace,
    port: port.port,
    protocol: port.protocol ?? 'HTTP',
    ...loadBalancer(lb, ctx.mesh?.spec.defaults?.loadBalancer),
    ...(locality === undefined ? {} : { locality: { enabled: locality.enabled ?? true, overprovisioningFactor: locality.overprovisioningFactor ?? DEFAULT_OVERPROVISIONING_FACTOR } }),
    connectTimeoutMs: timeout === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : parseDuration(timeout),
    ...(budget === undefined
      ? {}
      : { retryBudget: { percent: budget.percent ?? DEFAULT_RETRY_BUDGET.percent, minRetriesPerSecond: budget.minRetriesPerSecond ?? DEFAULT_RETRY_BUDGET.minRetriesPerSecond } }),
    ...(breaker === undefined
      ? {}
      : {
          circuitBreaker: {
            maxConnections: breaker.maxConnections ?? DEFAULT_CIRCUIT_BREAKER.maxConnections,
            maxPendingRequests: breaker.maxPendingRequests ?? DEFAULT_CIRCUIT_BREAKER.maxPendingRequests,
            maxRequests: breaker.maxRequests ?? DEFAULT_CIRCUIT_BREAKER.maxRequests,
            maxRetries: breaker.maxRetries ?? DEFAULT_CIRCUIT_BREAKER.maxRetries,
          },
        }),
    ...(idle === undefined ? {} : { idleTimeoutMs: parseDuration(idle) }),
    ...(streamIdle === undefined ? {} : { streamIdleTimeoutMs: parseDuration(streamIdle) }),
    ...(tcpIdle === undefined ? {} : { tcpIdleTimeoutMs: parseDuration(tcpIdle) }),
    ...(outlier === undefined ? {} : { outlierDetection: outlierDetection(outlier) }),
    ...(check === undefined ? {} : { healthCheck: healthCheck(check) }),
    endpoints,
  };
}

/** A cluster's balancer and its options, defaults filled in: the policy's, else the Mesh default type's. */
function loadBalancer(lb: LoadBalancerSpec | undefined, meshDefault: LoadBalancerType | undefined): Pick<Cluster, 'loadBalancer' | 'ewmaDecayMs' | 'hash'> {
  const type = lb?.type ?? meshDefault ?? DEFAULT_LOAD_BALANCER;
  if (type === 'PeakEWMA') return { loadBalancer: type, ewmaDecayMs: parseDuration(lb?.decay ?? DEFAULT_EWMA_DECAY) };
  // Validation requires hashOn with these types (and refuses them as a Mesh default).
  if (type === 'RingHash' && lb?.hashOn !== undefined) return { loadBalancer: type, hash: { on: hashPolicy(lb.hashOn), size: lb.minimumRingSize ?? DEFAULT_RING_SIZE } };
  if (type === 'Maglev' && lb?.hashOn !== undefined) return { loadBalancer: type, hash: { on: hashPolicy(lb.hashOn), size: lb.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE } };
  return { loadBalancer: type === 'RingHash' || type === 'Maglev' ? DEFAULT_LOAD_BALANCER : type };
}

/** A hash policy with header names lowercased, as the proxy matches them. */
function hashPolicy(on: HashPolicy): HashPolicy {
  if (on.header !== undefined) return { header: { name: on.header.name.toLowerCase() } };
  if (on.cookie !== undefined) return { cookie: { name: on.cookie.name } };
  return { sourceAddress: true };
}

function virtualHost(ctx: Context, svc: Service, port: ServicePort, httpPorts: number): VirtualHost {
  const { name, namespace } = svc.metadata;
  const protocol = port.protocol ?? 'HTTP';
  const candidates: Array<HTTPRoute | GRPCRoute> = H2.has(protocol) ? [...ctx.httpRoutes, ...ctx.grpcRoutes] : ctx.httpRoutes;
  const attached = oneRouteKind(ctx, attachedRoutes(candidates, svc, port, ctx.clientNamespace), svc, port);
  let routes: Route[];
  if (attached.length === 0) routes = [implicitRoute(svc, port)];
  else if (attached[0]!.kind === 'GRPCRoute') routes = (attached as GRPCRoute[]).flatMap((r) => grpcRouteEntries(ctx, r)).sort(byGrpcPrecedence).map((e) => e.route);
  else routes = (attached as HTTPRoute[]).flatMap((r) => routeEntries(ctx, r)).sort(byPrecedence).map((e) => e.route);
  return {
    name: clusterName(name, namespace, port.port),
    service: name,
    namespace,
    port: port.port,
    protocol: port.protocol ?? 'HTTP',
    domains: domains(svc, port, httpPorts, ctx.clientNamespace),
    routes,
  };
}

/**
 * Authorities that select a (service, port). The bare service name resolves only from the client's own
 * namespace, as in Kubernetes DNS, so two namespaces' `echo` never claim the same authority.
 */
function domains(svc: Service, port: ServicePort, httpPorts: number, clientNamespace: string): string[] {
  const { name, namespace } = svc.metadata;
  const hosts = [`${name}.${namespace}`, `${name}.${namespace}.svc`, `${name}.${namespace}.svc.${CLUSTER_DOMAIN}`];
  if (namespace === clientNamespace) hosts.unshift(name);
  const portless = port.port === 80 || httpPorts === 1;
  return hosts.flatMap((h) => (portless ? [h, `${h}:${port.port}`] : [`${h}:${port.port}`])).map((d) => d.toLowerCase());
}

/**
 * Routes attached to a (service, port). GAMMA: routes in the client's namespace that name a Service
 * elsewhere (consumer routes) replace, for that client only, the routes in the Service's own
 * namespace (producer routes); routes in any other namespace do not apply.
 */
function attachedRoutes<R extends HTTPRoute | GRPCRoute | TCPRoute>(routes: R[], svc: Service, port: ServicePort, clientNamespace: string): R[] {
  const { name, namespace } = svc.metadata;
  const all = routes.filter((r) =>
    r.spec.parentRefs.some((p) => p.name === name && (p.namespace ?? r.metadata.namespace) === namespace && (p.port === undefined || p.port === port.port)),
  );
  const consumer = clientNamespace === namespace ? [] : all.filter((r) => r.metadata.namespace === clientNamespace);
  return consumer.length > 0 ? consumer : all.filter((r) => r.metadata.namespace === namespace);
}

/**
 * HTTPRoutes and GRPCRoutes are never merged on one port (Gateway API: of an HTTPRoute and a
 * GRPCRoute on the same listener and hostname, exactly one is accepted, the oldest, then the first by
 * `namespace/name`). A mesh route has no hostname of its own, so the port is the listener: the
 * oldest attached route decides the kind, and every route of the other kind is reported and ignored
 * for that port.
 */
function oneRouteKind(ctx: Context, attached: Array<HTTPRoute | GRPCRoute>, svc: Service, port: ServicePort): Array<HTTPRoute | GRPCRoute> {
  if (attached.length === 0) return attached;
  const sorted = [...attached].sort(byAgeThenName);
  const first = sorted[0]!;
  const { name, namespace } = svc.metadata;
  for (const loser of sorted) {
    if (loser.kind === first.kind) continue;
    const i = loser.spec.parentRefs.findIndex(
      (p) => p.name === name && (p.namespace ?? loser.metadata.namespace) === namespace && (p.port === undefined || p.port === port.port),
    );
    report(
      ctx,
      loser,
      `spec.parentRefs[${i}]`,
      `ignored for port ${port.port} of Service ${display(namespace, name)}: ${first.kind} ${display(first.metadata.namespace, first.metadata.name)} is older (or first by namespace/name), and a port takes HTTPRoutes or GRPCRoutes, never both`,
    );
  }
  return sorted.filter((r) => r.kind === first.kind);
}

/** Without an HTTPRoute, a Service port routes everything to its own endpoints. */
function implicitRoute(svc: Service, port: ServicePort): Route {
  const { name, namespace } = svc.metadata;
  return {
    name: `${namespace}/${name}/default`,
    routeRef: 'default',
    match: routeMatch(undefined),
    requestFilters: [],
    responseFilters: [],
    action: { type: 'forward', backends: [{ cluster: clusterName(name, namespace, port.port), weight: 1 }] },
    timeouts: { requestMs: 0, backendRequestMs: 0 },
  };
}

/** A compiled route with what orders it against routes of other rules and HTTPRoutes. */
interface RouteEntry {
  route: Route;
  created: number;
  rule: number;
  match: number;
}

function routeEntries(ctx: Context, hr: HTTPRoute): RouteEntry[] {
  const { namespace, name } = hr.metadata;
  const created = createdAt(hr);
  // The CRD's default for an absent `rules`: one rule matching everything, with no backends.
  const rules: HTTPRouteRule[] = hr.spec.rules ?? [{}];
  return rules.flatMap((rule, i) => {
    const action = routeAction(ctx, hr, rule, i);
    const timeouts = {
      requestMs: parseDuration(rule.timeouts?.request ?? '0s'),
      backendRequestMs: parseDuration(rule.timeouts?.backendRequest ?? '0s'),
    };
    const retry = rule.retry === undefined ? undefined : retryPolicy(rule.retry);
    const faults = new Map<number, Extract<RequestFilter, { type: 'Fault' }>>();
    (rule.filters ?? []).forEach((f, k) => {
      if (f.type === 'ExtensionRef') faults.set(k, faultFilter(ctx, hr, f.extensionRef.name, `spec.rules[${i}].filters[${k}].extensionRef`));
    });
    const mirrors = mirrorFilters(ctx, hr, rule.filters, i);
    if (mirrors.length > 0 && action.type === 'redirect') report(ctx, hr, `spec.rules[${i}].filters`, 'RequestMirror ignored: a redirected request is answered by the proxy and sent nowhere');
    const matches = rule.matches === undefined || rule.matches.length === 0 ? [undefined] : rule.matches;
    return matches.map((m, j) => {
      const match = routeMatch(m);
      const requestFilters: RequestFilter[] = [];
      const responseFilters: HeaderModifier[] = [];
      (rule.filters ?? []).forEach((f, k) => {
        if (f.type === 'RequestHeaderModifier') requestFilters.push({ type: f.type, modifier: headerModifier(f.requestHeaderModifier) });
        else if (f.type === 'ResponseHeaderModifier') responseFilters.push(headerModifier(f.responseHeaderModifier));
        else if (f.type === 'URLRewrite') requestFilters.push({ type: f.type, hostname: f.urlRewrite.hostname ?? null, path: pathRewrite(f.urlRewrite.path, match) });
        else if (f.type === 'ExtensionRef') requestFilters.push(faults.get(k)!);
      });
      if (action.type === 'forward') requestFilters.push(...mirrors.map((m) => ({ ...m })));
      const route: Route = {
        name: `${namespace}/${name}/rule/${i}/match/${j}`,
        routeRef: key(namespace, name),
        match,
        requestFilters,
        responseFilters,
        action: action.type === 'redirect' ? { type: 'redirect', redirect: { ...action.redirect, path: pathRewrite(action.path, match) } } : action,
        timeouts,
        ...(retry === undefined ? {} : { retry }),
      };
      return { route, created, rule: i, match: j };
    });
  });
}

/**
 * An ExtensionRef filter, resolved to the HTTPFault it names in the route's namespace. One that does
 * not exist is reported, and (Gateway API: a filter that cannot be applied must not be skipped) the
 * rule answers 500 INVALID_BACKEND.
 */
function faultFilter(ctx: Context, hr: HTTPRoute, name: string, path: string): Extract<RequestFilter, { type: 'Fault' }> {
  const ref = key(hr.metadata.namespace, name);
  const f = ctx.faults.get(ref);
  if (f === undefined) {
    report(ctx, hr, path, `HTTPFault ${display(hr.metadata.namespace, name)} not found; the rule answers 500 until it exists`);
    return { type: 'Fault', ref, fault: null };
  }
  const { delay, abort } = f.spec;
  const fault: FaultConfig = {
    delay: delay === undefined ? null : { ms: parseDuration(delay.fixedDelay), percentage: delay.percentage ?? 100 },
    abort: abort === undefined ? null : { status: abort.httpStatus, percentage: abort.percentage ?? 100 },
  };
  return { type: 'Fault', ref, fault };
}

/**
 * A rule's RequestMirror filters, resolved to clusters (an unresolved backendRef is reported and
 * mirrors nothing), in declared order: they run after the rule's other request filters.
 */
function mirrorFilters(ctx: Context, owner: HTTPRoute | GRPCRoute, filters: ReadonlyArray<HTTPRouteFilter | GRPCRouteFilter> | undefined, i: number): Array<Extract<RequestFilter, { type: 'RequestMirror' }>> {
  const out: Array<Extract<RequestFilter, { type: 'RequestMirror' }>> = [];
  (filters ?? []).forEach((f, k) => {
    if (f.type !== 'RequestMirror') return;
    const { backendRef, percent, fraction } = f.requestMirror;
    const { cluster } = backend(ctx, owner, { ...backendRef, weight: 1 }, `spec.rules[${i}].filters[${k}].requestMirror.backendRef`);
    const share = percent ?? (fraction === undefined ? 100 : (100 * fraction.numerator) / (fraction.denominator ?? 100));
    out.push({ type: 'RequestMirror', cluster, percent: share });
  });
  return out;
}

/** Retry budget defaults: Linkerd's 20 % of requests plus 10 retries a second. */
export const DEFAULT_RETRY_BUDGET: RetryBudget = { percent: 20, minRetriesPerSecond: 10 };
/** Idle upstream connections close after this unless a BackendPolicy or the Mesh says otherwise. */
export const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS = 60_000;
/** Envoy's default stream idle timeout (5 min), unless a BackendPolicy or the Mesh says otherwise. */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 300_000;
/** Envoy's (and Istio's) default tcp_proxy idle timeout (1 h), unless a BackendPolicy or the Mesh says otherwise. */
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 3_600_000;
/** Envoy's default circuit-breaker thresholds. */
export const DEFAULT_CIRCUIT_BREAKER: CircuitBreakerLimits = { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 1024 };

/** `outlierDetection` with Envoy's defaults (gateway errors off, as Envoy's enforcement of them is 0 %). */
export function outlierDetection(o: OutlierDetectionSpec): OutlierDetection {
  const ms = (d: string | undefined, dflt: number): number => (d === undefined ? dflt : parseDuration(d));
  const sr = o.successRate;
  return {
    consecutive5xx: o.consecutive5xx ?? 5,
    consecutiveGatewayErrors: o.consecutiveGatewayErrors ?? 0,
    consecutiveConnectFailures: o.consecutiveConnectFailures ?? 5,
    intervalMs: ms(o.interval, 10_000),
    baseEjectionTimeMs: ms(o.baseEjectionTime, 30_000),
    // An unset cap never undercuts a longer base time.
    maxEjectionTimeMs: ms(o.maxEjectionTime, Math.max(300_000, ms(o.baseEjectionTime, 30_000))),
    maxEjectionPercent: o.maxEjectionPercent ?? 10,
    successRate: sr === undefined ? null : { minimumHosts: sr.minimumHosts ?? 5, requestVolume: sr.requestVolume ?? 100, stdevFactor: sr.stdevFactor ?? 1900 },
  };
}

/** `healthCheck` with its defaults: every 5s, 1s timeout, in after 1 pass, out after 2 failures. */
export function healthCheck(h: HealthCheckSpec): HealthCheck {
  return {
    probe: h.http !== undefined ? { type: 'http', path: h.http.path, expectedStatuses: h.http.expectedStatuses ?? [] } : { type: 'tcp' },
    intervalMs: h.interval === undefined ? 5000 : parseDuration(h.interval),
    timeoutMs: h.timeout === undefined ? 1000 : parseDuration(h.timeout),
    healthyThreshold: h.healthyThreshold ?? 1,
    unhealthyThreshold: h.unhealthyThreshold ?? 2,
  };
}

/** A rule's `retry` with Weft's defaults: 1 attempt, 25 ms backoff (Envoy's), connect failures retried. */
function retryPolicy(r: HTTPRouteRetry): RetryPolicy {
  return {
    codes: [...(r.codes ?? [])].sort((a, b) => a - b),
    attempts: r.attempts ?? 1,
    backoffMs: parseDuration(r.backoff ?? '25ms'),
    onConnectFailure: r.onConnectFailure ?? true,
    allowNonIdempotent: r.allowNonIdempotent ?? false,
  };
}

/**
 * A GRPCRoute rule's `retry`: the same defaults; every call may be retried (a gRPC call is a POST,
 * and naming its status codes is the user's word that such a failure may be tried again, as in
 * gRPC's own retry policy), on a trailers-only answer with one of `codes`.
 */
function grpcRetryPolicy(r: GRPCRouteRetry): RetryPolicy {
  return {
    codes: [],
    grpcCodes: (r.codes ?? []).map((c) => GRPC_STATUS_CODES[c]!).sort((a, b) => a - b),
    attempts: r.attempts ?? 1,
    backoffMs: parseDuration(r.backoff ?? '25ms'),
    onConnectFailure: r.onConnectFailure ?? true,
    allowNonIdempotent: true,
  };
}

/** A rule's action; a redirect's path waits for the match it rewrites. */
type RuleAction =
  | Extract<RouteAction, { type: 'forward' }>
  | { type: 'redirect'; redirect: Redirect; path: HTTPPathModifier | undefined };

function routeAction(ctx: Context, hr: HTTPRoute, rule: HTTPRouteRule, i: number): RuleAction {
  for (const f of rule.filters ?? []) {
    if (f.type !== 'RequestRedirect') continue;
    const r = f.requestRedirect;
    return {
      type: 'redirect',
      redirect: { scheme: r.scheme ?? null, hostname: r.hostname ?? null, port: r.port ?? null, path: null, statusCode: r.statusCode ?? 302 },
      path: r.path,
    };
  }
  const backendRefs = rule.backendRefs ?? [];
  backendRefs.forEach((ref, k) => {
    if (ref.filters !== undefined && ref.filters.length > 0) report(ctx, hr, `spec.rules[${i}].backendRefs[${k}].filters`, 'not supported yet; ignored');
  });
  return { type: 'forward', backends: backendRefs.map((ref, k) => backend(ctx, hr, ref, `spec.rules[${i}].backendRefs[${k}]`)) };
}

/** Resolves a backendRef to a cluster, or to null (reported) when its Service or port does not exist. */
function backend(ctx: Context, owner: HTTPRoute | GRPCRoute | TCPRoute, ref: BackendRef, path: string): WeightedBackend {
  const ns = ref.namespace ?? owner.metadata.namespace;
  const svc = ctx.serviceByKey.get(key(ns, ref.name));
  const weight = ref.weight ?? 1;
  if (svc === undefined) report(ctx, owner, path, `backend Service ${display(ns, ref.name)} not found`);
  else if (!svc.spec.ports.some((p) => p.port === ref.port)) report(ctx, owner, `${path}.port`, `backend Service ${display(ns, ref.name)} has no port ${ref.port}`);
  else return { cluster: clusterName(ref.name, ns, ref.port), weight };
  return { cluster: null, weight };
}

function routeMatch(m: HTTPRouteMatch | undefined): RouteMatch {
  return {
    path: { type: m?.path?.type ?? 'PathPrefix', value: m?.path?.value ?? '/' },
    method: m?.method ?? null,
    headers: (m?.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), type: h.type ?? 'Exact', value: h.value })),
    queryParams: (m?.queryParams ?? []).map((q) => ({ name: q.name, type: q.type ?? 'Exact', value: q.value })),
  };
}

function headerModifier(f: HTTPHeaderFilter): HeaderModifier {
  const pairs = (xs: Array<{ name: string; value: string }> | undefined) => (xs ?? []).map((x) => ({ name: x.name.toLowerCase(), value: x.value }));
  return { set: pairs(f.set), add: pairs(f.add), remove: (f.remove ?? []).map((n) => n.toLowerCase()) };
}

/** Validation guarantees a ReplacePrefixMatch rule's matches are all PathPrefix, so the match value is the prefix. */
function pathRewrite(p: HTTPPathModifier | undefined, match: RouteMatch): PathRewrite | null {
  if (p === undefined) return null;
  if (p.type === 'ReplaceFullPath') return { type: p.type, value: p.replaceFullPath };
  return { type: p.type, prefix: match.path.value, value: p.replacePrefixMatch };
}

const PATH_RANK = { Exact: 0, RegularExpression: 1, PathPrefix: 2 } as const;

/**
 * Gateway API precedence: Exact path, then the longest PathPrefix, then a method match, then the most
 * header matches, then the most query param matches; ties go to the oldest HTTPRoute, then the first by
 * `namespace/name`, then rule order, then match order. Regular expressions are implementation-specific:
 * they rank between Exact and PathPrefix (longer pattern first), so a deliberate pattern wins over any
 * prefix, as in Envoy-based meshes, yet never shadows an exact path.
 */
function byPrecedence(a: RouteEntry, b: RouteEntry): number {
  const ma = a.route.match;
  const mb = b.route.match;
  return (
    PATH_RANK[ma.path.type] - PATH_RANK[mb.path.type] ||
    mb.path.value.length - ma.path.value.length ||
    Number(mb.method !== null) - Number(ma.method !== null) ||
    mb.headers.length - ma.headers.length ||
    mb.queryParams.length - ma.queryParams.length ||
    compare(a.created, b.created) ||
    compare(a.route.routeRef, b.route.routeRef) ||
    a.rule - b.rule ||
    a.match - b.match
  );
}

/** A compiled GRPCRoute match with what orders it (Gateway API GRPCRoute precedence). */
interface GrpcRouteEntry extends RouteEntry {
  /** Characters of the service and method matched (pattern characters for a regular expression). */
  service: number;
  method: number;
  headers: number;
  regex: boolean;
}

function grpcRouteEntries(ctx: Context, gr: GRPCRoute): GrpcRouteEntry[] {
  const { namespace, name } = gr.metadata;
  const created = createdAt(gr);
  return (gr.spec.rules ?? []).flatMap((rule, i) => {
    const requestFilters: RequestFilter[] = [];
    const responseFilters: HeaderModifier[] = [];
    (rule.filters ?? []).forEach((f) => {
      if (f.type === 'RequestHeaderModifier') requestFilters.push({ type: f.type, modifier: headerModifier(f.requestHeaderModifier) });
      else if (f.type === 'ResponseHeaderModifier') responseFilters.push(headerModifier(f.responseHeaderModifier));
    });
    requestFilters.push(...mirrorFilters(ctx, gr, rule.filters, i));
    const backendRefs = rule.backendRefs ?? [];
    backendRefs.forEach((ref, k) => {
      if (ref.filters !== undefined && ref.filters.length > 0) report(ctx, gr, `spec.rules[${i}].backendRefs[${k}].filters`, 'not supported yet; ignored');
    });
    const action: RouteAction = { type: 'forward', backends: backendRefs.map((ref, k) => backend(ctx, gr, ref, `spec.rules[${i}].backendRefs[${k}]`)) };
    const retry = rule.retry === undefined ? undefined : grpcRetryPolicy(rule.retry);
    const matches: Array<GRPCRouteMatch | undefined> = rule.matches === undefined || rule.matches.length === 0 ? [undefined] : rule.matches;
    return matches.map((m, j) => {
      const route: Route = {
        name: `${namespace}/${name}/rule/${i}/match/${j}`,
        routeRef: key(namespace, name),
        match: {
          path: grpcPathMatch(m?.method),
          method: null,
          headers: (m?.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), type: h.type ?? 'Exact', value: h.value })),
          queryParams: [],
        },
        requestFilters,
        responseFilters,
        action,
        timeouts: { requestMs: 0, backendRequestMs: 0 },
        ...(retry === undefined ? {} : { retry }),
      };
      return {
        route,
        created,
        rule: i,
        match: j,
        service: m?.method?.service?.length ?? 0,
        method: m?.method?.method?.length ?? 0,
        headers: route.match.headers.length,
        regex: m?.method?.type === 'RegularExpression',
      };
    });
  });
}

/**
 * GRPCRoute precedence (Gateway API): the most characters of matched service, then of matched method,
 * then the most header matches; then (Weft's choice where the API is silent) Exact before
 * RegularExpression; then the oldest GRPCRoute, then the first by `namespace/name`, then rule order,
 * then match order.
 */
function byGrpcPrecedence(a: GrpcRouteEntry, b: GrpcRouteEntry): number {
  return (
    b.service - a.service ||
    b.method - a.method ||
    b.headers - a.headers ||
    Number(a.regex) - Number(b.regex) ||
    compare(a.created, b.created) ||
    compare(a.route.routeRef, b.route.routeRef) ||
    a.rule - b.rule ||
    a.match - b.match
  );
}

function tcpService(ctx: Context, svc: Service, port: ServicePort): TcpService {
  const { name, namespace } = svc.metadata;
  const [winner, ...losers] = attachedRoutes(ctx.tcpRoutes, svc, port, ctx.clientNamespace);
  for (const loser of losers) {
    const first = display(winner!.metadata.namespace, winner!.metadata.name);
    report(ctx, loser, 'spec.parentRefs', `ignored for port ${port.port} of Service ${display(namespace, name)}: TCPRoute ${first} is older and attached first`);
  }
  if (winner !== undefined && winner.spec.rules.length > 1) report(ctx, winner, 'spec.rules[1]', 'ignored: a TCP port forwards by its first rule only');
  const backends =
    winner === undefined
      ? [{ cluster: clusterName(name, namespace, port.port), weight: 1 }]
      : winner.spec.rules[0]!.backendRefs.map((ref, k) => backend(ctx, winner, ref, `spec.rules[0].backendRefs[${k}]`));
  return { name: clusterName(name, namespace, port.port), service: name, namespace, port: port.port, backends };
}

/**
 * The TCP side of a port whose protocol was not declared, with detection on. Its opaque TCP goes
 * where the port's HTTP goes when nothing about a request selects a route: the backends of its
 * first catch-all route (PathPrefix `/`, no method, header or query condition; the implicit route
 * to the Service itself when it has no HTTPRoute), so a traffic split applies to TCP clients as
 * well, and the clusters stay those the routes already need. A port with no catch-all forwarding
 * route sends TCP to the Service's own endpoints. TCPRoutes attach only to ports declared `TCP`.
 */
function detectingTcpService(vh: VirtualHost): TcpService {
  const catchAll = vh.routes.find((r) => r.action.type === 'forward' && isCatchAll(r.match));
  const backends = catchAll?.action.type === 'forward' ? catchAll.action.backends.map((b) => ({ ...b })) : [{ cluster: vh.name, weight: 1 }];
  return { name: vh.name, service: vh.service, namespace: vh.namespace, port: vh.port, backends, detect: true, virtualHost: vh.name };
}

const isCatchAll = (m: RouteMatch): boolean =>
  m.path.type === 'PathPrefix' && m.path.value === '/' && m.method === null && m.headers.length === 0 && m.queryParams.length === 0;

function report(ctx: Context, r: Resource, path: string, message: string): void {
  const error = resourceError({ kind: r.kind, namespace: r.metadata.namespace, name: r.metadata.name }, ctx.sourceOf(r), path, message);
  ctx.errors.set(JSON.stringify(error), error);
}

/** Whether a Service selects a Workload: same namespace, and every selector label matches. */
function selects(svc: Service, w: Workload): boolean {
  if (svc.metadata.namespace !== w.metadata.namespace) return false;
  const selector = svc.spec.selector;
  let any = false;
  for (const k in selector) {
    if (w.metadata.labels[k] !== selector[k]) return false;
    any = true;
  }
  return any;
}

/** The app port of `w` a Service port leads to: `targetPort` (the port's name by default) looked up in the workload's named ports, or a number as is. */
function appPortOf(port: ServicePort, w: Workload): number | undefined {
  const target = port.targetPort ?? port.name;
  if (typeof target === 'number') return target;
  return Object.hasOwn(w.spec.ports, target) ? w.spec.ports[target] : undefined;
}

function defaultPort(ports: Record<string, number>): number | null {
  const values = Object.values(ports);
  if (values.length === 1) return values[0]!;
  return Object.hasOwn(ports, 'http') ? ports.http! : null;
}

const key = (namespace: string, name: string): string => `${namespace}/${name}`;
const display = (namespace: string, name: string): string => (namespace === 'default' ? name : `${namespace}/${name}`);
const spiffeId = (trustDomain: string, namespace: string, serviceAccount: string): string => `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
const ascending = (xs: Iterable<number>): number[] => [...xs].sort((a, b) => a - b);
const clusterName = (service: string, namespace: string, port: number): string => `${service}.${namespace}:${port}`;
// Resources without a creation time (straight from a file) count as newest.
const createdAt = (r: Resource): number => (r.metadata.creationTimestamp === undefined ? Infinity : Date.parse(r.metadata.creationTimestamp));
// Code-point order, not localeCompare: output must not depend on the host's locale.
const compare = <T extends string | number>(a: T, b: T): number => (a < b ? -1 : a > b ? 1 : 0);
const byName = (a: Resource, b: Resource): number => compare(a.metadata.namespace, b.metadata.namespace) || compare(a.metadata.name, b.metadata.name);
const byAgeThenName = (a: Resource, b: Resource): number => compare(createdAt(a), createdAt(b)) || byName(a, b);

function sortedRecord<V>(r: Record<string, V>): Record<string, V> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => compare(a, b)));
}
