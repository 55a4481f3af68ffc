/**
 * Balancers by name. A balancer is built once per cluster configuration (and health change) from
 * its endpoints and returns a picker; every request calls the picker synchronously. Pickers are
 * replaced, never mutated; what they read that changes per request (load, latency) lives on the
 * endpoints.
 */
import type { Cluster, LoadBalancerType } from '../../model/snapshot.js';
import type { ProxyRequest } from '../message.js';
import type { PeakEwma } from './ewma.js';
import { hash32, requestHasher } from './hash.js';

/** What a balancer needs of an endpoint. */
export interface Balanced {
  /** Requests in flight. */
  readonly active: number;
  /** Relative share of traffic, at least 1. */
  readonly weight: number;
  /** A stable name (`address:port`) that hashing balancers place on their ring or table. */
  readonly hashKey: string;
  /** Latency estimate, read by PeakEWMA. */
  readonly latency: PeakEwma;
}

/**
 * Picks an endpoint for one request (or one TCP connection: `req` null), or null when there is none.
 * Hashing balancers key on the request's headers or the client's address.
 */
export type Picker<E> = (req: ProxyRequest | null, clientAddress: string) => E | null;

/** The part of a cluster's configuration balancers read. */
export type BalancerConfig = Pick<Cluster, 'loadBalancer' | 'ewmaDecayMs' | 'hash'>;

/** Builds a picker over a fixed set of endpoints. */
export type BalancerFactory = <E extends Balanced>(endpoints: readonly E[], config: BalancerConfig) => Picker<E>;

/** Finds the endpoint of a 32-bit key hash (RingHash, Maglev); null over no endpoints. */
export type HashLookup<E> = (hash: number) => E | null;

const DEFAULT_EWMA_DECAY_MS = 10_000;
/** Above this many schedule steps (weights × endpoints to build), weighted round robin draws at random instead. */
const MAX_SCHEDULE_WORK = 1 << 22;
/** Envoy's bound on a ring's size. */
const MAX_RING_SIZE = 8_388_608;

const none = (): null => null;

/** A random unsigned 32-bit integer: the key of a request without one. */
export const randomHash = (): number => (Math.random() * 4294967296) >>> 0;

const uniformWeights = (endpoints: readonly Balanced[]): boolean => endpoints.every((e) => e.weight === endpoints[0]!.weight);

/**
 * Weighted round robin: a smooth (nginx) schedule, computed once per picker, walked from a random
 * offset so that many proxies do not all hit the same endpoint together. Equal weights make the
 * schedule the endpoint list itself.
 */
const roundRobin: BalancerFactory = (endpoints) => {
  const n = endpoints.length;
  if (n === 0) return none;
  const schedule = uniformWeights(endpoints) ? null : smoothSchedule(endpoints.map((e) => e.weight));
  if (schedule === undefined) return weightedRandom(endpoints);
  const order = schedule === null ? endpoints : Array.from(schedule, (i) => endpoints[i]!);
  const len = order.length;
  let next = Math.floor(Math.random() * len);
  return () => {
    const e = order[next]!;
    next = next + 1 === len ? 0 : next + 1;
    return e;
  };
};

