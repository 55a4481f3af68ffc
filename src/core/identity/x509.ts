/**
 * X.509 for Weft's identities: ECDSA P-256 keys, PKCS #10 requests that carry a SPIFFE ID, CA and
 * leaf certificates (X.509-SVIDs). Node can verify and parse certificates (`X509Certificate`) but not
 * make them, so the few structures needed are encoded here (RFC 5280, RFC 2986, SPIFFE X509-SVID).
 *
 * A leaf has an empty subject, exactly one URI SAN (marked critical, as RFC 5280 requires for an
 * empty subject), CA=false, digitalSignature, and serverAuth + clientAuth; a CA has CA=true,
 * keyCertSign + cRLSign, and the trust domain's SPIFFE ID.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { TAG, bits, bool, children, decodeOid, explicit, implicitPrimitive, nul, octets, oid, pem, read, readWhole, seq, set, time, uint, unpem, utf8, type Node } from './der.js';

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  rsaWithSha256: '1.2.840.113549.1.1.11',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  subjectKeyId: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyId: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

/** A new ECDSA P-256 private key (the public key is `createPublicKey(key)`). */
export function generateKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

export const keyToPem = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }) as string;
export const keyFromPem = (text: string): KeyObject => createPrivateKey(text);

export class CertificateError extends Error {}

function algorithm(key: KeyObject): { id: Buffer; sign: (data: Buffer) => Buffer } {
  if (key.asymmetricKeyType === 'ec') return { id: seq(oid(OID.ecdsaWithSha256)), sign: (d) => sign('sha256', d, { key, dsaEncoding: 'der' }) };
  if (key.asymmetricKeyType === 'rsa') return { id: seq(oid(OID.rsaWithSha256), nul()), sign: (d) => sign('sha256', d, key) };
  throw new CertificateError(`signing keys of type ${key.asymmetricKeyType ?? 'unknown'} are not supported (use ECDSA or RSA)`);
}

const spki = (publicKey: KeyObject): Buffer => publicKey.export({ type: 'spki', format: 'der' });

/** Key identifier, RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyId(publicKey: KeyObject): Buffer {
  const info = children(read(spki(publicKey)));
  return createHash('sha1').update(info[1]!.content.subarray(1)).digest();
}

const extension = (id: string, critical: boolean, value: Buffer): Buffer => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
const uriSan = (uri: string): Buffer => seq(implicitPrimitive(6, Buffer.from(uri, 'latin1')));
const name = (attrs: Array<[string, string]>): Buffer => seq(...attrs.map(([id, v]) => set(seq(oid(id), utf8(v)))));

function serialNumber(): Buffer {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f || 0x01; // positive and 16 bytes long
  return b;
}

function certificate(tbs: Buffer, issuerKey: KeyObject): string {
  const alg = algorithm(issuerKey);
  return pem('CERTIFICATE', seq(tbs, alg.id, bits(alg.sign(tbs))));
}

/**
 * A PKCS #10 request signed with `key`, asking for `spiffeId` (or for nothing in particular: null).
 * The CA decides the identity; the request only says what is asked.
 */
export function createCsr(key: KeyObject, spiffeId: string | null): string {
  const publicKey = createPublicKey(key);
  const attributes = explicit(0, spiffeId === null ? Buffer.alloc(0) : seq(oid(OID.extensionRequest), set(seq(extension(OID.subjectAltName, true, uriSan(spiffeId))))));
  const info = seq(uint(0), seq(), spki(publicKey), attributes);
  const alg = algorithm(key);
  return pem('CERTIFICATE REQUEST', seq(info, alg.id, bits(alg.sign(info))));
}

/** What a request carries, once its signature checked out. */
export interface CsrInfo {
  publicKey: KeyObject;
  /** URI SANs asked for. */
  uris: string[];
}

/** Reads a request; throws a CertificateError saying what is wrong (not PEM, bad DER, not P-256, bad signature). */
export function readCsr(text: string): CsrInfo {
  const ders = unpem(text, 'CERTIFICATE REQUEST');
  if (ders.length !== 1) throw new CertificateError('csr: expected one PEM block "CERTIFICATE REQUEST"');
  try {
    const [info, alg, sig] = children(readWhole(ders[0]!, TAG.SEQUENCE, 'csr'));
    if (info === undefined || alg === undefined || sig === undefined || sig.tag !== TAG.BIT_STRING) throw new CertificateError('csr: not a CertificationRequest');
    const fields = children(info);
    const keyInfo = fields[2];
    if (keyInfo === undefined || keyInfo.tag !== TAG.SEQUENCE) throw new CertificateError('csr: no subjectPublicKeyInfo');
    const publicKey = createPublicKey({ key: keyInfo.raw, format: 'der', type: 'spki' });
    if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new CertificateError(`csr: the key must be ECDSA P-256, not ${publicKey.asymmetricKeyType}${publicKey.asymmetricKeyDetails?.namedCurve ? ` ${publicKey.asymmetricKeyDetails.namedCurve}` : ''}`);
    }
    if (decodeOid(children(alg)[0]!.content) !== OID.ecdsaWithSha256) throw new CertificateError('csr: the signature must be ecdsa-with-SHA256');
    if (!verify('sha256', info.raw, { key: publicKey, dsaEncoding: 'der' }, sig.content.subarray(1))) throw new CertificateError('csr: the signature does not match its key');
    return { publicKey, uris: fields[3] === undefined ? [] : requestedUris(fields[3]) };
  } catch (err) {
    if (err instanceof CertificateError) throw err;
    throw new CertificateError(`csr: ${(err as Error).message}`);
  }
}

