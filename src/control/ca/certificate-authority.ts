/**
 * The mesh's certificate authority. It signs proxies' requests (CSRs) with the identity their join
 * token or their current certificate grants; the proxies' keys never come here.
 *
 * Its signing certificate is either a root it generated on first start (kept in `<data-dir>/ca/`,
 * keys mode 0600) or one the user provides (a root, or an intermediate plus the roots it chains to).
 * The trust bundle may hold several roots: `rotate()` adds a new root to the bundle, then signs with
 * it, then retires the old one — the config server walks the proxies through each step.
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { unpem } from '../../core/identity/der.js';
import { spkiPin } from '../../core/identity/pin.js';
import { spiffeId } from '../../core/identity/spiffe.js';
import { CertificateError, createRootCertificate, generateKey, issueLeafCertificate, keyFromPem, keyToPem, readCsr, uriSans } from '../../core/identity/x509.js';

const ROOT_LIFETIME_MS = 10 * 365 * 24 * 3600_000;
/** Leaves start a minute in the past, so a clock a little behind still accepts them. */
const BACKDATE_MS = 60_000;

/** A root the control plane made; `state` says where it is in a rotation. */
interface StoredRoot {
  id: number;
  /** `active`: in the bundle; `signing`: in the bundle and signing new leaves; `retired`: out of the bundle. */
  state: 'active' | 'signing' | 'retired';
  createdAt: string;
}

/** A certificate the CA issued, for `weft get certificates` and the expiry metric. */
export interface IssuedCertificate {
  identity: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  issuer: string;
}

export interface CaOptions {
  dir: string;
  trustDomain: string;
  /** A user-provided signing certificate and key (PEM files); the bundle file holds the roots it chains to. */
  provided?: { certFile: string; keyFile: string; bundleFile: string | null } | null;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  private readonly dir: string;
  private signer!: { cert: X509Certificate; key: KeyObject; chain: string };
  private roots: Array<{ id: number | null; cert: X509Certificate; pem: string; state: StoredRoot['state'] }> = [];
  private readonly provided: boolean;

  constructor(opts: CaOptions) {
    this.trustDomain = opts.trustDomain;
    this.dir = opts.dir;
    this.provided = opts.provided != null;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (opts.provided != null) this.loadProvided(opts.provided);
    else this.loadOrCreate();
  }

  private loadProvided(p: NonNullable<CaOptions['provided']>): void {
    const certPem = readFileSync(p.certFile, 'utf8');
    const cert = new X509Certificate(certPem);
    if (!cert.ca) throw new CertificateError(`${p.certFile}: not a CA certificate (basicConstraints CA:TRUE is required)`);
    const key = keyFromPem(readFileSync(p.keyFile, 'utf8'));
    if (!cert.checkPrivateKey(key)) throw new CertificateError(`${p.keyFile}: the key does not belong to ${p.certFile}`);
    const bundlePems = p.bundleFile === null ? [certPem] : unpem(readFileSync(p.bundleFile, 'utf8'), 'CERTIFICATE').map((d) => new X509Certificate(d).toString());
    const selfSigned = cert.checkIssued(cert);
    if (!selfSigned && p.bundleFile === null) throw new CertificateError(`${p.certFile} is an intermediate: give the roots it chains to as the bundle`);
    this.roots = bundlePems.map((pem) => ({ id: null, cert: new X509Certificate(pem), pem, state: 'active' as const }));
    this.signer = { cert, key, chain: selfSigned ? '' : cert.toString() };
  }

  private get statePath(): string {
    return join(this.dir, 'roots.json');
  }

  private loadOrCreate(): void {
    if (!existsSync(this.statePath)) {
      this.create(1, 'signing');
      return;
    }
    const stored = JSON.parse(readFileSync(this.statePath, 'utf8')) as StoredRoot[];
    for (const s of stored) {
      const pem = readFileSync(join(this.dir, `root-${s.id}.pem`), 'utf8');
      this.roots.push({ id: s.id, cert: new X509Certificate(pem), pem, state: s.state });
      if (s.state === 'signing') this.signer = { cert: new X509Certificate(pem), key: keyFromPem(readFileSync(join(this.dir, `root-${s.id}.key`), 'utf8')), chain: '' };
    }
    if (this.signer === undefined) throw new CertificateError(`${this.statePath}: no root is marked "signing"`);
  }

