/**
 * The request hash of the hashing balancers (RingHash, Maglev): a fast, stable 32-bit hash of a
 * header value, a cookie value or the client address, computed without allocating.
 */
import type { HashPolicy } from '../../model/snapshot.js';
import type { ProxyRequest } from '../message.js';

/**
 * FNV-1a (32-bit) over the UTF-16 code units of `s[start, end)`, finished with murmur3's fmix32 so
 * that nearby keys land far apart on a ring. Stable across processes and versions: two proxies (or
 * one after a restart) send the same key to the same endpoint. Returns an unsigned 32-bit integer.
 */
export function hash32(s: string, start = 0, end = s.length, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = start; i < end; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

/** murmur3's 32-bit finaliser: every input bit flips about half of the output bits. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The key hash of one request (or TCP connection: `req` null), or -1 when it has no key. */
export type RequestHasher = (req: ProxyRequest | null, clientAddress: string) => number;

/** Builds the hasher of a hash policy once per configuration. */
export function requestHasher(policy: HashPolicy): RequestHasher {
  if (policy.sourceAddress === true) return (_req, clientAddress) => (clientAddress === '' ? -1 : hash32(clientAddress));
  if (policy.header !== undefined) {
    const name = policy.header.name.toLowerCase();
    return (req) => {
      if (req === null) return -1;
      // The first field of that name decides (a repeated header is one key only when sent identically).
      const headers = req.headers;
      for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return hash32(headers[i + 1]!);
      return -1;
    };
  }
  if (policy.cookie !== undefined) {
    const name = policy.cookie.name;
    return (req) => (req === null ? -1 : cookieHash(req.headers, name));
  }
  return () => -1;
}

/** The hash of cookie `name`'s value in the `cookie` fields (HTTP/2 may split them), or -1 when absent. */
function cookieHash(headers: readonly string[], name: string): number {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== 'cookie') continue;
    const v = headers[i + 1]!;
    let at = 0;
    while (at < v.length) {
      while (at < v.length && (v.charCodeAt(at) === 32 || v.charCodeAt(at) === 59)) at++; // spaces and ';'
      let end = v.indexOf(';', at);
      if (end === -1) end = v.length;
      if (end - at > name.length && v.charCodeAt(at + name.length) === 61 && v.startsWith(name, at)) {
        let start = at + name.length + 1;
        let stop = end;
        while (stop > start && v.charCodeAt(stop - 1) === 32) stop--;
        // RFC 6265 allows a DQUOTE'd value; the quotes are not part of it.
        if (stop - start >= 2 && v.charCodeAt(start) === 34 && v.charCodeAt(stop - 1) === 34) {
          start++;
          stop--;
        }
        return hash32(v, start, stop);
      }
      at = end + 1;
    }
  }
  return -1;
}
