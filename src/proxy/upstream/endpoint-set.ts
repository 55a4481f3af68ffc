/**
 * Which endpoints of a cluster take traffic, and the picker over them. Rebuilt whenever an
 * endpoint's health changes (see ClusterRuntime.refresh), so per-request picking stays a plain call.
 */
import type { Cluster } from '../../model/snapshot.js';
import { balancers, type Picker } from './balancer.js';
import type { ClusterEndpoint } from './cluster.js';

/**
 * The picker for a cluster: its balancer over the healthy endpoints. When none is healthy, all of
 * them take traffic (Envoy's panic mode): a guess beats refusing every request.
 */
export function buildPicker(config: Cluster, endpoints: readonly ClusterEndpoint[]): Picker<ClusterEndpoint> {
  const healthy = endpoints.filter((e) => e.healthy);
  return balancers[config.loadBalancer](healthy.length === 0 ? endpoints : healthy);
}
