/**
 * Route retries (Gateway API HTTPRouteRetry, GEP-1731, and Weft's GRPCRoute retry): a retriable
 * outcome — a status in `codes`, a trailers-only gRPC answer with a status in `grpcCodes`, or (with
 * `onConnectFailure`) a connect failure or reset before any response byte — is sent again
 * after a jittered backoff, through a fresh endpoint pick, while attempts are left and the
 * destination's retry budget allows. Only idempotent methods unless the route allows others; a
 * request body is replayed from a bounded copy taken while it is first sent, and a body larger than
 * that, or not complete when the retry is due, is not retried. The rule's `timeouts.request` layer
 * sits outside and bounds all tries; `timeouts.backendRequest` bounds each try.
 */
import { isMeshError } from '../../core/errors.js';
import type { RetryPolicy } from '../../model/snapshot.js';
import { Body } from '../body.js';
import { getHeader, type Handler, type Layer, type ProxyRequest, type ProxyResponse, type RequestContext } from '../message.js';
import type { RetryBudgetBucket } from '../upstream/retry-budget.js';
import type { CircuitBreaker } from '../upstream/breaker.js';

/** The most request body bytes kept for a replay. */
export const MAX_REPLAY_BYTES = 64 * 1024;

/** RFC 9110 9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export type RetryResult = 'retried' | 'budget_exhausted' | 'attempts_exhausted' | 'circuit_open';

export interface RetryDeps {
  /** The `destination_service` label: the backend Service whose budget the retries draw on. */
  destination: string;
  /** Counts an outcome: `weft_retries_total{destination_service,result}`. */
  report: (destination: string, result: RetryResult) => void;
  /**
   * The destination cluster's circuit breaker: a retry is sent only while fewer than its
   * `maxRetries` retries are in flight (from the decision to retry until that try's response head
   * or failure); otherwise it is not sent and counted `result="circuit_open"`.
   */
  breaker?: CircuitBreaker;
  /** Waits before a retry; resolves early (to false) when the exchange is given up. Tests replace it. */
  sleep?: (ms: number, ctx: RequestContext) => Promise<void>;
  random?: () => number;
}

/** Exponential growth of the jitter window stops at this many times `backoff`. */
const MAX_BACKOFF_FACTOR = 10;

