/**
 * Every resource the control plane knows, from its three sources: the API (durable, in the store),
 * the watched config directory (the files are the truth, held in memory), and the workload registry
 * (workloads that proxies registered, durable so that a restart does not drop live endpoints while
 * their proxies reconnect). A key belongs to one source; a second source claiming it is refused.
 */
import type { FileStore } from './store/file-store.js';
import type { Resource, Workload } from '../model/resources.js';

/** Where a resource came from. */
export type ResourceSource = { type: 'api' } | { type: 'file'; file: string } | { type: 'registry' };

/** A resource and its bookkeeping. */
export interface IndexedResource {
  resource: Resource;
  source: ResourceSource;
}

/** What an apply did to one resource. */
export type ApplyAction = 'created' | 'configured' | 'unchanged';

/** One change, as watchers see it. */
export interface IndexEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  key: string;
  entry: IndexedResource;
}

/** `Kind/namespace/name`: the identity of a resource. */
export function resourceKey(r: { kind: string; metadata: { namespace: string; name: string } }): string {
  return `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
}

const API_PREFIX = 'resources/';
const REGISTRY_PREFIX = 'registry/';

export class ConflictError extends Error {}

/** The union of all sources, with one change signal. */
export class ResourceIndex {
  private readonly store: FileStore;
  private readonly entries = new Map<string, IndexedResource>();
  private readonly listeners = new Set<(events: IndexEvent[]) => void>();
  private cached: Resource[] | null = null;
  private revision = 0;

  constructor(store: FileStore) {
    this.store = store;
    for (const [, value] of store.list(API_PREFIX)) this.put(value as Resource, { type: 'api' });
    for (const [, value] of store.list(REGISTRY_PREFIX)) this.put(value as Resource, { type: 'registry' });
  }

  /** Bumped on every change; compiled views compare it. */
  get generation(): number {
    return this.revision;
  }

  /** Every resource, as one array (rebuilt only after a change). */
  all(): Resource[] {
    this.cached ??= [...this.entries.values()].map((e) => e.resource);
    return this.cached;
  }

  get(key: string): IndexedResource | undefined {
    return this.entries.get(key);
  }

  /** Resources of a kind (or all) in a namespace (or all), in key order. */
  list(kind?: string, namespace?: string): IndexedResource[] {
    return [...this.entries.entries()]
      .filter(([, e]) => (kind === undefined || e.resource.kind === kind) && (namespace === undefined || e.resource.metadata.namespace === namespace))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, e]) => e);
  }

  /** Calls `fn` after every change. */
  onChange(fn: (events: IndexEvent[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private put(r: Resource, source: ResourceSource): void {
    const key = resourceKey(r);
    const entry = { resource: r, source };
    const type = this.entries.has(key) ? 'MODIFIED' : 'ADDED';
    this.entries.set(key, entry);
    this.changed([{ type, key, entry }]);
  }

  private changed(events: IndexEvent[]): void {
    if (events.length === 0) return;
    this.cached = null;
    this.revision++;
    for (const fn of this.listeners) fn(events);
  }

  private owner(key: string, wanted: ResourceSource['type']): void {
    const e = this.entries.get(key);
    if (e === undefined || e.source.type === wanted) return;
    const by = e.source.type === 'file' ? `the file ${e.source.file} (edit the file instead)` : e.source.type === 'registry' ? "a proxy's registration" : 'the API';
    throw new ConflictError(`${key} is managed by ${by}`);
  }

  /**
   * Creates or updates one resource through the API; resolves once it is durable. Keeps the creation
   * time of an existing resource, since route precedence breaks ties by age.
   */
  async apply(r: Resource, dryRun = false): Promise<ApplyAction> {
    const key = resourceKey(r);
    this.owner(key, 'api');
    const prev = this.entries.get(key)?.resource;
    const stored = structuredClone(r) as Resource;
    const meta = stored.metadata;
    if (prev !== undefined && sameContent(prev, stored)) return 'unchanged';
    const prevMeta = prev?.metadata;
    meta.creationTimestamp = prevMeta?.creationTimestamp ?? r.metadata.creationTimestamp ?? new Date().toISOString();
    meta.generation = (prevMeta?.generation ?? 0) + 1;
    if (dryRun) return prev === undefined ? 'created' : 'configured';
    const rev = await this.store.put(API_PREFIX + key, stored);
    meta.resourceVersion = String(rev);
    this.put(stored, { type: 'api' });
    return prev === undefined ? 'created' : 'configured';
  }

  /** Deletes an API resource; resolves with false when there was none. */
  async delete(key: string): Promise<boolean> {
    const e = this.entries.get(key);
    if (e === undefined) return false;
    this.owner(key, 'api');
    await this.store.delete(API_PREFIX + key);
    this.entries.delete(key);
    this.changed([{ type: 'DELETED', key, entry: e }]);
    return true;
  }

  /**
   * Replaces everything one file contributed. Resources whose key another source holds are
   * returned as conflicts and left out.
   */
  setFile(file: string, resources: Resource[]): string[] {
    const conflicts: string[] = [];
    const before = new Map<string, IndexedResource>();
    for (const [key, e] of this.entries) {
      if (e.source.type === 'file' && e.source.file === file) {
        this.entries.delete(key);
        before.set(key, e);
      }
    }
    const events: IndexEvent[] = [];
    for (const r of resources) {
      const key = resourceKey(r);
      const e = this.entries.get(key);
      if (e !== undefined) {
        conflicts.push(`${key}: already defined by ${e.source.type === 'file' ? e.source.file : e.source.type === 'api' ? 'the API' : 'a registration'}`);
        continue;
      }
      const old = before.get(key);
      before.delete(key);
      r.metadata.creationTimestamp ??= old?.resource.metadata.creationTimestamp ?? new Date().toISOString();
      const entry: IndexedResource = { resource: r, source: { type: 'file', file } };
      this.entries.set(key, entry);
      if (old === undefined) events.push({ type: 'ADDED', key, entry });
      else if (!sameContent(old.resource, r)) events.push({ type: 'MODIFIED', key, entry });
    }
    for (const [key, entry] of before) events.push({ type: 'DELETED', key, entry });
    this.changed(events);
    return conflicts;
  }

  /** Adds or refreshes a registered workload (durable). */
  async register(w: Workload): Promise<void> {
    const key = resourceKey(w);
    this.owner(key, 'registry');
    const prev = this.entries.get(key)?.resource;
    if (prev !== undefined && sameContent(prev, w)) return;
    w.metadata.creationTimestamp = prev?.metadata.creationTimestamp ?? new Date().toISOString();
    await this.store.put(REGISTRY_PREFIX + key, w);
    this.put(w, { type: 'registry' });
  }

  /** Removes a registered workload. */
  async deregister(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (e === undefined || e.source.type !== 'registry') return;
    await this.store.delete(REGISTRY_PREFIX + key);
    if (this.entries.get(key) === e) {
      this.entries.delete(key);
      this.changed([{ type: 'DELETED', key, entry: e }]);
    }
  }

  /** Registered workloads (for restoring leases after a restart). */
  registered(): Workload[] {
    return [...this.entries.values()].filter((e) => e.source.type === 'registry').map((e) => e.resource as Workload);
  }
}

function sameContent(a: Resource, b: Resource): boolean {
  // What the user wrote decides sameness; the control plane's own bookkeeping does not.
  const strip = (r: Resource): unknown => ({ ...r, metadata: { name: r.metadata.name, namespace: r.metadata.namespace, labels: r.metadata.labels, annotations: r.metadata.annotations } });
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
}
