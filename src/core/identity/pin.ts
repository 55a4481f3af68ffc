/**
 * Pins of trust anchors, as kubeadm's `--discovery-token-ca-cert-hash`: `sha256:<hex>` of the SHA-256
 * of a certificate's SubjectPublicKeyInfo (DER). The key, not the whole certificate: a root re-issued
 * with the same key (a longer validity, another name) keeps its pin, and the value is the one
 * `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum` prints.
 */
import { createHash, type X509Certificate } from 'node:crypto';

const PIN = /^sha256:[0-9a-f]{64}$/;

/** The pin of a certificate's public key. */
export function spkiPin(cert: X509Certificate): string {
  return `sha256:${createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex')}`;
}

/** Why `text` is not a pin, or null when it is one (hex digits in either case). */
export function pinProblem(text: string): string | null {
  if (PIN.test(text.toLowerCase())) return null;
  if (!text.toLowerCase().startsWith('sha256:')) return `"${text}" is not sha256:<hex> (only SHA-256 pins are supported)`;
  return `"${text}" is not sha256: followed by 64 hex digits`;
}

/** A pin in its one spelling (lowercase), for comparing. */
export const normalizePin = (text: string): string => text.toLowerCase();
