/**
 * The outbound router: authority → virtual host → first matching route → that route's prebuilt
 * handler (its filters composed around a weighted backend pick). Built once per configuration.
 */
import { MeshError } from '../../core/errors.js';
import type { Route, VirtualHost, WeightedBackend } from '../../model/snapshot.js';
import { compose, type Handler, type Layer } from '../message.js';
import { requestHeaderModifier, responseHeaderModifier } from '../filters/header-modifier.js';
import { redirectHandler } from '../filters/redirect.js';
import { requestTimeout } from '../filters/request-timeout.js';
import { retryLayer, type RetryResult } from '../filters/retry.js';
import { urlRewrite } from '../filters/url-rewrite.js';
import { faultLayer, unresolvedFault, type FaultReport } from '../filters/fault.js';
import { DEFAULT_MIRROR_TIMEOUT_MS, mirrorLayer, type MirrorReport } from '../filters/mirror.js';
import type { ClusterRuntime } from '../upstream/cluster.js';
import { buildMatcher, needsQuery, pathPart, type Matcher } from './match.js';

interface BuiltRoute {
  readonly name: string;
  readonly matcher: Matcher;
  readonly handler: Handler;
}

interface BuiltHost {
  /** `service.namespace`, the destination label. */
  readonly destination: string;
  readonly routes: readonly BuiltRoute[];
  readonly needsQuery: boolean;
}

/** Counts a retry outcome (`weft_retries_total`). */
export type RetryReport = (destination: string, result: RetryResult) => void;
const noReport: RetryReport = () => {};
const noFaultReport: FaultReport = () => {};
const noMirrorReport: MirrorReport = () => {};

/** Builds the handler of one route: its filters around its action. */
export function buildRouteHandler(
  route: Route,
  clusters: ReadonlyMap<string, ClusterRuntime>,
  onRetry: RetryReport = noReport,
  onFault: FaultReport = noFaultReport,
  onMirror: MirrorReport = noMirrorReport,
): Handler {
  const layers: Layer[] = [];
  if (route.timeouts.requestMs > 0) layers.push(requestTimeout(route.timeouts.requestMs));
  if (route.responseFilters.length > 0) layers.push(responseHeaderModifier(route.responseFilters));
  for (const f of route.requestFilters) {
    if (f.type === 'RequestHeaderModifier') layers.push(requestHeaderModifier(f.modifier));
    else if (f.type === 'URLRewrite') layers.push(urlRewrite(f.hostname, f.path));
    else if (f.type === 'Fault') layers.push(f.fault === null ? unresolvedFault(f.ref, route.name) : faultLayer(f.fault, { route: route.name, report: onFault }));
    else {
      // A mirror whose backendRef did not resolve was reported by the compiler; it mirrors nothing.
      const mirror = f.cluster === null ? undefined : clusters.get(f.cluster);
      const timeoutMs = route.timeouts.requestMs > 0 ? route.timeouts.requestMs : DEFAULT_MIRROR_TIMEOUT_MS;
      if (mirror !== undefined) layers.push(mirrorLayer(f.percent, mirror.handler(0), { route: route.name, report: onMirror, timeoutMs }));
    }
  }
  const terminal =
    route.action.type === 'redirect'
      ? redirectHandler(route.action.redirect)
      : weightedBackends(route.action.backends, clusters, route.timeouts.backendRequestMs, route.name, route.retry === undefined ? null : (c) => retryLayer(route.retry!, c.retryBudget, { destination: `${c.config.service}.${c.config.namespace}`, report: onRetry, breaker: c.breaker }));
  return compose(layers, terminal);
}

function invalidBackend(message: string): Handler {
  return (req) => {
    req.body?.abort(new Error(message));
    return Promise.reject(new MeshError('INVALID_BACKEND', message));
  };
}

/** Picks one backend per request in proportion to the weights. */
function weightedBackends(
  backends: readonly WeightedBackend[],
  clusters: ReadonlyMap<string, ClusterRuntime>,
  backendTimeoutMs: number,
  routeName: string,
  retry: ((c: ClusterRuntime) => Layer) | null,
): Handler {
  const live = backends.filter((b) => b.weight > 0);
  if (live.length === 0) return invalidBackend(`route ${routeName} has no backend with a weight above 0`);
  const handlers = live.map((b) => {
    if (b.cluster === null) return invalidBackend(`route ${routeName} refers to a backend that does not exist`);
    const c = clusters.get(b.cluster);
    if (c === undefined) return invalidBackend(`route ${routeName} refers to unknown cluster ${b.cluster}`);
    // Retries stay with the backend picked first (as Envoy's weighted clusters), each try a fresh endpoint pick.
    return retry === null ? c.handler(backendTimeoutMs) : retry(c)(c.handler(backendTimeoutMs));
  });
  if (handlers.length === 1) return handlers[0]!;
  const cumulative: number[] = [];
  let total = 0;
  for (const b of live) cumulative.push((total += b.weight));
  return (req, ctx) => {
    const r = Math.random() * total;
    let i = 0;
    while (cumulative[i]! <= r) i++;
    return handlers[i]!(req, ctx);
  };
}

/** Routes outbound HTTP by authority. */
export class RouteTable {
  private readonly hosts = new Map<string, BuiltHost>();
  /** By virtual host name (`service.namespace:port`). */
  private readonly byName = new Map<string, BuiltHost>();

  constructor(
    virtualHosts: readonly VirtualHost[],
    clusters: ReadonlyMap<string, ClusterRuntime>,
    onRetry: RetryReport = noReport,
    onFault: FaultReport = noFaultReport,
    onMirror: MirrorReport = noMirrorReport,
  ) {
    for (const vh of virtualHosts) {
      const host: BuiltHost = {
        destination: `${vh.service}.${vh.namespace}`,
        routes: vh.routes.map((r) => ({ name: r.name, matcher: buildMatcher(r.match), handler: buildRouteHandler(r, clusters, onRetry, onFault, onMirror) })),
        needsQuery: vh.routes.some((r) => needsQuery(r.match)),
      };
      for (const d of vh.domains) if (!this.hosts.has(d)) this.hosts.set(d, host);
      this.byName.set(vh.name, host);
    }
  }

  /**
   * A router for one virtual host, whatever authority a request carries (the HTTP detected on an
   * `--upstream` local port, which names its service by the port it came to); null when there is
   * no such host.
   */
  hostHandler(name: string): Handler | null {
    const host = this.byName.get(name);
    return host === undefined ? null : (req, ctx) => this.route(host, req, ctx);
  }

  /** The router: a terminal handler for every outbound request. */
  readonly handler: Handler = (req, ctx) => {
    const host = this.hosts.get(req.authority);
    if (host === undefined) {
      req.body?.abort(new Error('no route'));
      return Promise.reject(new MeshError('NO_ROUTE', `no service matches authority "${req.authority}"`));
    }
    return this.route(host, req, ctx);
  };

  private route(host: BuiltHost, req: Parameters<Handler>[0], ctx: Parameters<Handler>[1]): ReturnType<Handler> {
    ctx.destination = host.destination;
    const p = pathPart(req.path);
    const query = host.needsQuery ? new URLSearchParams(req.path.slice(p.length + 1)) : null;
    for (const r of host.routes) {
      if (r.matcher(req, p, query)) {
        ctx.route = r.name;
        return r.handler(req, ctx);
      }
    }
    req.body?.abort(new Error('no route'));
    return Promise.reject(new MeshError('NO_ROUTE', `no route of ${host.destination} matches ${req.method} ${p}`));
  }
}
