/** SPIFFE IDs of workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`. */

export interface WorkloadIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export const spiffeId = (trustDomain: string, namespace: string, serviceAccount: string): string => `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;

const WORKLOAD_ID = /^spiffe:\/\/([a-z0-9._-]+)\/ns\/([a-z0-9-]+)\/sa\/([a-z0-9.-]+)$/;

/** The parts of a workload SPIFFE ID, or null when it is not one. */
export function parseSpiffeId(uri: string): WorkloadIdentity | null {
  const m = WORKLOAD_ID.exec(uri);
  return m === null ? null : { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! };
}

/** The namespace and service account of the control plane's own identity; no join token can grant them. */
export const CONTROL_NAMESPACE = 'weft-system';
export const CONTROL_SERVICE_ACCOUNT = 'weft-control';

/** The SPIFFE ID the control plane's certificate carries in a trust domain. */
export const controlPlaneId = (trustDomain: string): string => spiffeId(trustDomain, CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT);
