/**
 * Request mirroring (the Gateway API RequestMirror filter, GEP-3171's `percent` and `fraction`): for
 * the configured share of requests, a copy goes to the mirror backend's cluster with `-shadow`
 * appended to the authority's host (Envoy's convention), and its answer is read and dropped. Fire and
 * forget: the real exchange never waits for the mirror, and nothing the mirror does (slow, failing,
 * unreachable) reaches the caller.
 *
 * A request body is copied as it streams to the real backend (backpressure stays the real one's) and
 * the copy is sent once it is complete; a body larger than MAX_MIRROR_BODY_BYTES is not mirrored.
 * At most `maxInFlight` mirrors per filter are in flight; beyond that a request is not mirrored.
 * Every mirror decision is counted: `weft_mirrored_requests_total{route,result}`.
 */
import { performance } from 'node:perf_hooks';
import { MeshError } from '../../core/errors.js';
import { Body, type BodySink } from '../body.js';
import { abortContext, newRequestContext, type Handler, type Layer, type ProxyRequest, type RequestContext } from '../message.js';

/** The most request body bytes copied for a mirror (as the retry filter keeps for a replay). */
export const MAX_MIRROR_BODY_BYTES = 64 * 1024;
/** Mirrors in flight per filter, by default. */
export const MAX_MIRRORS_IN_FLIGHT = 100;
/** The bound on a mirror's whole exchange when the route sets no `timeouts.request` (Envoy's route default). */
export const DEFAULT_MIRROR_TIMEOUT_MS = 15_000;

/**
 * `sent`: the mirror backend answered (any status); `failed`: it did not (connect failure, reset,
 * timeout, no endpoint), or the request body never completed; `too_large`: the body was above the
 * bound; `overflow`: too many mirrors were in flight.
 */
export type MirrorResult = 'sent' | 'failed' | 'too_large' | 'overflow';
/** Counts one mirror decision: `weft_mirrored_requests_total{route,result}`. */
export type MirrorReport = (route: string, result: MirrorResult) => void;

export interface MirrorDeps {
  /** The `route` label. */
  route: string;
  report: MirrorReport;
  /** Bounds a mirror's whole exchange, until its answer's body has been read. */
  timeoutMs: number;
  maxInFlight?: number;
  maxBodyBytes?: number;
  /** Uniform in [0, 1); tests seed it. */
  random?: () => number;
}

/** `host[:port]` with `-shadow` after the host: `echo:80` → `echo-shadow:80`. */
export function shadowAuthority(authority: string): string {
  const colon = authority.lastIndexOf(':');
  // A colon inside an IPv6 literal's brackets is not a port separator.
  if (colon > authority.lastIndexOf(']')) return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
  return `${authority}-shadow`;
}

/** Reads and drops a mirror's answer. */
const discard = (done: () => void): BodySink => ({ data: () => true, end: done, error: done });

/**
 * The layer of one RequestMirror filter: `percent` (0-100) of requests are copied to `mirror` (the
 * mirror cluster's handler); built once per configuration.
 */
export function mirrorLayer(percent: number, mirror: Handler, deps: MirrorDeps): Layer {
  const random = deps.random ?? Math.random;
  const maxInFlight = deps.maxInFlight ?? MAX_MIRRORS_IN_FLIGHT;
  const maxBody = deps.maxBodyBytes ?? MAX_MIRROR_BODY_BYTES;
  const { route, report, timeoutMs } = deps;
  let inFlight = 0;
  const release = (): void => {
    inFlight--;
  };

  /** Sends the copy; settles (and frees its slot) when the answer has been read, or failed. */
  const send = (copy: ProxyRequest, ctx: RequestContext): void => {
    const mctx = newRequestContext({
      direction: 'outbound',
      requestId: ctx.requestId,
      clientAddress: ctx.clientAddress,
      peerIdentity: ctx.peerIdentity,
      route: ctx.route,
      protocol: ctx.protocol,
    });
    let settled = false;
    const timer = setTimeout(() => abortContext(mctx, new MeshError('UPSTREAM_TIMEOUT', `mirror did not complete within ${timeoutMs} ms`)), timeoutMs);
    const done = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      release();
    };
    let answer: ReturnType<Handler>;
    try {
      answer = mirror(copy, mctx);
    } catch (err) {
      answer = Promise.reject(err);
    }
    answer.then(
      (res) => {
        report(route, 'sent');
        res.upgraded?.socket.destroy();
        if (res.body === null) done();
        else res.body.pipe(discard(done));
      },
      () => {
        report(route, 'failed');
        done();
      },
    );
  };

  return (next: Handler): Handler =>
    (req, ctx) => {
      if (percent <= 0 || (percent < 100 && random() * 100 >= percent) || req.upgrade !== undefined) return next(req, ctx);
      const body = req.body;
      if (body !== null && body.length > maxBody) {
        report(route, 'too_large');
        return next(req, ctx);
      }
      if (inFlight >= maxInFlight) {
        report(route, 'overflow');
        return next(req, ctx);
      }
      inFlight++;
      const copy: ProxyRequest = { method: req.method, path: req.path, authority: shadowAuthority(req.authority), headers: req.headers.slice(), body: null };
      if (body === null) {
        send(copy, ctx);
        return next(req, ctx);
      }
      req.body = teeBody(body, maxBody, (whole, trailers) => {
        copy.body = whole === null ? null : bodyOf(whole, body.length, trailers);
        if (whole === null) {
          report(route, trailers === null ? 'failed' : 'too_large');
          release();
          return;
        }
        send(copy, ctx);
      });
      return next(req, ctx);
    };
}

/** A complete body from copied chunks, keeping the original framing (a known length or chunked) and trailers. */
function bodyOf(chunks: Buffer[], length: number, trailers: string[] | null): Body {
  const b = new Body(length);
  for (const c of chunks) b.push(c);
  b.end(trailers);
  return b;
}

/** The `trailers` argument of `onComplete` when the copy was dropped for size rather than failure. */
const TOO_LARGE: string[] = [];

/**
 * The body the real backend reads: the source's bytes as they come, copied on the side (up to
 * `max` bytes). `onComplete` is called once: with the chunks and trailers when the source ended, or
 * with null chunks when it did not (trailers null: it failed or was abandoned; TOO_LARGE: above `max`).
 */
function teeBody(source: Body, max: number, onComplete: (chunks: Buffer[] | null, trailers: string[] | null) => void): Body {
  let chunks: Buffer[] | null = [];
  let bytes = 0;
  let full = false;
  let called = false;
  const complete = (c: Buffer[] | null, trailers: string[] | null): void => {
    if (called) return;
    called = true;
    chunks = null;
    onComplete(c, trailers);
  };
  const out = new Body(source.length, {
    pause: () => {
      full = true;
    },
    resume: () => {
      full = false;
      source.resume();
    },
    abort: (err) => {
      // The real backend gave up on the body: the copy can never be complete.
      complete(null, null);
      if (!source.done) source.abort(err);
    },
  });
  source.pipe({
    data: (chunk) => {
      if (chunks !== null) {
        bytes += chunk.length;
        if (bytes > max) complete(null, TOO_LARGE);
        else chunks.push(chunk);
      }
      out.push(chunk);
      return !full;
    },
    end: (trailers) => {
      if (chunks !== null) complete(chunks, trailers);
      out.end(trailers);
    },
    error: (err) => {
      complete(null, null);
      out.fail(err);
    },
  });
  return out;
}
