/**
 * The control plane's own certificate, for the TLS side of its API port: proxies reconnect over
 * mutual TLS with their SVIDs and check that the server is the control plane. It is an X.509-SVID
 * like a workload's, for the reserved identity `spiffe://<trust-domain>/ns/weft-system/sa/weft-control`
 * (no join token can grant the `weft-system` namespace), signed by whichever root signs now.
 *
 * Its chain ends with the root it chains to, so a proxy joining over TLS can check its pin.
 *
 * Its key is made here and kept in memory only: a restart makes a new one.
 */
import { bundleHash, createCsr, generateKey, keyToPem } from '../../core/identity/x509.js';
import { CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT } from '../../core/identity/spiffe.js';
import type { CertificateAuthority } from './certificate-authority.js';

/** Key, chain and the roots that client certificates must chain to, for a `tls.Server`. */
export interface ServerTlsOptions {
  generation: number;
  key: string;
  cert: string;
  ca: string[];
}

export class ControlPlaneCertificate {
  private readonly ca: CertificateAuthority;
  private readonly trustDomain: () => string;
  private readonly lifetimeMs: () => number;
  private current: (ServerTlsOptions & { signedBy: string; bundle: string; renewAt: number; trustDomain: string }) | null = null;
  private generation = 0;

  constructor(ca: CertificateAuthority, trustDomain: () => string, lifetimeMs: () => number) {
    this.ca = ca;
    this.trustDomain = trustDomain;
    this.lifetimeMs = lifetimeMs;
  }

  /**
   * The TLS options for the next connection, with a generation that moves when they change. It is rebuilt, with a new key and certificate, when the
   * signing root or the trust bundle changed (a rotation), the trust domain changed, or half the
   * certificate's lifetime has passed; connections already open keep theirs.
   */
  options(): ServerTlsOptions {
    const signedBy = this.ca.signingRoot().serialNumber;
    const roots = this.ca.bundle();
    const bundle = bundleHash(roots);
    const td = this.trustDomain();
    const c = this.current;
    if (c !== null && c.signedBy === signedBy && c.bundle === bundle && c.trustDomain === td && Date.now() < c.renewAt) return c;
    const key = generateKey();
    const lifetime = this.lifetimeMs();
    const issued = this.ca.issue(createCsr(key, null), td, CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT, lifetime);
    const notAfter = Date.parse(issued.cert.notAfter);
    // Sent with the root it chains to: a proxy joining over TLS matches that root to the pin it was given (docs/identity.md).
    const cert = issued.chain + (this.ca.anchor()?.pem ?? '');
    this.current = { generation: ++this.generation, key: keyToPem(key), cert, ca: roots, signedBy, bundle, trustDomain: td, renewAt: Date.now() + (notAfter - Date.now()) / 2 };
    return this.current;
  }
}
