/**
 * Writing HTTP/1.1 framing, and the header fields that belong to one connection and never cross
 * the proxy (RFC 9110 7.6.1).
 */
import { writeInTurn } from './batch-write.js';
import type { Socket } from 'node:net';

/** Fields removed from requests: hop-by-hop, framing (re-derived from the body) and Host (carried as authority). */
export const REQUEST_FRAMING: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'host',
]);
/** For HTTP/1.0 requests also Expect, which HTTP/1.0 does not define (RFC 9110 10.1.1). */
export const REQUEST_FRAMING_HTTP10: ReadonlySet<string> = new Set([...REQUEST_FRAMING, 'expect']);
/** Fields removed from responses that carry a body. */
export const RESPONSE_FRAMING: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length',
]);
/** Fields removed from responses without a body, whose Content-Length describes what a GET would return. */
export const BODYLESS_RESPONSE_FRAMING: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
]);

/** Removes `strip` fields and those named by the Connection header, in place. */
export function stripHopByHop(headers: string[], connection: readonly string[] | null, strip: ReadonlySet<string>): void {
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    const name = headers[r]!;
    if (strip.has(name) || (connection !== null && connection.includes(name))) continue;
    if (w !== r) {
      headers[w] = name;
      headers[w + 1] = headers[r + 1]!;
    }
    w += 2;
  }
  headers.length = w;
}

/** Bodies up to this size that are complete when their head is written go out in the head's write. */
export const JOIN_BODY_MAX = 16 * 1024;

/**
 * Writes a head (its lines, without the blank line) and a complete body of known length in one
 * write: one buffer, not a corked pair that goes out as a writev from the next tick.
 */
export function writeHeadAndBody(socket: Socket, head: string, body: Buffer): void {
  if (body.length === 0) {
    writeInTurn(socket, `${head}\r\n`, 'latin1');
    return;
  }
  const n = head.length + 2;
  const out = Buffer.allocUnsafe(n + body.length);
  out.write(head, 0, 'latin1');
  out[n - 2] = 0x0d;
  out[n - 1] = 0x0a;
  body.copy(out, n);
  writeInTurn(socket, out);
}

/** Writes one chunk of a chunked body; returns the socket's backpressure verdict. */
export function writeChunk(socket: Socket, chunk: Buffer): boolean {
  if (chunk.length === 0) return true;
  socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
  socket.write(chunk);
  return socket.write('\r\n', 'latin1');
}

/** Ends a chunked body, with trailer fields when there are any. */
export function writeLastChunk(socket: Socket, trailers: readonly string[] | null): void {
  let s = '0\r\n';
  if (trailers !== null) for (let i = 0; i < trailers.length; i += 2) s += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
  socket.write(`${s}\r\n`, 'latin1');
}

/** Serialises header fields as lines. */
export function headerLines(headers: readonly string[]): string {
  let s = '';
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return s;
}

/**
 * The protocol upgrade a request asks for (RFC 9110 7.8), as the `Upgrade` value to forward, or
 * null: an HTTP/1.1 request without content whose Connection field names `upgrade` and that has an
 * Upgrade field. `h2c` is never forwarded (as in Envoy): a request offering only h2c goes on as an
 * ordinary request, without the upgrade. A request with content is never upgraded, so the bytes
 * after its head are always its body, never the upgraded protocol's.
 */
export function requestedUpgrade(head: { minor: number; connection: readonly string[] | null; headers: readonly string[]; contentLength: number; chunked: boolean }): string | null {
  if (head.minor !== 1 || head.connection === null || !head.connection.includes('upgrade')) return null;
  if (head.chunked || head.contentLength > 0) return null;
  const offered: string[] = [];
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] !== 'upgrade') continue;
    for (const t of h[i + 1]!.split(',')) {
      const p = t.trim();
      if (p !== '' && !/^h2c$/i.test(p)) offered.push(p);
    }
  }
  return offered.length === 0 ? null : offered.join(', ');
}

/** The `Upgrade` value of a 101 response, or null when it has none. */
export function upgradeValue(headers: readonly string[]): string | null {
  let v: string | null = null;
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'upgrade') v = v === null ? headers[i + 1]! : `${v}, ${headers[i + 1]!}`;
  return v;
}
