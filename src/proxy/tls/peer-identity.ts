/** Checking who the server at the other end of a mesh TLS connection is: by its SPIFFE ID, not a host name. */
import type { PeerCertificate } from 'node:tls';

/**
 * A `checkServerIdentity` for `tls.connect` that accepts a certificate with exactly one URI SAN,
 * equal to `expected`. `onWrong` learns what the peer presented instead, for the error it becomes.
 */
export function expectSpiffeId(expected: string, onWrong: (presented: string) => void = () => {}): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const uris = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
    if (uris.length === 1 && uris[0] === expected) return undefined;
    const presented = uris.join(', ') || 'no SPIFFE ID';
    onWrong(presented);
    return new Error(`peer is ${presented}, expected ${expected}`);
  };
}
