/**
 * The proxy's own identity: its private key (made here, never sent anywhere), its X.509-SVID and the
 * trust bundle, as TLS contexts for both directions. A renewal makes a new key and a CSR; the key is
 * kept aside until the certificate for it arrives, then both swap in together, so connections being
 * made always see a matching pair. Connections already open keep the context they started with.
 */
import { X509Certificate, createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { unpem } from '../../core/identity/der.js';
import { bundleHash, createCsr, generateKey, keyToPem, uriSans } from '../../core/identity/x509.js';

/** What the admin endpoint and proxy-status show (never the key). */
export interface IdentityStatus {
  spiffeId: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  issuer: string;
  bundle: Array<{ subject: string; notAfter: string }>;
  renewals: number;
}

const fingerprint = (publicKey: KeyObject): string => createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');


export class WorkloadIdentity {
  private key: KeyObject | null = null;
  private readonly pending = new Map<string, KeyObject>();
  private leaf: X509Certificate | null = null;
  private bundle: string[] = [];
  private chain = '';
  private client: SecureContext | null = null;
  private renewals = 0;
  private installedAt = 0;
  private keyPem = '';
  /** Bumped at every install, so users of `tlsOptions()` know to rebuild. */
  generation = 0;
  /** Called whenever the certificate or the bundle changed. */
  onChange: () => void = () => {};

  /** A new key and a CSR for `spiffeId` (or for whatever the CA grants, when null). */
  newCsr(spiffeId: string | null): string {
    const key = generateKey();
    this.pending.set(fingerprint(createPublicKey(key)), key);
    if (this.pending.size > 4) this.pending.delete(this.pending.keys().next().value!);
    return createCsr(key, spiffeId);
  }

  /**
   * Installs a chain (leaf first) and the roots to trust. The leaf must be for a key made here;
   * returns the leaf's serial. Throws when it is not (the CA answered an older request).
   */
  install(chain: string, bundle: string[]): string {
    const [leafDer] = unpem(chain, 'CERTIFICATE');
    if (leafDer === undefined) throw new Error('identity: the chain holds no certificate');
    const leaf = new X509Certificate(leafDer);
    // The same chain and roots again (the control plane re-sends them on each new stream): nothing
    // changed, so contexts, connections made under them and the renewal time all stay.
    if (this.leaf !== null && chain === this.chain && bundle.length === this.bundle.length && bundle.every((p, i) => p === this.bundle[i])) return leaf.serialNumber;
    const fp = fingerprint(leaf.publicKey);
    const key = this.pending.get(fp) ?? (this.leaf !== null && fingerprint(this.leaf.publicKey) === fp ? this.key : null);
    if (key === null || key === undefined) throw new Error(`identity: certificate ${leaf.serialNumber} is not for a key this proxy made`);
    const keyPem = keyToPem(key);
    const client = createSecureContext({ key: keyPem, cert: chain, ca: bundle, minVersion: 'TLSv1.3' });
    if (this.leaf !== null && !this.leaf.raw.equals(leaf.raw)) this.renewals++;
    this.key = key;
    this.keyPem = keyPem;
    this.generation++;
    this.installedAt = Date.now();
    this.pending.delete(fp);
    this.leaf = leaf;
    this.chain = chain;
    this.bundle = [...bundle];
    this.client = client;
    this.onChange();
    return leaf.serialNumber;
  }

  /** Whether the proxy holds a certificate. */
  get ready(): boolean {
    return this.leaf !== null;
  }

  /** Key, chain and roots as TLS options (for a `tls.Server`), or null before the first certificate. */
  tlsOptions(): { key: string; cert: string; ca: string[] } | null {
    return this.leaf === null ? null : { key: this.keyPem, cert: this.chain, ca: this.bundle };
  }

  get clientContext(): SecureContext | null {
    return this.client;
  }

  get spiffeId(): string | null {
    return this.leaf === null ? null : (uriSans(this.leaf)[0] ?? null);
  }

  get bundleVersion(): string {
    return bundleHash(this.bundle);
  }

  /**
   * When the leaf should be renewed: at half its lifetime, ±5 % so a fleet does not renew at once.
   * The lifetime counts from when the leaf arrived (the CA backdates notBefore for clock skew).
   */
  renewAt(random = Math.random()): number | null {
    if (this.leaf === null) return null;
    const to = Date.parse(this.leaf.validTo);
    return this.installedAt + (to - this.installedAt) * (0.45 + 0.1 * random);
  }

  status(): IdentityStatus | null {
    if (this.leaf === null) return null;
    return {
      spiffeId: this.spiffeId ?? '',
      serial: this.leaf.serialNumber,
      notBefore: new Date(this.leaf.validFrom).toISOString(),
      notAfter: new Date(this.leaf.validTo).toISOString(),
      issuer: this.leaf.issuer.replace(/\n/g, ', '),
      bundle: this.bundle.map((p) => {
        const c = new X509Certificate(p);
        return { subject: c.subject.replace(/\n/g, ', '), notAfter: new Date(c.validTo).toISOString() };
      }),
      renewals: this.renewals,
    };
  }

  /** Seconds until the leaf expires (for the expiry metric); null without one. */
  secondsLeft(): number | null {
    return this.leaf === null ? null : (Date.parse(this.leaf.validTo) - Date.now()) / 1000;
  }
}