/** Waits `ms`, or less when the exchange is aborted meanwhile. */
function abortableSleep(ms: number, ctx: RequestContext): Promise<void> {
  if (ms <= 0 || ctx.aborted !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    ctx.abortHandlers.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * The request body, copied (up to MAX_REPLAY_BYTES) as it flows to the first try, so later tries
 * can send it again. Backpressure from the first try's consumer reaches the client.
 */
class ReplayBody {
  private readonly source: Body;
  private chunks: Buffer[] | null = [];
  private bytes = 0;
  private ended = false;
  private trailers: string[] | null = null;
  private failed = false;

  constructor(source: Body) {
    this.source = source;
  }

  /** The body for the first try: the source's bytes, as they come. */
  first(): Body {
    const source = this.source;
    let full = false;
    const out = new Body(source.length, {
      pause: () => {
        full = true;
      },
      resume: () => {
        full = false;
        source.resume();
      },
      abort: (err) => {
        // The try gave up on the body; without all of it there is nothing to replay.
        if (!source.done) {
          this.failed = true;
          this.chunks = null;
          source.abort(err);
        }
      },
    });
    source.pipe({
      data: (chunk) => {
        if (this.chunks !== null) {
          this.bytes += chunk.length;
          if (this.bytes > MAX_REPLAY_BYTES) this.chunks = null;
          else this.chunks.push(chunk);
        }
        out.push(chunk);
        return !full;
      },
      end: (trailers) => {
        this.ended = true;
        this.trailers = trailers;
        out.end(trailers);
      },
      error: (err) => {
        this.failed = true;
        this.chunks = null;
        out.fail(err);
      },
    });
    return out;
  }

  /** True when the whole body is held, so another try can send it. */
  get replayable(): boolean {
    return this.ended && !this.failed && this.chunks !== null;
  }

  /** A fresh copy for another try (only when `replayable`). */
  again(): Body {
    const b = new Body(this.source.length);
    for (const c of this.chunks!) b.push(c);
    b.end(this.trailers);
    return b;
  }

  /** No more tries: stop copying. */
  release(): void {
    this.chunks = null;
  }
}

/** Builds the retry layer of one route backend; `budget` is the destination cluster's. */
export function retryLayer(policy: RetryPolicy, budget: RetryBudgetBucket, deps: RetryDeps): Layer {
  const codes = new Set(policy.codes);
  const grpcCodes = new Set(policy.grpcCodes ?? []);
  const sleep = deps.sleep ?? abortableSleep;
  const random = deps.random ?? Math.random;
  const report = (result: RetryResult): void => deps.report(deps.destination, result);
  const breaker = deps.breaker ?? null;
  const { attempts, backoffMs, onConnectFailure, allowNonIdempotent } = policy;

  /**
   * A status in `codes`; or, for a GRPCRoute, a trailers-only answer (its `grpc-status` in the head:
   * the call failed before any message) with a code in `grpcCodes`. A status in trailers after
   * messages is not retried: the caller may have acted on those messages (as Envoy and gRPC do).
   */
  const retriableResponse = (res: ProxyResponse): boolean => {
    if (res.upgraded !== undefined) return false;
    if (codes.has(res.status)) return true;
    if (grpcCodes.size === 0) return false;
    const status = getHeader(res.headers, 'grpc-status');
    return status !== undefined && grpcCodes.has(Number(status));
  };

  const retriableError = (err: unknown): boolean =>
    onConnectFailure && isMeshError(err) && (err.code === 'UPSTREAM_CONNECT_FAILURE' || err.code === 'UPSTREAM_RESET');

  /** Full jitter over a window that doubles per retry, never below `backoff` (GEP-1731's minimum). */
  const delay = (retry: number): number => backoffMs + random() * backoffMs * Math.min(MAX_BACKOFF_FACTOR, 2 ** (retry - 1));

  return (next: Handler): Handler => {
    const run = async (req: ProxyRequest, ctx: RequestContext): Promise<ProxyResponse> => {
      const headers = req.headers.slice();
      const replay = req.body === null ? null : new ReplayBody(req.body);
      let body = replay === null ? null : replay.first();
      /** True while this exchange holds one of the breaker's retry slots. */
      let holding = false;
      try {
        for (let retry = 0; ; retry++) {
          let res: ProxyResponse | null = null;
          let error: unknown = null;
          try {
            res = await next({ ...req, headers: retry === 0 ? req.headers : headers.slice(), body }, ctx);
          } catch (err) {
            error = err;
          }
          if (holding) {
            holding = false;
            breaker!.releaseRetry();
          }
          const retriable = res !== null ? retriableResponse(res) : retriableError(error);
          let again = retriable && ctx.aborted === null && (replay === null || replay.replayable);
          if (again && retry >= attempts) {
            report('attempts_exhausted');
            again = false;
          }
          if (again && breaker !== null) {
            if (breaker.admitRetry()) holding = true;
            else {
              report('circuit_open');
              again = false;
            }
          }
          if (again && !budget.withdraw()) {
            report('budget_exhausted');
            again = false;
          }
          if (!again && holding) {
            holding = false;
            breaker!.releaseRetry();
          }
          if (!again) {
            if (res !== null) return res;
            throw error;
          }
          report('retried');
          res?.body?.abort(new Error('response discarded: the request is retried'));
          await sleep(delay(retry + 1), ctx);
          if (ctx.aborted !== null) throw ctx.aborted;
          body = replay === null ? null : replay.again();
        }
      } finally {
        if (holding) breaker!.releaseRetry();
        replay?.release();
      }
    };
    return (req, ctx) => {
      budget.deposit();
      if (req.upgrade !== undefined || (!allowNonIdempotent && !IDEMPOTENT.has(req.method))) return next(req, ctx);
      if (req.body !== null && req.body.length > MAX_REPLAY_BYTES) return next(req, ctx);
      return run(req, ctx);
    };
  };
}
