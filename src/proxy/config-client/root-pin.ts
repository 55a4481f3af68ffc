/**
 * The first join over TLS with the control plane's root pinned (`--ca-cert-hash`, as kubeadm's
 * discovery hash). Before a proxy sends its join token it has no trust bundle yet, so it learns the
 * root from the server and believes it only when it matches a pin it was given out of band:
 *
 * 1. a TLS 1.3 handshake with no client certificate and nothing sent: the server's presented chain;
 * 2. `checkPinnedChain`: a certificate of that chain matches a pin, the leaf chains to it (signatures
 *    and validity dates), and the leaf is the control plane's SPIFFE ID;
 * 3. the join itself then runs on a new connection that trusts that root only (the TLS layer checks
 *    the chain again) and the same SPIFFE ID. Only on that connection does the token go out.
 */
import { X509Certificate } from 'node:crypto';
import { connect, type DetailedPeerCertificate } from 'node:tls';
import { normalizePin, spkiPin } from '../../core/identity/pin.js';
import { CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT, controlPlaneId, parseSpiffeId } from '../../core/identity/spiffe.js';
import { uriSans } from '../../core/identity/x509.js';
import { expectSpiffeId } from '../tls/peer-identity.js';
import type { ClientTls } from '../http1/simple-client.js';

/** The server is not the control plane the pins name: what did not match. */
export class PinMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PinMismatchError';
  }
}

/** What a chain that passed the check is anchored on. */
export interface PinnedAnchor {
  /** The certificate of the chain that matched a pin (a root). */
  anchor: X509Certificate;
  pin: string;
  /** The control plane's trust domain (from its SPIFFE ID, or the one required). */
  trustDomain: string;
}

/** More certificates than this in a presented chain are not looked at. */
const MAX_CHAIN = 8;

/** A certificate as the errors name it: its pin, and its subject (a root's) or else its URI SANs (a leaf's). */
const describe = (c: X509Certificate): string => `${spkiPin(c)} (${(c.subject ?? '').replace(/\n/g, ', ') || uriSans(c).join(', ') || 'no name'})`;

/**
 * Accepts a server's presented chain (leaf first) only when a certificate in it matches one of `pins`,
 * the leaf chains to that certificate (each signature verified, every certificate on the path valid
 * at `now`, every issuer a CA), and the leaf carries exactly one URI SAN, the control plane's SPIFFE
 * ID (`spiffe://<td>/ns/weft-system/sa/weft-control`; `td` must be `trustDomain` when one is given).
 * Throws a PinMismatchError naming what did not match.
 */
