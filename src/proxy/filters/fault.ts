/**
 * Fault injection (an HTTPRoute rule's ExtensionRef to an HTTPFault): for `delay.percentage` of
 * requests, hold the request `delay.ms` before it goes on (given up early when the exchange is);
 * then, for `abort.percentage` of requests, answer at once with the configured status as the coded
 * mesh error FAULT_INJECTED instead of forwarding. The two draws are independent, as in Envoy.
 */
import { MeshError } from '../../core/errors.js';
import type { FaultConfig } from '../../model/snapshot.js';
import type { Handler, Layer, ProxyRequest, RequestContext } from '../message.js';

export type FaultKind = 'delay' | 'abort';
/** Counts an injected fault: `weft_faults_injected_total{route,kind}`. */
export type FaultReport = (route: string, kind: FaultKind) => void;

export interface FaultDeps {
  /** The `route` label. */
  route: string;
  report: FaultReport;
  /** Uniform in [0, 1); tests seed it. */
  random?: () => number;
}

/** Waits `ms`, or less when the exchange is given up meanwhile. */
function abortableSleep(ms: number, ctx: RequestContext): Promise<void> {
  if (ctx.aborted !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      const i = ctx.abortHandlers.indexOf(done);
      if (i >= 0) ctx.abortHandlers.splice(i, 1);
      resolve();
    };
    const timer = setTimeout(done, ms);
    ctx.abortHandlers.push(done);
  });
}

function refuse(req: ProxyRequest, err: Error): Promise<never> {
  req.body?.abort(err);
  return Promise.reject(err);
}

/** The layer of one resolved HTTPFault; built once per configuration. */
export function faultLayer(fault: FaultConfig, deps: FaultDeps): Layer {
  const random = deps.random ?? Math.random;
  const { delay, abort } = fault;
  const { route, report } = deps;
  const hit = (percentage: number): boolean => percentage >= 100 || (percentage > 0 && random() * 100 < percentage);
  return (next: Handler): Handler => {
    const afterDelay: Handler =
      abort === null || abort.percentage <= 0
        ? next
        : (req, ctx) => {
            if (!hit(abort.percentage)) return next(req, ctx);
            report(route, 'abort');
            return refuse(req, new MeshError('FAULT_INJECTED', `fault injected: abort with ${abort.status} (${abort.percentage}% of requests)`, { status: abort.status }));
          };
    if (delay === null || delay.percentage <= 0 || delay.ms <= 0) return afterDelay;
    return async (req, ctx) => {
      if (!hit(delay.percentage)) return afterDelay(req, ctx);
      report(route, 'delay');
      await abortableSleep(delay.ms, ctx);
      if (ctx.aborted !== null) return refuse(req, ctx.aborted);
      return afterDelay(req, ctx);
    };
  };
}

/** The layer of an ExtensionRef whose HTTPFault does not exist: the filter cannot apply, so the rule answers 500. */
export function unresolvedFault(ref: string, routeName: string): Layer {
  return () => (req) => refuse(req, new MeshError('INVALID_BACKEND', `route ${routeName} refers to HTTPFault ${ref}, which does not exist`));
}