/** nginx's smooth weighted round robin, one full period (weights divided by their gcd); undefined when too big to build. */
export function smoothSchedule(weights: readonly number[]): Uint32Array | undefined {
  const g = weights.reduce(gcd);
  const w = weights.map((x) => x / g);
  const total = w.reduce((a, b) => a + b, 0);
  if (total * w.length > MAX_SCHEDULE_WORK) return undefined;
  const current = new Float64Array(w.length);
  const out = new Uint32Array(total);
  for (let k = 0; k < total; k++) {
    let best = 0;
    for (let i = 0; i < w.length; i++) {
      current[i]! += w[i]!;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= total;
    out[k] = best;
  }
  return out;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Draws endpoint indexes with probability proportional to weight (uniform when the weights are equal). */
function weightedDraw(endpoints: readonly Balanced[]): () => number {
  const n = endpoints.length;
  if (uniformWeights(endpoints)) return () => Math.floor(Math.random() * n);
  const cumulative = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cumulative[i] = sum += endpoints[i]!.weight;
  return () => {
    const r = Math.random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cumulative[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}

function weightedRandom<E extends Balanced>(endpoints: readonly E[]): Picker<E> {
  const draw = weightedDraw(endpoints);
  return () => endpoints[draw()]!;
}

/**
 * Power of two choices over two distinct endpoints drawn by weight; `better(a, b)` says whether b
 * beats a. Drawing by weight keeps the shares proportional to weights when loads tie (an idle cluster).
 */
function twoChoices<E extends Balanced>(endpoints: readonly E[], better: (a: E, b: E) => boolean): Picker<E> {
  const n = endpoints.length;
  if (n === 0) return none;
  if (n === 1) return () => endpoints[0]!;
  const draw = weightedDraw(endpoints);
  return () => {
    const i = draw();
    let j = draw();
    // A second draw of the same endpoint tries again a few times, then takes a neighbour (bounded).
    for (let k = 0; j === i && k < 3; k++) j = draw();
    if (j === i) j = i + 1 === n ? 0 : i + 1;
    const a = endpoints[i]!;
    const b = endpoints[j]!;
    return better(a, b) ? b : a;
  };
}

/** Power of two choices: the endpoint with fewer requests in flight per unit of weight. */
const leastRequest: BalancerFactory = (endpoints) => twoChoices(endpoints, (a, b) => b.active * a.weight < a.active * b.weight);

/**
 * Power of two choices on peak-EWMA cost: latency estimate × (requests in flight + 1) / weight, as
 * Linkerd does. Latencies are observed by the cluster (from dispatch to response headers).
 */
const peakEwma: BalancerFactory = (endpoints, config) => {
  const decay = config.ewmaDecayMs ?? DEFAULT_EWMA_DECAY_MS;
  const cost = (e: Balanced, now: number): number => (e.latency.current(now, decay) * (e.active + 1)) / e.weight;
  return twoChoices(endpoints, (a, b) => {
    const now = performance.now();
    return cost(b, now) < cost(a, now);
  });
};

/**
 * Ketama-like consistent hashing: each endpoint owns points on a 32-bit ring in proportion to its
 * weight (at least `minimumRingSize` points in all, at most twice that); a key goes to the first
 * point at or after its hash. Removing one of N endpoints moves only the keys it owned (about 1/N).
 */
export function ringHash<E extends Balanced>(endpoints: readonly E[], minimumRingSize: number): HashLookup<E> {
  const n = endpoints.length;
  if (n === 0) return none;
  const total = endpoints.reduce((s, e) => s + e.weight, 0);
  // Points per unit of weight: enough for the minimum size, rounded up to a power of two so that it
  // stays the same when an endpoint comes or goes (then only that endpoint's keys move).
  const perWeight = Math.max(1, Math.min(2 ** Math.ceil(Math.log2(Math.max(1, minimumRingSize / total))), Math.floor(MAX_RING_SIZE / total)));
  const counts = endpoints.map((e) => e.weight * perWeight);
  const size = counts.reduce((a, b) => a + b, 0);
  // Hash and owner packed into one float (hash × 2^20 + owner) so that one typed-array sort orders the ring.
  const packed = new Float64Array(size);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const key = endpoints[i]!.hashKey;
    for (let j = 0; j < counts[i]!; j++) packed[k++] = hash32(`${key}_${j}`) * 1048576 + i;
  }
  packed.sort();
  const points = new Uint32Array(size);
  const owners = new Uint32Array(size);
  for (let p = 0; p < size; p++) {
    points[p] = Math.floor(packed[p]! / 1048576);
    owners[p] = packed[p]! % 1048576;
  }
  return (hash) => {
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return endpoints[owners[lo === size ? 0 : lo]!]!;
  };
}

/**
 * Maglev (Google, NSDI 2016) with Envoy's weighting: a table of `tableSize` (a prime) slots that the
 * endpoints fill in turns, each along its own permutation of the slots, taking turns in proportion
 * to weight. Lookups are one modulo; removing one of N endpoints moves about 1/N of the keys.
 */
export function maglev<E extends Balanced>(endpoints: readonly E[], tableSize: number): HashLookup<E> {
  const n = endpoints.length;
  const m = tableSize;
  if (n === 0) return none;
  const next = new Float64Array(n);
  const skip = new Float64Array(n);
  const target = new Float64Array(n);
  let maxWeight = 0;
  for (let i = 0; i < n; i++) {
    const key = endpoints[i]!.hashKey;
    next[i] = hash32(key, 0, key.length, 0x5bd1e995) % m;
    skip[i] = (hash32(key, 0, key.length, 0x27d4eb2f) % (m - 1)) + 1;
    maxWeight = Math.max(maxWeight, endpoints[i]!.weight);
  }
  const table = new Int32Array(m).fill(-1);
  let filled = 0;
  for (let round = 1; filled < m; round++) {
    for (let i = 0; i < n && filled < m; i++) {
      if (round * endpoints[i]!.weight < target[i]!) continue;
      target[i]! += maxWeight;
      // The permutation visits every slot (m is prime and 0 < skip < m), so an empty one is found.
      let c = next[i]!;
      while (table[c] !== -1) c = (c + skip[i]!) % m;
      table[c] = i;
      next[i] = (c + skip[i]!) % m;
      filled++;
    }
  }
  return (hash) => endpoints[table[hash % m]!]!;
}

/** The lookup of a hashing balancer over `endpoints` (at least one). */
export function hashLookup<E extends Balanced>(type: 'RingHash' | 'Maglev', endpoints: readonly E[], size: number): HashLookup<E> {
  return type === 'Maglev' ? maglev(endpoints, size) : ringHash(endpoints, size);
}

/**
 * A hashing balancer: the request's key (`config.hash.on`) hashed, then looked up. A request without
 * the key (no such header or cookie; a TCP connection when keyed on headers) goes to a random endpoint.
 */
const hashing = (type: 'RingHash' | 'Maglev'): BalancerFactory => (endpoints, config) => {
  if (endpoints.length === 0) return none;
  if (config.hash === undefined) return weightedRandom(endpoints);
  const lookup = hashLookup(type, endpoints, config.hash.size);
  const hasher = requestHasher(config.hash.on);
  return (req, clientAddress) => {
    const h = hasher(req, clientAddress);
    return lookup(h < 0 ? randomHash() : h);
  };
};

/** The balancers a BackendPolicy may name. */
export const balancers: Readonly<Record<LoadBalancerType, BalancerFactory>> = {
  RoundRobin: roundRobin,
  LeastRequest: leastRequest,
  PeakEWMA: peakEwma,
  RingHash: hashing('RingHash'),
  Maglev: hashing('Maglev'),
};

/** True for the balancers that key on the request. */
export const isHashing = (type: LoadBalancerType): type is 'RingHash' | 'Maglev' => type === 'RingHash' || type === 'Maglev';
