/** Gateway API RequestRedirect: the proxy answers with a 3xx and a Location. */
import type { Redirect } from '../../model/snapshot.js';
import { Body } from '../body.js';
import type { Handler } from '../message.js';
import { rewritePath } from './url-rewrite.js';

/** A terminal handler answering every request with the configured redirect. */
export function redirectHandler(r: Redirect): Handler {
  return (req) => {
    const scheme = r.scheme ?? 'http';
    const colon = req.authority.lastIndexOf(':');
    const reqHost = colon > req.authority.lastIndexOf(']') && colon !== -1 ? req.authority.slice(0, colon) : req.authority;
    const host = r.hostname ?? reqHost;
    // A scheme change without an explicit port goes to that scheme's well-known port.
    const port = r.port ?? (r.scheme !== null ? null : portOf(req.authority));
    const defaultPort = scheme === 'https' ? 443 : 80;
    const authority = port === null || port === defaultPort ? host : `${host}:${port}`;
    const path = r.path === null ? req.path : rewritePath(req.path, r.path);
    req.body?.abort(new Error('redirected'));
    return Promise.resolve({ status: r.statusCode, headers: ['location', `${scheme}://${authority}${path}`], body: Body.of(Buffer.alloc(0)) });
  };
}

function portOf(authority: string): number | null {
  const m = /:(\d+)$/.exec(authority);
  return m === null ? null : Number(m[1]);
}
