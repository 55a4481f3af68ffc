/**
 * A proxy snapshot split into the resource types the config stream versions separately, and the
 * messages of that stream. Both ends use these: the control plane splits and sends, the proxy
 * reassembles, so a change of one endpoint sends one cluster's endpoints, not the whole snapshot.
 */
import { createHash } from 'node:crypto';
import type { Cluster, Endpoint, ProxySnapshot } from './snapshot.js';
import type { StatsReport, TapEvent, TapSpec } from './golden-signals.js';
import type { EndpointHealthReport } from './endpoint-health.js';

/** The HTTP Upgrade token of the config stream, on the control plane's API port. */
export const STREAM_PROTOCOL = 'weft-config/1';

/** The resource types of the config stream, in the order a push sends them (what others refer to first). */
export const CONFIG_TYPES = ['clusters', 'endpoints', 'workload', 'routes'] as const;
export type ConfigType = (typeof CONFIG_TYPES)[number];

/** A cluster as the `clusters` type carries it: everything but its endpoints. */
export type ClusterConfig = Omit<Cluster, 'endpoints'>;

/** One snapshot, by type. */
export interface ConfigParts {
  workload: Pick<ProxySnapshot, 'workload' | 'inbound' | 'telemetry'>;
  routes: Pick<ProxySnapshot, 'virtualHosts' | 'tcpServices'>;
  clusters: ClusterConfig[];
  /** Endpoints by cluster name. */
  endpoints: Record<string, Endpoint[]>;
}

/** A short content hash: equal values have equal versions. */
export function contentVersion(value: unknown): string {
  return createHash('sha256').update(typeof value === 'string' ? value : JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** Version of an endpoints map, from the version of each cluster's list (so a delta can be checked cheaply). */
export function endpointsVersion(perCluster: ReadonlyMap<string, string>): string {
  const names = [...perCluster.keys()].sort();
  return contentVersion(names.map((n) => `${n}=${perCluster.get(n)}`).join('\n'));
}

/** Splits a compiled snapshot into its types. */
export function splitSnapshot(s: ProxySnapshot): ConfigParts {
  const endpoints: Record<string, Endpoint[]> = {};
  const clusters = s.clusters.map(({ endpoints: e, ...rest }) => {
    endpoints[rest.name] = e;
    return rest;
  });
  return { workload: { workload: s.workload, inbound: s.inbound, ...(s.telemetry !== undefined ? { telemetry: s.telemetry } : {}) }, routes: { virtualHosts: s.virtualHosts, tcpServices: s.tcpServices }, clusters, endpoints };
}

/** Puts a snapshot back together; a cluster whose endpoints have not arrived has none. */
export function assembleSnapshot(p: ConfigParts, versions: Readonly<Record<ConfigType, string>>): ProxySnapshot {
  return {
    version: contentVersion(CONFIG_TYPES.map((t) => versions[t]).join('/')),
    ...p.workload,
    ...p.routes,
    clusters: p.clusters.map((c) => ({ ...c, endpoints: p.endpoints[c.name] ?? [] })),
  };
}

/** Who a proxy is and what it already has, sent first on every (re)connection. */
export interface HelloMessage {
  t: 'hello';
  workload: string;
  namespace: string;
  /** The workload to register (auto-registration with a lease), or null when it is declared as a resource. */
  register: RegisteredWorkload | null;
  /** Versions the proxy holds from an earlier connection; types at these versions are not resent. */
  have: Partial<Record<ConfigType, string>>;
  /** Endpoints it holds, by cluster version, so a resync after a reconnect can be a delta. */
  haveEndpoints: Record<string, string>;
  /** A join token granting the workload identity; absent: the proxy asks for no certificate. */
  token?: string | null;
  /** A PKCS #10 request (PEM) for the proxy's new key; answered with an `identity` message. */
  csr?: string | null;
  /** `host:port` of the proxy's admin listener, listed for Prometheus by the control plane (`/metrics/targets`). */
  admin?: string | null;
}

/** What a proxy tells about its workload when it registers it. */
export interface RegisteredWorkload {
  address: string;
  ports: Record<string, number>;
  labels: Record<string, string>;
  serviceAccount: string;
  inboundPort: number | null;
  /** The services the workload calls (see WorkloadSpec.calls); absent or null: all. */
  calls?: string[] | null;
}

/** Proxy → control plane. */
export type ProxyMessage =
  | HelloMessage
  | { t: 'ack'; type: ConfigType; version: string }
  | { t: 'nack'; type: ConfigType; version: string; error: string }
  | { t: 'heartbeat' }
  /** A request for a new certificate (renewal), for a new key the proxy made. */
  | { t: 'csr'; csr: string }
  /** The proxy installed a certificate and trust bundle (`bundle` is the bundle's hash). */
  | { t: 'identity-ack'; serial: string; bundle: string }
  /** The registration changed on a live stream (e.g. the app started listening, so its ports join). */
  | { t: 'register'; register: RegisteredWorkload }
  /** Leaving for good (drain): release the lease now rather than at its expiry. */
  | { t: 'bye' }
  /** Request statistics since the previous report (golden-signals.ts). */
  | { t: 'stats'; report: StatsReport }
  /** Requests seen by the open taps `taps` (ids) concern, in order. */
  | { t: 'tap-events'; events: Array<{ taps: string[]; event: TapEvent }> }
  /** The proxy's whole view of endpoint health (endpoint-health.ts): on connect and after each change. */
  | { t: 'endpoint-health'; report: EndpointHealthReport };

/** Control plane → proxy. */
export type ControlMessage =
  | { t: 'welcome'; proxyId: string; leaseTtlMs: number; heartbeatMs: number }
  /** Something the proxy should log, e.g. its workload does not exist yet. */
  | { t: 'notice'; message: string }
  /** Sent every heartbeat interval, so a proxy notices a dead link that never closed. */
  | { t: 'ping' }
  /** The proxy's certificate chain (leaf first) and the roots to trust; sent on a CSR, and again when the bundle changes. */
  | { t: 'identity'; chain: string; bundle: string[]; serial: string; notAfter: string }
  /** A CSR was refused (bad token, wrong identity, malformed request). */
  | { t: 'identity-error'; error: string }
  /** Renew now (a root rotation is switching the signer). */
  | { t: 'renew' }
  /** The open taps that concern this proxy, all of them (an empty list stops tapping). */
  | { t: 'tap'; taps: TapSpec[] }
  /**
   * The updates sent since the last `push-end` belong together: the proxy applies them as one
   * (e.g. routes that moved to a new cluster, with the endpoints that left the old one).
   */
  | { t: 'push-end' }
  | UpdateMessage;

/**
 * A new version of one type, acknowledged by type and version (no per-proxy nonce, so one encoded
 * update serves every proxy in the same state). `endpoints` may be a delta over the version the proxy holds (`base`). */
export type UpdateMessage =
  | { t: 'update'; type: 'workload'; version: string; value: ConfigParts['workload'] }
  | { t: 'update'; type: 'routes'; version: string; value: ConfigParts['routes'] }
  | { t: 'update'; type: 'clusters'; version: string; value: ClusterConfig[] }
  | {
      t: 'update';
      type: 'endpoints';
      version: string;
      /** Null for a full set; otherwise the endpoints version the delta applies to. */
      base: string | null;
      /** Clusters whose endpoints are new or changed, with each list's version. */
      set: Record<string, { version: string; endpoints: Endpoint[] }>;
      removed: string[];
    };
