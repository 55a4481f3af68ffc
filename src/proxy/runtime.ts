/**
 * Everything built from one snapshot: the router, the inbound forwarder, the clusters and TCP
 * targets. A new snapshot builds a new Runtime; listeners swap to it in one assignment, and
 * requests already in flight finish on the one they started with.
 */
import { MeshError } from '../core/errors.js';
import type { ProxySnapshot, TcpService } from '../model/snapshot.js';
import { getHeader, removeHeader, type Handler, type ProxyRequest } from './message.js';
import type { UpstreamPool } from './upstream/upstream-pool.js';
import { RouteTable, type RetryReport } from './route/route-table.js';
import type { FaultReport } from './filters/fault.js';
import type { MirrorReport } from './filters/mirror.js';
import { ConnectTable } from './route/connect-table.js';
import { APP_PORT_HEADER, ClusterRuntime } from './upstream/cluster.js';
import type { BreakerReport } from './upstream/breaker.js';
import type { PoolRegistry } from './upstream/pools.js';
import { buildAuthorizer } from './authz/authorize.js';
import { InboundRateLimiter, type RateLimitRegistry } from './ratelimit/inbound-limiter.js';
import { canonicalService, takePeerLabels } from './admin/peer-labels.js';

/** Connect timeout towards the local app. */
const APP_CONNECT_TIMEOUT_MS = 1000;

/** A TCP service with its backends resolved to clusters. */
export interface TcpTarget {
  readonly service: TcpService;
  /** Picks the cluster for one connection (weighted), or null. */
  readonly pickCluster: () => ClusterRuntime | null;
  /**
   * For a service that detects (`service.detect`): routes the HTTP found on its `--upstream` port
   * through its virtual host, whatever the request's authority; null otherwise.
   */
  readonly http: Handler | null;
}

/** The data plane built from one snapshot. */
export class Runtime {
  readonly snapshot: ProxySnapshot;
  readonly clusters: ReadonlyMap<string, ClusterRuntime>;
  readonly outbound: Handler;
  readonly inbound: Handler;
  readonly tcp: ReadonlyMap<string, TcpTarget>;
  /** Service ports by authority, for `CONNECT` on the outbound listener. */
  readonly connectTargets: ConnectTable;
  /** Every pool this runtime uses, so older ones can be closed. */
  readonly pools: ReadonlySet<UpstreamPool>;
  /** The inbound rate limits, or null when no RateLimitPolicy covers this workload (or no registry was given). */
  readonly rateLimiter: InboundRateLimiter | null;

  constructor(snapshot: ProxySnapshot, registry: PoolRegistry, onRetry?: RetryReport, onBreakerOpen?: BreakerReport, onFault?: FaultReport, rateLimits?: RateLimitRegistry, onMirror?: MirrorReport) {
    this.snapshot = snapshot;
    const clusters = new Map<string, ClusterRuntime>();
    const pools = new Set<UpstreamPool>();
    const self = canonicalService(snapshot.workload);
    for (const c of snapshot.clusters) {
      const rt = new ClusterRuntime(c, registry, onBreakerOpen, snapshot.workload.labels);
      rt.sourceService = self;
      clusters.set(c.name, rt);
      for (const e of rt.endpoints) pools.add(e.pool);
    }
    this.clusters = clusters;
    const routes = new RouteTable(snapshot.virtualHosts, clusters, onRetry, onFault, onMirror);
    this.outbound = routes.handler;
    const limits = snapshot.inbound.rateLimits;
    this.rateLimiter = limits === undefined || rateLimits === undefined ? null : new InboundRateLimiter(limits, rateLimits, `${snapshot.workload.name}.${snapshot.workload.namespace}`);
    this.inbound = inboundHandler(snapshot, registry, pools, this.rateLimiter);
    const tcp = new Map<string, TcpTarget>();
    for (const t of snapshot.tcpServices) {
      const http = t.detect === true && t.virtualHost !== undefined ? routes.hostHandler(t.virtualHost) : null;
      tcp.set(t.name, { service: t, pickCluster: weightedClusters(t, clusters), http });
    }
    this.tcp = tcp;
    this.connectTargets = new ConnectTable(snapshot, clusters, tcp);
    this.pools = pools;
  }
}