function requestedUris(attributes: Node): string[] {
  const out: string[] = [];
  for (const attr of children(attributes)) {
    const [id, values] = children(attr);
    if (id === undefined || values === undefined || decodeOid(id.content) !== OID.extensionRequest) continue;
    for (const exts of children(values)) {
      for (const ext of children(exts)) {
        const parts = children(ext);
        if (decodeOid(parts[0]!.content) !== OID.subjectAltName) continue;
        const value = parts[parts.length - 1]!;
        for (const gn of children(read(value.content))) if (gn.tag === 0x86) out.push(gn.content.toString('latin1'));
      }
    }
  }
  return out;
}

/** Raw subject Name and subject key identifier of a certificate, for certificates it issues. */
function issuerFacts(cert: X509Certificate): { subject: Buffer; keyId: Buffer } {
  const [tbs] = children(read(cert.raw));
  const fields = children(tbs!);
  const hasVersion = fields[0]!.tag === 0xa0;
  const subject = fields[hasVersion ? 5 : 4]!.raw;
  let id: Buffer | null = null;
  const exts = fields.find((f) => f.tag === 0xa3);
  if (exts !== undefined) {
    for (const ext of children(children(exts)[0]!)) {
      const parts = children(ext);
      if (decodeOid(parts[0]!.content) === OID.subjectKeyId) id = read(parts[parts.length - 1]!.content).content;
    }
  }
  return { subject, keyId: id ?? keyId(cert.publicKey) };
}

export interface RootOptions {
  key: KeyObject;
  trustDomain: string;
  commonName: string;
  notBefore: Date;
  notAfter: Date;
}

/** A self-signed CA certificate for a trust domain. */
export function createRootCertificate(o: RootOptions): string {
  const publicKey = createPublicKey(o.key);
  const subject = name([
    [OID.organization, o.trustDomain],
    [OID.commonName, o.commonName],
  ]);
  const alg = algorithm(o.key);
  const id = keyId(publicKey);
  const extensions = seq(
    extension(OID.basicConstraints, true, seq(bool(true))),
    extension(OID.keyUsage, true, tlv3(0x01, 0x86)), // digitalSignature, keyCertSign, cRLSign
    extension(OID.subjectKeyId, false, octets(id)),
    extension(OID.subjectAltName, false, uriSan(`spiffe://${o.trustDomain}`)),
  );
  const tbs = seq(explicit(0, uint(2)), uint(serialNumber()), alg.id, subject, seq(time(o.notBefore), time(o.notAfter)), subject, spki(publicKey), explicit(3, extensions));
  return certificate(tbs, o.key);
}

/** A BIT STRING of one byte with `unused` trailing bits (key usage). */
function tlv3(unused: number, byte: number): Buffer {
  return Buffer.from([TAG.BIT_STRING, 2, unused, byte]);
}

export interface LeafOptions {
  publicKey: KeyObject;
  spiffeId: string;
  issuerCert: X509Certificate;
  issuerKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
}

/** An X.509-SVID for `spiffeId`, issued by `issuerCert`. */
export function issueLeafCertificate(o: LeafOptions): { pem: string; serial: string } {
  const issuer = issuerFacts(o.issuerCert);
  const alg = algorithm(o.issuerKey);
  const serial = serialNumber();
  const extensions = seq(
    extension(OID.basicConstraints, true, seq()),
    extension(OID.keyUsage, true, tlv3(0x07, 0x80)), // digitalSignature
    extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
    extension(OID.subjectKeyId, false, octets(keyId(o.publicKey))),
    extension(OID.authorityKeyId, false, seq(implicitPrimitive(0, issuer.keyId))),
    extension(OID.subjectAltName, true, uriSan(o.spiffeId)),
  );
  const tbs = seq(explicit(0, uint(2)), uint(serial), alg.id, issuer.subject, seq(time(o.notBefore), time(o.notAfter)), seq(), spki(o.publicKey), explicit(3, extensions));
  return { pem: certificate(tbs, o.issuerKey), serial: serial.toString('hex').toUpperCase() };
}

/** The URI SANs of a certificate (Node formats them as `URI:spiffe://…`, comma-separated). */
export function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/** A hash naming a trust bundle, so the control plane and a proxy can tell whether they hold the same one. */
export const bundleHash = (bundle: readonly string[]): string => createHash('sha256').update(bundle.join('')).digest('hex').slice(0, 16);
