/**
 * Which endpoints of a cluster take traffic, and the picker over them. Rebuilt whenever an
 * endpoint's health changes (see ClusterRuntime.refresh), so per-request picking stays a plain call.
 */
import type { Cluster } from '../../model/snapshot.js';
import { balancers, hashLookup, isHashing, randomHash, type Balanced, type HashLookup, type Picker } from './balancer.js';
import { mix32, requestHasher } from './hash.js';

/** The well-known Kubernetes topology labels, on workloads (endpoints) and on the proxy's own workload. */
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const REGION_LABEL = 'topology.kubernetes.io/region';

/** Envoy's overprovisioning factor, in percent: a tier 1/1.4 healthy still takes all its traffic. */
const DEFAULT_OVERPROVISIONING_FACTOR = 140;

/** What the picker needs of an endpoint beyond its load: its health and its workload's labels. */
export interface PickedEndpoint extends Balanced {
  readonly healthy: boolean;
  readonly endpoint: { readonly labels: Readonly<Record<string, string>> };
}

/**
 * The picker for a cluster: its balancer over the healthy endpoints, by locality when the proxy's own
 * workload (`local`: its labels) has a zone or region and the cluster does not turn locality off.
 * When no endpoint is healthy, all of them take traffic (Envoy's panic mode): a guess beats refusing
 * every request.
 */
export function buildPicker<E extends PickedEndpoint>(config: Cluster, endpoints: readonly E[], local: Readonly<Record<string, string>> = {}): Picker<E> {
  const panic = !endpoints.some((e) => e.healthy);
  const tiers = localityTiers(config, endpoints, local, panic);
  if (tiers === null) return balancers[config.loadBalancer](panic ? endpoints : endpoints.filter((e) => e.healthy), config);
  return tieredPicker(config, tiers);
}

/** A locality tier with the share of traffic it takes. */
export interface Tier<E> {
  /** 0: the proxy's zone, 1: its region (other zones), 2: anywhere else. */
  readonly level: number;
  /** Its healthy endpoints (all of them in panic mode). */
  readonly endpoints: readonly E[];
  /** Its share of the cluster's traffic, 0-1; the shares of all tiers add up to 1. */
  readonly load: number;
}

/**
 * The tiers that take traffic, with Envoy's priority load arithmetic: a tier's health is its healthy
 * fraction × the overprovisioning factor (capped at 1); tiers take traffic in order, each up to its
 * health, the rest spilling to the next; when all tiers' health adds up to less than 1 the shares are
 * scaled up to fill it. Null when locality does not apply (off, the proxy has no zone or region, or
 * every endpoint is in one tier).
 */
export function localityTiers<E extends PickedEndpoint>(config: Pick<Cluster, 'locality'>, endpoints: readonly E[], local: Readonly<Record<string, string>>, panic = false): Tier<E>[] | null {
  const zone = local[ZONE_LABEL];
  const region = local[REGION_LABEL];
  if (config.locality?.enabled === false || (zone === undefined && region === undefined)) return null;
  const factor = (config.locality?.overprovisioningFactor ?? DEFAULT_OVERPROVISIONING_FACTOR) / 100;
  const members: E[][] = [[], [], []];
  const totals = [0, 0, 0];
  for (const e of endpoints) {
    const labels = e.endpoint.labels;
    const theirRegion = labels[REGION_LABEL];
    const sameRegion = region !== undefined && theirRegion === region;
    // Zone names are unique within a region; a zone label alone is compared alone.
    const level = zone !== undefined && labels[ZONE_LABEL] === zone && (region === undefined || theirRegion === undefined || sameRegion) ? 0 : sameRegion ? 1 : 2;
    totals[level]!++;
    if (panic || e.healthy) members[level]!.push(e);
  }
  if (totals.filter((t) => t > 0).length < 2) return null;
  const health = totals.map((t, i) => (t === 0 ? 0 : Math.min(1, (factor * members[i]!.length) / t)));
  const available = Math.min(1, health.reduce((a, b) => a + b, 0));
  const tiers: Tier<E>[] = [];
  let remaining = 1;
  for (let i = 0; i < 3 && remaining > 1e-9; i++) {
    if (health[i] === 0) continue;
    const load = Math.min(remaining, health[i]! / available);
    remaining -= load;
    tiers.push({ level: i, endpoints: members[i]!, load });
  }
  return tiers;
}

/** Picks a tier by its share (by the request's hash for hashing balancers), then an endpoint in it. */
function tieredPicker<E extends PickedEndpoint>(config: Cluster, tiers: readonly Tier<E>[]): Picker<E> {
  const n = tiers.length;
  const first = tiers[0];
  if (first === undefined) return () => null;
  if (n === 1) return balancers[config.loadBalancer](first.endpoints, config);
  const bounds = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) bounds[i] = sum += tiers[i]!.load;
  bounds[n - 1] = Infinity;
  const tierOf = (r: number): number => {
    let t = 0;
    while (r >= bounds[t]!) t++;
    return t;
  };
  const hash = config.hash;
  if (isHashing(config.loadBalancer) && hash !== undefined) {
    // The key decides the tier too (from other bits of its hash), so a key stays on one endpoint
    // while the tiers' shares hold; a request without a key goes anywhere.
    const lookups: Array<HashLookup<E>> = tiers.map((t) => hashLookup(config.loadBalancer as 'RingHash' | 'Maglev', t.endpoints, hash.size));
    const hasher = requestHasher(hash.on);
    return (req, clientAddress) => {
      let h = hasher(req, clientAddress);
      if (h < 0) h = randomHash();
      return lookups[tierOf(mix32(h ^ 0x9e3779b9) / 4294967296)]!(h);
    };
  }
  const pickers = tiers.map((t) => balancers[config.loadBalancer](t.endpoints, config));
  return (req, clientAddress) => pickers[tierOf(Math.random())]!(req, clientAddress);
}