function weightedClusters(t: TcpService, clusters: ReadonlyMap<string, ClusterRuntime>): () => ClusterRuntime | null {
  const live = t.backends.filter((b) => b.weight > 0 && b.cluster !== null && clusters.has(b.cluster));
  const list = live.map((b) => clusters.get(b.cluster!)!);
  const total = live.reduce((s, b) => s + b.weight, 0);
  if (list.length === 0) return () => null;
  if (list.length === 1) return () => list[0]!;
  return () => {
    let r = Math.random() * total;
    for (let i = 0; i < live.length; i++) if ((r -= live[i]!.weight) < 0) return list[i]!;
    return list[list.length - 1]!;
  };
}

/** Forwards inbound requests to this workload's app, on the port the caller's proxy named. */
function inboundHandler(snapshot: ProxySnapshot, registry: PoolRegistry, pools: Set<UpstreamPool>, rateLimiter: InboundRateLimiter | null): Handler {
  const { appAddress, ports, defaultPort } = snapshot.inbound;
  const byPort = new Map<number, UpstreamPool>();
  for (const port of Object.values(ports)) {
    // An app port of an HTTP/2 or gRPC Service gets HTTP/2 (prior knowledge), whatever the caller spoke.
    const protocol = snapshot.inbound.appProtocols[String(port)];
    const pool = registry.get(appAddress, port, APP_CONNECT_TIMEOUT_MS, null, protocol === 'HTTP2' || protocol === 'GRPC' ? 'h2' : 'http/1.1');
    byPort.set(port, pool);
    pools.add(pool);
  }
  const destination = canonicalService(snapshot.workload);
  const authz = buildAuthorizer(snapshot.inbound.authorization);
  return (req, ctx) => {
    let port = defaultPort;
    const named = getHeader(req.headers, APP_PORT_HEADER);
    if (named !== undefined) {
      removeHeader(req.headers, APP_PORT_HEADER);
      port = Number(named);
    }
    const pool = port === null ? undefined : byPort.get(port);
    ctx.destination = destination;
    ctx.route = 'inbound';
    takePeerLabels(req.headers, ctx, snapshot.workload.namespace);
    if (pool === undefined) {
      req.body?.abort(new Error('no app port'));
      const why = port === null ? 'the workload has several ports and the request named none' : `port ${named} is not a port of this workload`;
      return Promise.reject(new MeshError('NO_ROUTE', `inbound: ${why}`));
    }
    if (!authz.allowsAll) {
      // Policies match paths as received; a path the app might resolve differently (dot segments,
      // doubled or encoded slashes) could slip past a DENY, so it is refused where policies apply.
      const path = req.path.split('?', 1)[0]!;
      if (AMBIGUOUS_PATH.test(path)) {
        req.body?.abort(new Error('ambiguous path'));
        return Promise.reject(new MeshError('BAD_REQUEST', `path ${JSON.stringify(path)} has dot segments, "//" or encoded "." or "/"; refused because authorization policies apply here`));
      }
      const decision = authz.http({ appPort: port!, identity: ctx.peerIdentity, method: req.method, path: req.path, headers: (name) => headerValues(req.headers, name) });
      if (!decision.allowed) {
        req.body?.abort(new Error('denied'));
        ctx.route = decision.policy === null ? 'inbound:denied' : `inbound:denied:${decision.policy}`;
        const by = decision.policy === null ? decision.reason : `by AuthorizationPolicy ${decision.policy}`;
        return Promise.reject(new MeshError('DENIED', `${ctx.peerIdentity ?? 'a caller without identity'} may not ${req.method} ${req.path.split('?')[0]} here: denied ${by}`));
      }
    }
    // Rate limits count only what authorization let through, as at Envoy's and Istio's inbound side.
    const limited = rateLimiter === null ? null : rateLimiter.check(req, ctx, port!);
    if (limited === null) return pool.request(req, ctx, 0);
    if (limited instanceof MeshError) return refuseLimited(req, limited);
    return limited.then((err) => {
      if (err !== null) return refuseLimited(req, err);
      if (ctx.aborted !== null) return refuseLimited(req, ctx.aborted);
      return pool.request(req, ctx, 0);
    });
  };
}

function refuseLimited(req: ProxyRequest, err: Error): Promise<never> {
  req.body?.abort(err);
  return Promise.reject(err);
}

/** Paths that are not in normal form: `/./`, `/../` (or at the end), `//`, `%2e`, `%2f`, `%5c`, `\\`. */
const AMBIGUOUS_PATH = /\/\.{1,2}(\/|$)|\/\/|%2e|%2f|%5c|\\/i;

/** Every value of a header (lowercase name), or undefined when absent. */
function headerValues(headers: readonly string[], name: string): string[] | undefined {
  let out: string[] | undefined;
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) (out ??= []).push(headers[i + 1]!);
  return out;
}
