/** Header fields between the proxy's flattened lists and Node's HTTP/2 header objects. */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

/** Fields HTTP/2 forbids (RFC 9113 8.2.2), and Host (`:authority` carries it). */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

/** Regular fields of an HTTP/2 header block as a flattened list; pseudo-fields are left out. */
export function fromH2Headers(h: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const name of Object.keys(h)) {
    if (name.charCodeAt(0) === 0x3a || name === 'host') continue; // ':' pseudo-fields
    const v = h[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(name, x);
    else out.push(name, v);
  }
  return out;
}

/** A flattened list as an HTTP/2 header object, without the fields HTTP/2 forbids (`te` only as `trailers`). */
export function toH2Headers(fields: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (CONNECTION_SPECIFIC.has(name) || (name === 'te' && value.toLowerCase() !== 'trailers')) continue;
    const had = out[name];
    if (had === undefined) out[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[name] = [String(had), value];
  }
  return out;
}
