/**
 * The workload registry: a proxy registers its workload when it connects and holds a lease while it
 * stays in touch. When the lease lapses (the proxy died, or lost its link for longer than the TTL)
 * the workload is removed, so its endpoint leaves every other proxy's configuration within the TTL.
 *
 * Registrations are durable; after a control plane restart each restored one gets a fresh lease, so
 * live endpoints are not dropped while their proxies reconnect, and dead ones still lapse.
 */
import { WEFT_V1ALPHA1, type Workload } from '../../model/resources.js';
import { validateResource } from '../../model/validate.js';
import type { RegisteredWorkload } from '../../model/config-parts.js';
import { resourceKey, type ResourceIndex } from '../resource-index.js';

interface Lease {
  key: string;
  expiresAt: number;
  timer: NodeJS.Timeout;
}

/** Leases over registered workloads. */
export class WorkloadRegistry {
  private readonly index: ResourceIndex;
  readonly ttlMs: number;
  private readonly leases = new Map<string, Lease>();
  private readonly onLapse: (key: string) => void;

  constructor(index: ResourceIndex, ttlMs: number, onLapse: (key: string) => void = () => {}) {
    this.index = index;
    this.ttlMs = ttlMs;
    this.onLapse = onLapse;
    for (const w of index.registered()) this.renew(resourceKey(w));
  }

  /** Registers (or updates) a workload and starts its lease. */
  async register(name: string, namespace: string, spec: RegisteredWorkload): Promise<string> {
    const w: Workload = {
      apiVersion: WEFT_V1ALPHA1,
      kind: 'Workload',
      metadata: { name, namespace, labels: { ...spec.labels }, annotations: { 'weft.dev/registered-by': 'proxy' } },
      spec: {
        address: spec.address,
        ports: { ...spec.ports },
        serviceAccount: spec.serviceAccount,
        ...(spec.inboundPort !== null ? { proxy: { inboundPort: spec.inboundPort } } : {}),
        ...(Array.isArray(spec.calls) ? { calls: [...spec.calls] } : {}),
      },
    };
    const problems = validateResource(w);
    if (problems.length > 0) throw new Error(problems.map((p) => `${p.path}: ${p.message}`).join('; '));
    w.metadata.namespace = namespace;
    await this.index.register(w);
    const key = resourceKey(w);
    this.renew(key);
    return key;
  }

  /** Extends a lease by the TTL from now. */
  renew(key: string): void {
    const prev = this.leases.get(key);
    if (prev !== undefined) clearTimeout(prev.timer);
    const timer = setTimeout(() => void this.lapse(key), this.ttlMs);
    timer.unref();
    this.leases.set(key, { key, expiresAt: Date.now() + this.ttlMs, timer });
  }

  /** When a lease expires, or null when there is none. */
  expiry(key: string): number | null {
    return this.leases.get(key)?.expiresAt ?? null;
  }

  /** Ends a lease now (the proxy said goodbye). */
  async release(key: string): Promise<void> {
    const l = this.leases.get(key);
    if (l !== undefined) clearTimeout(l.timer);
    this.leases.delete(key);
    await this.index.deregister(key);
  }

  private async lapse(key: string): Promise<void> {
    this.leases.delete(key);
    await this.index.deregister(key);
    this.onLapse(key);
  }

  close(): void {
    for (const l of this.leases.values()) clearTimeout(l.timer);
    this.leases.clear();
  }
}
