/**
 * Protocol detection on a local `--upstream` port whose Service port declares no protocol: the
 * connection's first bytes tell what the app speaks, within a short bounded wait.
 *
 * - an HTTP/1 request line — a known method, a space, a target, ` HTTP/1.0` or ` HTTP/1.1`, CRLF →
 *   `http1`;
 * - the whole HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) → `h2`;
 * - a TLS handshake record (0x16 0x03) → `tls` (the app speaks TLS end to end: opaque TCP);
 * - anything else → `tcp`, as soon as the bytes seen can no longer start one of the above;
 * - nothing decisive within the wait (a server-first protocol: the client waits for a greeting),
 *   or the client ending its side first → `tcp`.
 *
 * The request line must be complete because "a method and a space" alone is not HTTP: Redis takes
 * inline commands (`GET key\r\n`), and SMTP clients write `HELO`/`EHLO`; neither ends in `HTTP/1.x`.
 */
import type { Socket } from 'node:net';
import { H2_PREFACE, TLS_HANDSHAKE, peekBytes } from '../../core/first-byte.js';

export type DetectedProtocol = 'http1' | 'h2' | 'tls' | 'tcp';
/** What decided: the bytes themselves, the wait running out, or the client ending its side first. */
export type DetectReason = 'bytes' | 'timeout' | 'end';

/**
 * How long a connection may stay silent before it is taken for opaque TCP: what a server-first
 * protocol on an undeclared port pays per connection. Clients of client-first protocols write as
 * soon as they connect, so 200 ms leaves a busy two-core machine a wide margin (Istio uses 100 ms).
 */
export const DETECT_WAIT_MS = 200;

/** The most bytes looked at: an HTTP/1 request line must end (CRLF) within them, or it is opaque TCP. */
export const MAX_DETECT_BYTES = 8192;

/**
 * Methods taken for HTTP/1: RFC 9110's (but CONNECT: a tunnel is no request the mesh could route
 * here), PATCH, and WebDAV's. A client with another method on an undeclared port gets opaque TCP,
 * which still reaches the app.
 */
export const HTTP1_METHODS: ReadonlySet<string> = new Set([
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH', 'MKCALENDAR', 'ACL',
]);

const LONGEST_METHOD = Math.max(...[...HTTP1_METHODS].map((m) => m.length));
const METHOD_PREFIXES = new Set([...HTTP1_METHODS].flatMap((m) => [...m].map((_, i) => m.slice(0, i + 1))));
const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
/** request-target and HTTP-version: visible ASCII (RFC 9112 3.2: no whitespace or controls in the target). */
const REQUEST_LINE_REST = /^[\x21-\x7e]+ HTTP\/1\.[01]$/;

/**
 * The protocol `head` (a connection's first bytes) starts, or null while more bytes are needed to
 * tell. Decides as early as the bytes allow: `*3\r\n` (Redis) is `tcp` at its first byte.
 */
export function classify(head: Buffer): DetectedProtocol | null {
  if (head.length === 0) return null;
  if (head[0] === TLS_HANDSHAKE) {
    if (head.length < 2) return null;
    return head[1] === 0x03 ? 'tls' : 'tcp';
  }
  const preface = Math.min(head.length, H2_PREFACE.length);
  if (head.subarray(0, preface).equals(H2_PREFACE.subarray(0, preface))) return head.length >= H2_PREFACE.length ? 'h2' : null;
  return classifyHttp1(head);
}

function classifyHttp1(head: Buffer): 'http1' | 'tcp' | null {
  const limit = Math.min(head.length, LONGEST_METHOD + 1);
  let sp = -1;
  for (let i = 0; i < limit; i++) {
    if (head[i] === SP) {
      sp = i;
      break;
    }
  }
  if (sp === -1) {
    // No space yet: still a possible method only while it is a prefix of one.
    return head.length <= LONGEST_METHOD && METHOD_PREFIXES.has(head.toString('latin1')) ? null : 'tcp';
  }
  if (!HTTP1_METHODS.has(head.toString('latin1', 0, sp))) return 'tcp';
  const lf = head.indexOf(LF, sp + 1);
  if (lf === -1) {
    if (head.length >= MAX_DETECT_BYTES) return 'tcp';
    // A control byte (a lone CR aside, which may start the CRLF) already rules a request line out.
    for (let i = sp + 1; i < head.length; i++) {
      const b = head[i]!;
      if ((b < 0x20 || b === 0x7f) && !(b === CR && i === head.length - 1)) return 'tcp';
    }
    return null;
  }
  if (lf > MAX_DETECT_BYTES || head[lf - 1] !== CR) return 'tcp';
  return REQUEST_LINE_REST.test(head.toString('latin1', sp + 1, lf - 1)) ? 'http1' : 'tcp';
}

/** What detection decided for one connection. */
export interface Detection {
  protocol: DetectedProtocol;
  reason: DetectReason;
  /**
   * With reason `end`: the bytes the client sent before ending its side (null: none), which the
   * next owner must pass on itself. Otherwise every byte read is back in the socket, which is
   * paused for the next owner to resume.
   */
  sentBeforeEnd: Buffer | null;
}

/**
 * Looks at `socket`'s first bytes for at most `waitMs` and calls `then` once with the decision. A
 * connection that fails meanwhile is destroyed and `then` is never called.
 */
export function detectProtocol(socket: Socket, waitMs: number, then: (d: Detection) => void): void {
  let decided: DetectedProtocol | null = null;
  peekBytes(
    socket,
    (head) => (decided = classify(head)) !== null,
    waitMs,
    () => then({ protocol: decided!, reason: 'bytes', sentBeforeEnd: null }),
    {
      onTimeout: () => then({ protocol: 'tcp', reason: 'timeout', sentBeforeEnd: null }),
      onEnd: (head) => then({ protocol: 'tcp', reason: 'end', sentBeforeEnd: head }),
    },
  );
}
