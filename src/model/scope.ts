/**
 * A workload's outbound scope: the services it calls (`spec.calls` of a Workload or App, `--calls`
 * of `weft proxy`). A proxy whose workload declares a scope gets only those services' routes and the
 * clusters and endpoints they lead to, so in a big mesh it holds (and is sent updates about) a small
 * part of it — the role of Istio's Sidecar egress hosts. No scope means every service.
 *
 * An entry is `name` (a service in the workload's own namespace), `namespace/name`, `namespace/*`
 * or `*` (everything).
 */
import type { Cluster, TcpService, VirtualHost } from './snapshot.js';

const LABEL = '[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?';
const ENTRY = new RegExp(`^(\\*|${LABEL}|${LABEL}/(\\*|${LABEL}))$`);

/** What is wrong with one entry of a scope, or null. */
export function callsEntryProblem(entry: string): string | null {
  return ENTRY.test(entry) ? null : 'must be a service name, "namespace/name", "namespace/*" or "*"';
}

/** A stable key for a scope (`*` when it covers everything), for caching what was compiled for it. */
export function scopeKey(namespace: string, calls: readonly string[] | undefined): string {
  if (calls === undefined || calls.includes('*')) return '*';
  return [...new Set(calls.map((c) => (c.includes('/') ? c : `${namespace}/${c}`)))].sort().join(',');
}

/** Whether a scope (from `scopeKey`) includes a service. */
export function inScope(key: string, namespace: string, service: string): boolean {
  if (key === '*') return true;
  return key.split(',').some((e) => e === `${namespace}/${service}` || e === `${namespace}/*`);
}

interface Outbound {
  virtualHosts: VirtualHost[];
  tcpServices: TcpService[];
  clusters: Array<Pick<Cluster, 'name'>>;
}

/**
 * The part of an outbound view a scope needs: the virtual hosts and TCP services of the services in
 * scope, and every cluster those refer to (a route may split to services outside the scope, e.g. a
 * canary's `reviews-v2` behind `reviews`; those clusters come along).
 */
export function scopeOutbound<T extends Outbound>(view: T, key: string): T {
  if (key === '*') return view;
  const virtualHosts = view.virtualHosts.filter((v) => inScope(key, v.namespace, v.service));
  const tcpServices = view.tcpServices.filter((t) => inScope(key, t.namespace, t.service));
  const wanted = new Set<string>();
  collectClusters([virtualHosts, tcpServices], wanted);
  const clusters = view.clusters.filter((c) => wanted.has(c.name)) as T['clusters'];
  return { ...view, virtualHosts, tcpServices, clusters };
}

/** Every string under a `cluster` key, wherever a route action, a backend or a filter holds one. */
function collectClusters(value: unknown, out: Set<string>): void {
  if (Array.isArray(value)) {
    for (const v of value) collectClusters(v, out);
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'cluster' && typeof v === 'string') out.add(v);
      else collectClusters(v, out);
    }
  }
}
