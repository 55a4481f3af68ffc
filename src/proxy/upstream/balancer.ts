/**
 * Balancers by name. A balancer is built once per cluster configuration from its endpoints and
 * returns a picker; every request calls the picker synchronously. Pickers are replaced with the
 * configuration, never mutated.
 */
import type { LoadBalancerType } from '../../model/snapshot.js';
import type { ProxyRequest } from '../message.js';

/** What a balancer needs of an endpoint: its load. */
export interface Balanced {
  /** Requests in flight. */
  readonly active: number;
}

/**
 * Picks an endpoint for one request (or one TCP connection: `req` null), or null when there is none.
 * Hashing balancers key on the request's headers or the client's address.
 */
export type Picker<E> = (req: ProxyRequest | null, clientAddress: string) => E | null;

/** Builds a picker over a fixed set of endpoints. */
export type BalancerFactory = <E extends Balanced>(endpoints: readonly E[]) => Picker<E>;

const roundRobin: BalancerFactory = (endpoints) => {
  const n = endpoints.length;
  if (n === 0) return () => null;
  // Start at a random offset so that many proxies do not all hit the first endpoint together.
  let next = Math.floor(Math.random() * n);
  return () => {
    const e = endpoints[next]!;
    next = next + 1 === n ? 0 : next + 1;
    return e;
  };
};

/** Power of two choices: of two random endpoints, the one with fewer requests in flight. */
const leastRequest: BalancerFactory = (endpoints) => {
  const n = endpoints.length;
  if (n === 0) return () => null;
  if (n === 1) return () => endpoints[0]!;
  return () => {
    const i = Math.floor(Math.random() * n);
    let j = Math.floor(Math.random() * (n - 1));
    if (j >= i) j++;
    const a = endpoints[i]!;
    const b = endpoints[j]!;
    return b.active < a.active ? b : a;
  };
};

/** The balancers a BackendPolicy may name. */
export const balancers: Readonly<Record<LoadBalancerType, BalancerFactory>> = {
  RoundRobin: roundRobin,
  LeastRequest: leastRequest,
};
