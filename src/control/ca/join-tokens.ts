/**
 * Join tokens: how a proxy proves, the first time, which workload identity it may have. A token
 * grants exactly one identity (namespace + service account) until it expires or is revoked. Only a
 * hash of each token is stored (in the control plane's durable store); the token itself is shown
 * once, when it is created.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FileStore } from '../store/file-store.js';
import { CONTROL_NAMESPACE } from '../../core/identity/spiffe.js';

const PREFIX = 'tokens/';
/** Which token each live certificate descends from, so a revocation reaches proxies that reconnect with their certificate. */
const ISSUED = 'issued/';
const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** What is known of a token (never the token itself). */
export interface JoinToken {
  id: string;
  namespace: string;
  serviceAccount: string;
  createdAt: string;
  expiresAt: string;
  revoked: boolean;
  /** sha256 of the secret part, hex. */
  hash: string;
}

export class TokenError extends Error {
  /** Why a token was refused by `check`: unknown or malformed, revoked, or expired; `invalid` for a bad request to make one. */
  constructor(
    message: string,
    readonly reason: 'unknown' | 'revoked' | 'expired' | 'invalid' = 'invalid',
  ) {
    super(message);
  }
}

const hashOf = (secret: string): string => createHash('sha256').update(secret).digest('hex');

export class JoinTokens {
  private readonly store: FileStore;

  constructor(store: FileStore) {
    this.store = store;
  }

  /** Creates a token; the returned string is the only copy of the secret. */
  async create(namespace: string, serviceAccount: string, ttlMs: number): Promise<{ token: string; info: Omit<JoinToken, 'hash'> }> {
    if (!NAME.test(namespace)) throw new TokenError(`namespace: ${JSON.stringify(namespace)} is not a DNS label`);
    if (namespace === CONTROL_NAMESPACE) throw new TokenError(`namespace: ${CONTROL_NAMESPACE} is reserved for the control plane's own identity`);
    if (!NAME.test(serviceAccount)) throw new TokenError(`serviceAccount: ${JSON.stringify(serviceAccount)} is not a DNS label`);
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new TokenError('ttl: must be positive');
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const now = Date.now();
    const t: JoinToken = { id, namespace, serviceAccount, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + ttlMs).toISOString(), revoked: false, hash: hashOf(secret) };
    await this.store.put(PREFIX + id, t);
    const { hash: _h, ...info } = t;
    return { token: `weft-${id}.${secret}`, info };
  }

  list(): Array<Omit<JoinToken, 'hash'>> {
    return this.store.list(PREFIX).map(([, v]) => {
      const { hash: _h, ...info } = v as JoinToken;
      return info;
    });
  }

  async revoke(id: string): Promise<boolean> {
    const t = this.store.get(PREFIX + id) as JoinToken | undefined;
    if (t === undefined) return false;
    await this.store.put(PREFIX + id, { ...t, revoked: true });
    return true;
  }

  /** The token's record when it is valid now; throws a TokenError saying why not. */
  check(token: string): JoinToken {
    const m = /^weft-([0-9a-f]{12})\.([A-Za-z0-9_-]{32})$/.exec(token);
    if (m === null) throw new TokenError('token: not a Weft join token (weft-<id>.<secret>)', 'unknown');
    const t = this.store.get(PREFIX + m[1]!) as JoinToken | undefined;
    const given = Buffer.from(hashOf(m[2]!), 'hex');
    if (t === undefined || !timingSafeEqual(given, Buffer.from(t.hash, 'hex'))) throw new TokenError(`token ${m[1]}: unknown`, 'unknown');
    if (t.revoked) throw new TokenError(`token ${t.id}: revoked`, 'revoked');
    if (Date.parse(t.expiresAt) <= Date.now()) throw new TokenError(`token ${t.id}: expired at ${t.expiresAt}`, 'expired');
    return t;
  }

  /** Whether the token with this id was revoked (or deleted): proxies that joined with it may no longer renew. */
  revoked(id: string): boolean {
    const t = this.store.get(PREFIX + id) as JoinToken | undefined;
    return t === undefined || t.revoked;
  }

  /**
   * Records that the certificate `serial` was issued on the strength of token `tokenId` (durably, so
   * it holds after a restart), and forgets certificates that have expired.
   */
  async recordIssued(serial: string, tokenId: string, notAfter: string): Promise<void> {
    const now = Date.now();
    const expired = this.store.list(ISSUED).filter(([, v]) => Date.parse((v as { notAfter: string }).notAfter) < now);
    await Promise.all([this.store.put(ISSUED + serial, { tokenId, notAfter }), ...expired.map(([k]) => this.store.delete(k))]);
  }

  /** The token a certificate descends from, or null when this control plane has no record of it. */
  tokenOf(serial: string): string | null {
    const v = this.store.get(ISSUED + serial) as { tokenId: string } | undefined;
    return v?.tokenId ?? null;
  }
}