  private create(id: number, state: StoredRoot['state']): void {
    const key = generateKey();
    const now = Date.now();
    const pem = createRootCertificate({ key, trustDomain: this.trustDomain, commonName: `Weft root ${id}`, notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + ROOT_LIFETIME_MS) });
    writeDurably(join(this.dir, `root-${id}.key`), keyToPem(key), 0o600);
    writeDurably(join(this.dir, `root-${id}.pem`), pem, 0o644);
    const cert = new X509Certificate(pem);
    this.roots.push({ id, cert, pem, state });
    if (state === 'signing') this.signer = { cert, key, chain: '' };
    this.save();
  }

  private save(): void {
    const stored: StoredRoot[] = this.roots.filter((r) => r.id !== null).map((r) => ({ id: r.id!, state: r.state, createdAt: r.cert.validFrom }));
    writeDurably(this.statePath, JSON.stringify(stored, null, 1) + '\n', 0o600);
  }

  /** The roots proxies trust, PEM each. */
  bundle(): string[] {
    return this.roots.filter((r) => r.state !== 'retired').map((r) => r.pem);
  }

  /** Roots with their expiry, for `weft get certificates` and `weft check`. */
  rootInfo(): Array<{ subject: string; serial: string; notAfter: string; state: string; signing: boolean }> {
    return this.roots.map((r) => ({ subject: r.cert.subject.replace(/\n/g, ', '), serial: r.cert.serialNumber, notAfter: new Date(r.cert.validTo).toISOString(), state: r.state, signing: r.cert === this.signer.cert || r.cert.raw.equals(this.signer.cert.raw) }));
  }

  /**
   * Signs a CSR for a workload identity. The CSR may ask for an identity; it must be the one granted.
   * Returns the leaf and the intermediates after it (PEM), ready for a TLS `cert`.
   */
  issue(csrPem: string, trustDomain: string, namespace: string, serviceAccount: string, lifetimeMs: number): { chain: string; cert: IssuedCertificate } {
    const id = spiffeId(trustDomain, namespace, serviceAccount);
    const csr = readCsr(csrPem);
    const asked = csr.uris.filter((u) => u.startsWith('spiffe://'));
    if (asked.length > 0 && (asked.length > 1 || asked[0] !== id)) throw new CertificateError(`csr asks for ${asked.join(', ')}, but the identity granted is ${id}`);
    const now = Date.now();
    const notAfter = Math.min(now + lifetimeMs, Date.parse(this.signer.cert.validTo));
    const leaf = issueLeafCertificate({ publicKey: csr.publicKey, spiffeId: id, issuerCert: this.signer.cert, issuerKey: this.signer.key, notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(notAfter) });
    return {
      chain: leaf.pem + this.signer.chain,
      cert: { identity: id, serial: leaf.serial, notBefore: new Date(now - BACKDATE_MS).toISOString(), notAfter: new Date(notAfter).toISOString(), issuer: this.signer.cert.subject.replace(/\n/g, ', ') },
    };
  }

  /**
   * One step of a root rotation; each call moves it on and says what happened:
   * 1. `added`: a new root joins the bundle (proxies must trust it before anything is signed with it);
   * 2. `switched`: the new root signs; every proxy should renew now;
   * 3. `retired`: the old root leaves the bundle (once every proxy holds a leaf from the new root).
   */
  rotateStep(): 'added' | 'switched' | 'retired' {
    if (this.provided) throw new CertificateError('the signing certificate was provided by the user; rotate it by restarting with the new one');
    const live = this.roots.filter((r) => r.state !== 'retired');
    const signing = live.find((r) => r.state === 'signing')!;
    const newer = live.find((r) => r.state === 'active' && r.id! > signing.id!);
    if (live.length === 1) {
      this.create(Math.max(...this.roots.map((r) => r.id ?? 0)) + 1, 'active');
      return 'added';
    }
    if (newer !== undefined) {
      signing.state = 'active';
      newer.state = 'signing';
      this.signer = { cert: newer.cert, key: keyFromPem(readFileSync(join(this.dir, `root-${newer.id}.key`), 'utf8')), chain: '' };
      this.save();
      return 'switched';
    }
    for (const r of live) if (r.state === 'active') r.state = 'retired';
    this.save();
    return 'retired';
  }

  /** Which step a rotation is at: null when none is under way. */
  rotationPhase(): 'added' | 'switched' | null {
    if (this.provided) return null;
    const live = this.roots.filter((r) => r.state !== 'retired');
    if (live.length < 2) return null;
    const signing = live.find((r) => r.state === 'signing')!;
    return live.some((r) => r.state === 'active' && r.id! > signing.id!) ? 'added' : 'switched';
  }

  /**
   * The root the signing certificate chains to (the signer itself when it is a root), PEM: the control
   * plane's TLS certificate is sent with it, so a joining proxy can match it to the pin it was given.
   * Null when no root of the bundle issued the signer directly.
   */
  anchor(): { cert: X509Certificate; pem: string } | null {
    const signer = this.signer.cert;
    const r = this.roots.find((root) => root.state !== 'retired' && (root.cert.raw.equals(signer.raw) || (signer.checkIssued(root.cert) && signer.verify(root.cert.publicKey))));
    return r === undefined ? null : { cert: r.cert, pem: r.pem.endsWith('\n') ? r.pem : `${r.pem}\n` };
  }

  /**
   * The pins (`sha256:<hex>` of the SubjectPublicKeyInfo) of the roots proxies trust, and what each
   * means to a proxy joining over TLS now: `presented` (the root the control plane's certificate
   * chains to: this pin works), `next` (a rotation added it; it is presented once it signs, step 2),
   * `previous` (the old root after that switch: no longer presented, retired at step 3), `other` (a
   * further root of a user-provided bundle). The presented one comes first.
   */
  pins(): Array<{ pin: string; subject: string; notAfter: string; role: 'presented' | 'next' | 'previous' | 'other' }> {
    const anchor = this.anchor()?.cert ?? null;
    const anchorId = anchor === null ? null : (this.roots.find((r) => r.cert.raw.equals(anchor.raw))?.id ?? null);
    const role = (r: (typeof this.roots)[number]): 'presented' | 'next' | 'previous' | 'other' =>
      anchor !== null && r.cert.raw.equals(anchor.raw) ? 'presented' : r.id === null || anchorId === null ? 'other' : r.id > anchorId ? 'next' : 'previous';
    const order = { presented: 0, next: 1, previous: 2, other: 3 };
    return this.roots
      .filter((r) => r.state !== 'retired')
      .map((r) => ({ pin: spkiPin(r.cert), subject: r.cert.subject.replace(/\n/g, ', '), notAfter: new Date(r.cert.validTo).toISOString(), role: role(r) }))
      .sort((a, b) => order[a.role] - order[b.role]);
  }

  /** The root that signs now (for checking that a leaf comes from it). */
  signingRoot(): X509Certificate {
    return this.signer.cert;
  }
}

/** Writes a file so that after a crash it is either the old or the whole new content. */
function writeDurably(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}
