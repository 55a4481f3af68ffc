/**
 * The compiled mesh as the config server hands it out. What every proxy of a namespace sees of the
 * mesh (routes, clusters, endpoints) is compiled once per namespace and shared; only the part about
 * a proxy's own workload is per proxy. Each part carries its version, and endpoints carry one per
 * cluster so a push can send only the clusters that changed.
 */
import {
  compileOutbound,
  compileWorkload,
  contentVersion,
  endpointsVersion,
  scopeKey,
  scopeOutbound,
  type ClusterConfig,
  type ConfigParts,
  type Endpoint,
  type ResourceError,
} from '../../model/index.js';
import { prepareWorkloadIndex, type WorkloadIndex } from '../../model/compile.js';
import type { Resource, Workload } from '../../model/resources.js';

/** A value and its version. */
export interface Versioned<T> {
  version: string;
  value: T;
}

/** Endpoints of every cluster, each list versioned. */
export interface EndpointsView {
  version: string;
  clusters: Map<string, Versioned<Endpoint[]>>;
}

/** What all proxies of one namespace get. */
export interface NamespaceView {
  routes: Versioned<ConfigParts['routes']>;
  clusters: Versioned<ClusterConfig[]>;
  endpoints: EndpointsView;
  errors: ResourceError[];
}

/** One generation of the compiled mesh; built lazily per namespace. */
export class MeshView {
  readonly generation: number;
  private readonly resources: Resource[];
  private readonly namespaces = new Map<string, NamespaceView>();
  private readonly scopes = new Map<string, NamespaceView>();
  private readonly workloads = new Map<string, Workload>();
  private readonly workloadParts = new WeakMap<Workload, Versioned<ConfigParts['workload']>>();
  /** What workload parts depend on besides the Workload itself (Services, AuthorizationPolicies, Mesh); built on first use. */
  private workloadIndex: WorkloadIndex | null = null;
  private previous: MeshView | null;

  constructor(resources: Resource[], generation: number, previous: MeshView | null) {
    this.resources = resources;
    this.generation = generation;
    this.previous = previous;
    // Only the view just before is worth reusing; dropping its own link keeps the chain at two.
    if (previous !== null) previous.previous = null;
    for (const r of resources) if (r.kind === 'Workload') this.workloads.set(`${r.metadata.namespace}/${r.metadata.name}`, r);
  }

  /** The part about one workload, or null when no such Workload exists (yet). */
  workload(namespace: string, name: string): Versioned<ConfigParts['workload']> | null {
    const w = this.workloads.get(`${namespace}/${name}`);
    if (w === undefined) return null;
    this.workloadIndex ??= prepareWorkloadIndex(this.resources);
    const index = this.workloadIndex;
    // A part compiled by the view before is still right when neither the Workload object nor what
    // it depends on changed; endpoint churn changes neither, so every proxy's part is reused then.
    let v = this.workloadParts.get(w);
    if (v === undefined && this.previous?.workloadIndex?.version === index.version) v = this.previous.workloadParts.get(w);
    if (v === undefined) {
      const value = compileWorkload(w, index);
      v = { version: contentVersion(value), value };
    }
    this.workloadParts.set(w, v);
    return v;
  }

  /** The shared part for proxies in `namespace`. */
  namespace(namespace: string): NamespaceView {
    let v = this.namespaces.get(namespace);
    if (v !== undefined) return v;
    const out = compileOutbound(this.resources, namespace);
    const clusters: ClusterConfig[] = [];
    const perCluster = new Map<string, Versioned<Endpoint[]>>();
    const before = this.previous?.namespaces.get(namespace)?.endpoints.clusters;
    for (const { endpoints, ...c } of out.clusters) {
      clusters.push(c);
      const json = JSON.stringify(endpoints);
      const version = contentVersion(json);
      // Keep the previous list object when nothing changed, so identical pushes share memory.
      const old = before?.get(c.name);
      perCluster.set(c.name, old !== undefined && old.version === version ? old : { version, value: endpoints });
    }
    const routes = { virtualHosts: out.virtualHosts, tcpServices: out.tcpServices };
    v = {
      routes: { version: contentVersion(routes), value: routes },
      clusters: { version: contentVersion(clusters), value: clusters },
      endpoints: { version: endpointsVersion(new Map([...perCluster].map(([n, e]) => [n, e.version]))), clusters: perCluster },
      errors: out.errors,
    };
    this.namespaces.set(namespace, v);
    return v;
  }

  /** The scope key of a workload (see model/scope.ts): `*` unless it declares the services it calls. */
  scopeOf(namespace: string, name: string): string {
    return scopeKey(namespace, this.workloads.get(`${namespace}/${name}`)?.spec.calls);
  }

  /** What a proxy in `namespace` with scope `key` gets: the namespace's view cut down to the scope. */
  scoped(namespace: string, key: string): NamespaceView {
    const all = this.namespace(namespace);
    if (key === '*') return all;
    const cacheKey = `${namespace}\0${key}`;
    let v = this.scopes.get(cacheKey);
    if (v !== undefined) return v;
    const cut = scopeOutbound({ ...all.routes.value, clusters: all.clusters.value }, key);
    const perCluster = new Map<string, Versioned<Endpoint[]>>();
    for (const c of cut.clusters) perCluster.set(c.name, all.endpoints.clusters.get(c.name)!);
    const routes = { virtualHosts: cut.virtualHosts, tcpServices: cut.tcpServices };
    v = {
      routes: { version: contentVersion(routes), value: routes },
      clusters: { version: contentVersion(cut.clusters), value: cut.clusters },
      endpoints: { version: endpointsVersion(new Map([...perCluster].map(([n, e]) => [n, e.version]))), clusters: perCluster },
      errors: all.errors,
    };
    this.scopes.set(cacheKey, v);
    return v;
  }

  /** Namespaces that hold any resource. */
  namespaceNames(): string[] {
    return [...new Set(this.resources.map((r) => r.metadata.namespace))].sort();
  }

  /** Compile problems by resource key (`Kind/ns/name`), over every namespace that has resources. */
  errorsByResource(): Map<string, ResourceError[]> {
    const out = new Map<string, Map<string, ResourceError>>();
    for (const ns of this.namespaceNames()) {
      for (const e of this.namespace(ns).errors) {
        const key = `${e.kind}/${e.namespace}/${e.name}`;
        if (!out.has(key)) out.set(key, new Map());
        out.get(key)!.set(`${e.path}\0${e.message}`, e);
      }
    }
    return new Map([...out].map(([k, m]) => [k, [...m.values()]]));
  }
}
