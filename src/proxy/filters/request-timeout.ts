/**
 * Gateway API `timeouts.request`: the whole exchange, until the response body has ended. Before the
 * response head the caller gets UPSTREAM_TIMEOUT; after it, the body fails and the connection resets.
 */
import { MeshError } from '../../core/errors.js';
import { abortContext, type Layer } from '../message.js';

/** A layer bounding the whole exchange to `ms`. */
export function requestTimeout(ms: number): Layer {
  return (next) => (req, ctx) =>
    new Promise((resolve, reject) => {
      let answered = false;
      let expired: MeshError | null = null;
      const timer = setTimeout(() => {
        expired = new MeshError('UPSTREAM_TIMEOUT', `request did not complete within ${ms} ms`);
        if (!answered) reject(expired);
        abortContext(ctx, expired);
      }, ms);
      next(req, ctx).then(
        (res) => {
          if (expired !== null && !answered) {
            // Too late: the caller already has its 504. Release the upstream's body.
            res.body?.abort(expired);
            return;
          }
          answered = true;
          if (res.body === null || res.body.done) clearTimeout(timer);
          else res.body.onSettled(() => clearTimeout(timer));
          resolve(res);
        },
        (err) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
}
