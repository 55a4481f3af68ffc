/**
 * How the two proxies of a hop agree on the service labels of a request's metrics.
 *
 * The outbound proxy knows both ends: its own service and the destination service its route chose.
 * It tells the destination's proxy in two headers, added to requests for proxied endpoints only.
 * The inbound proxy believes them only from a caller that proved a mesh identity over mTLS, takes
 * the last value of each (the one its peer proxy appended, after anything the app itself sent), and
 * removes them all, so they never reach the app. From a plaintext caller they are dropped unread:
 * the source service is then '' and the destination is the inbound's own canonical service.
 * A TCP tunnel's CONNECT carries the source header too (never the app's: the proxy writes the head),
 * read under the same rule, and no header of it ever reaches the app.
 */
import type { WorkloadInfo } from '../../model/snapshot.js';
import type { RequestContext } from '../message.js';

/** The caller's service, `name.namespace`. */
export const SOURCE_SERVICE_HEADER = 'weft-source-service';
/** The service the caller's route chose, `name.namespace`. */
export const DESTINATION_SERVICE_HEADER = 'weft-destination-service';

/**
 * A workload's service for metrics, as Istio's canonical service: the `app.kubernetes.io/name`
 * label, else `app`, else the workload's name; with its namespace.
 */
export function canonicalService(w: WorkloadInfo): string {
  return `${w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? w.name}.${w.namespace}`;
}

/**
 * Inbound: removes both headers from `headers` in one pass and, when the caller is authenticated
 * (`ctx.peerIdentity`), sets `ctx.sourceService` and `ctx.destination` from their last values, when
 * they name services of the caller's namespace and of `ownNamespace` (this workload's) respectively.
 */
export function takePeerLabels(headers: string[], ctx: RequestContext, ownNamespace: string): void {
  let source: string | undefined;
  let destination: string | undefined;
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    const name = headers[r]!;
    if (name === SOURCE_SERVICE_HEADER) source = headers[r + 1];
    else if (name === DESTINATION_SERVICE_HEADER) destination = headers[r + 1];
    else {
      if (w !== r) {
        headers[w] = name;
        headers[w + 1] = headers[r + 1]!;
      }
      w += 2;
    }
  }
  headers.length = w;
  if (ctx.peerIdentity === null) return;
  // A peer may only name a service of its own namespace as the source, and one of this workload's
  // namespace as the destination (Services select workloads in their namespace): a label is a
  // series, and an authenticated peer must not be able to mint series at will elsewhere.
  if (source !== undefined) ctx.sourceService = trustedSource(source, ctx.peerIdentity);
  if (destination !== undefined) {
    destination = lastOf(destination);
    if (serviceIn(destination, ownNamespace)) ctx.destination = destination;
  }
}

/**
 * Inbound TCP tunnels: the source service the caller's proxy names on its CONNECT (the last
 * `weft-source-service` of `headers`), under the rule of `takePeerLabels`: only from a caller
 * authenticated as `peerIdentity` (null: plaintext), and only a service of its namespace; else ''.
 */
export function tunnelSourceService(headers: readonly string[], peerIdentity: string | null): string {
  if (peerIdentity === null) return '';
  let source: string | undefined;
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === SOURCE_SERVICE_HEADER) source = headers[i + 1];
  return source === undefined ? '' : trustedSource(source, peerIdentity);
}

/** `value` (the source header's last value) when it names a service of `peerIdentity`'s namespace, else ''. */
function trustedSource(value: string, peerIdentity: string): string {
  const source = lastOf(value);
  return serviceIn(source, namespaceOf(peerIdentity)) ? source : '';
}

/**
 * The last of the values node:http2 joins with ", " when a field repeats (a service name has no
 * comma): the one the peer proxy appended, as when the fields come one by one.
 */
function lastOf(value: string): string {
  const comma = value.lastIndexOf(',');
  return comma === -1 ? value : value.slice(comma + 1).trim();
}

/** The namespace a SPIFFE ID `spiffe://<td>/ns/<ns>/sa/<sa>` names, or null. */
function namespaceOf(identity: string): string | null {
  const i = identity.indexOf('/ns/');
  if (i === -1) return null;
  const end = identity.indexOf('/', i + 4);
  return end === -1 ? null : identity.slice(i + 4, end);
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Whether `value` is `<name>.<namespace>` with a DNS-label name, in `namespace`. */
function serviceIn(value: string, namespace: string | null): boolean {
  if (namespace === null || !value.endsWith(`.${namespace}`)) return false;
  return DNS_LABEL.test(value.slice(0, value.length - namespace.length - 1));
}
