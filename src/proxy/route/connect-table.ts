/**
 * Where a `CONNECT host:port` on the outbound listener may go: the mesh's Service ports, by the
 * authorities that name them, TCP and HTTP-like ports alike. Nothing else — the outbound listener
 * is no egress proxy, so an authority that names no Service port has no target. Built once per
 * configuration.
 */
import type { ProxySnapshot } from '../../model/snapshot.js';
import type { ClusterRuntime } from '../upstream/cluster.js';

/** A Service port a tunnel may reach. */
export interface ConnectTarget {
  /** `<service>.<namespace>:<port>`, the metrics label. */
  readonly name: string;
  /** Picks the cluster for one tunnel, or null when there is none. */
  readonly pickCluster: () => ClusterRuntime | null;
}

// The compiler's cluster domain (src/model/compile.ts): authorities end in `.svc.cluster.local`.
const CLUSTER_DOMAIN = 'cluster.local';

/** Service ports by lowercase `host:port` authority. */
export class ConnectTable {
  private readonly targets = new Map<string, ConnectTarget>();

  /**
   * `tcp` holds the TCP services' weighted picks (TCPRoute backends). An HTTP-like port is reached
   * at its own Service's endpoints: a tunnel carries no request, so HTTPRoute rules cannot apply.
   */
  constructor(snapshot: ProxySnapshot, clusters: ReadonlyMap<string, ClusterRuntime>, tcp: ReadonlyMap<string, { pickCluster: () => ClusterRuntime | null }>) {
    for (const vh of snapshot.virtualHosts) {
      const cluster = clusters.get(vh.name) ?? null;
      const target: ConnectTarget = { name: vh.name, pickCluster: () => cluster };
      // Authority-form always carries a port; the port-less domains are for Host headers.
      for (const d of vh.domains) if (d.includes(':') && !this.targets.has(d)) this.targets.set(d, target);
    }
    for (const t of snapshot.tcpServices) {
      const pick = tcp.get(t.name)?.pickCluster;
      if (pick === undefined) continue;
      const target: ConnectTarget = { name: t.name, pickCluster: pick };
      const hosts = [`${t.service}.${t.namespace}`, `${t.service}.${t.namespace}.svc`, `${t.service}.${t.namespace}.svc.${CLUSTER_DOMAIN}`];
      // The bare name resolves only from the caller's own namespace, as for HTTP.
      if (t.namespace === snapshot.workload.namespace) hosts.unshift(t.service);
      for (const h of hosts) {
        const d = `${h}:${t.port}`.toLowerCase();
        if (!this.targets.has(d)) this.targets.set(d, target);
      }
    }
  }

  /** The Service port `host:port` names (case-insensitive), or null. */
  lookup(host: string, port: number): ConnectTarget | null {
    return this.targets.get(`${host.toLowerCase()}:${port}`) ?? null;
  }
}