export function checkPinnedChain(chain: readonly X509Certificate[], pins: readonly string[], trustDomain: string | null, now = Date.now()): PinnedAnchor {
  const leaf = chain[0];
  if (leaf === undefined) throw new PinMismatchError('the server presented no certificate');
  const wanted = new Set(pins.map(normalizePin));
  const expectedPins = [...wanted].join(' or ');
  const presented = chain.slice(0, MAX_CHAIN);
  const pinned = presented.filter((c, i) => i > 0 && c.ca && wanted.has(spkiPin(c)));
  if (pinned.length === 0) {
    throw new PinMismatchError(`no CA certificate the server presented matches --ca-cert-hash ${expectedPins}; its chain: ${presented.map(describe).join(', ')}`);
  }
  const valid = (c: X509Certificate, what: string): void => {
    if (Date.parse(c.validTo) <= now) throw new PinMismatchError(`${what} ${describe(c)} expired at ${new Date(c.validTo).toISOString()}`);
    if (Date.parse(c.validFrom) > now) throw new PinMismatchError(`${what} ${describe(c)} is not valid before ${new Date(c.validFrom).toISOString()}`);
  };
  const signed = (child: X509Certificate, issuer: X509Certificate): boolean => child.checkIssued(issuer) && child.verify(issuer.publicKey);
  // Walk up from the leaf through the presented intermediates until a pinned certificate signed the last one.
  let current = leaf;
  const used = new Set<X509Certificate>([leaf]);
  let anchor: X509Certificate | undefined;
  for (let step = 0; step < presented.length && anchor === undefined; step++) {
    valid(current, current === leaf ? "the server's certificate" : 'intermediate');
    anchor = pinned.find((p) => p !== current && signed(current, p));
    if (anchor !== undefined) break;
    const next = presented.find((c) => !used.has(c) && c.ca && signed(current, c));
    if (next === undefined) break;
    used.add(next);
    current = next;
  }
  if (anchor === undefined) {
    throw new PinMismatchError(`the server's certificate ${describe(leaf)} does not chain to the pinned ${pinned.map(describe).join(', ')} (a signature does not verify); the chain presented: ${presented.map(describe).join(', ')}`);
  }
  // The join's connection trusts the pinned certificate as a root; an intermediate would fail there, less clearly.
  if (!anchor.checkIssued(anchor) || !anchor.verify(anchor.publicKey)) throw new PinMismatchError(`the pinned ${describe(anchor)} is not a root (not self-signed): pin the root it chains to (weft ca pins)`);
  valid(anchor, 'pinned root');
  const uris = uriSans(leaf);
  const id = uris.length === 1 ? parseSpiffeId(uris[0]!) : null;
  const expected = trustDomain !== null ? controlPlaneId(trustDomain) : controlPlaneId('<trust-domain>');
  if (id === null || id.namespace !== CONTROL_NAMESPACE || id.serviceAccount !== CONTROL_SERVICE_ACCOUNT || (trustDomain !== null && id.trustDomain !== trustDomain)) {
    throw new PinMismatchError(`the server's certificate is ${uris.join(', ') || 'no SPIFFE ID'}, not the control plane's ${expected}`);
  }
  return { anchor, pin: spkiPin(anchor), trustDomain: id.trustDomain };
}

/** The chain a TLS server presents (leaf first), from a handshake that sends nothing else. */
export function presentedChain(host: string, port: number, servername: string | undefined, timeoutMs: number): Promise<X509Certificate[]> {
  return new Promise((resolve, reject) => {
    // No client certificate, no verification by the TLS layer here: the pin check decides, and the socket carries no byte of ours.
    const socket = connect({ host, port, minVersion: 'TLSv1.3', rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}) });
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`no TLS handshake within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
    timer.unref();
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const chain: X509Certificate[] = [];
      const seen = new Set<string>();
      // Node links each certificate to its issuer among those presented (a root links to itself).
      let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (c !== undefined && c.raw !== undefined && chain.length < MAX_CHAIN) {
        const key = c.raw.toString('base64');
        if (seen.has(key)) break;
        seen.add(key);
        chain.push(new X509Certificate(c.raw));
        c = c.issuerCertificate;
      }
      socket.destroy();
      resolve(chain);
    });
  });
}

/**
 * TLS settings for the join over `url` (`https:`): the server's presented chain must pass
 * `checkPinnedChain`, and the join's connection then trusts only the root that matched and the
 * control plane's SPIFFE ID. Rejects with a PinMismatchError, or the connection's error.
 */
export async function pinnedJoinTls(url: URL, pins: readonly string[], trustDomain: string | null, timeoutMs: number): Promise<{ tls: ClientTls; anchor: PinnedAnchor }> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port !== '' ? Number(url.port) : 443;
  const servername = /^[0-9.]+$/.test(host) || host.includes(':') ? undefined : host;
  const anchor = checkPinnedChain(await presentedChain(host, port, servername, timeoutMs), pins, trustDomain);
  return {
    tls: { ca: anchor.anchor.toString(), minVersion: 'TLSv1.3', checkServerIdentity: expectSpiffeId(controlPlaneId(anchor.trustDomain)) },
    anchor,
  };
}

/** Whether a URL's host is this machine (then a plaintext join never leaves it). */
export function isLoopbackHost(url: URL): boolean {
  const h = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::1';
}
