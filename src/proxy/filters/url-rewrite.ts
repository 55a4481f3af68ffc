/** Gateway API URLRewrite and the path arithmetic RequestRedirect shares with it. */
import type { PathRewrite } from '../../model/snapshot.js';
import type { Layer } from '../message.js';

/** Rewrites `path` (with its query) by a full replacement or by replacing the matched prefix. */
export function rewritePath(path: string, rw: PathRewrite): string {
  const q = path.indexOf('?');
  const pathOnly = q === -1 ? path : path.slice(0, q);
  const query = q === -1 ? '' : path.slice(q);
  if (rw.type === 'ReplaceFullPath') return rw.value + query;
  const prefix = rw.prefix.endsWith('/') && rw.prefix !== '/' ? rw.prefix.slice(0, -1) : rw.prefix;
  let rest = prefix === '/' ? pathOnly : pathOnly.slice(prefix.length);
  let replaced: string;
  if (rw.value === '/' || rw.value === '') replaced = rest === '' ? '/' : rest;
  else {
    const base = rw.value.endsWith('/') ? rw.value.slice(0, -1) : rw.value;
    if (rest !== '' && !rest.startsWith('/')) rest = `/${rest}`;
    replaced = base + rest;
  }
  return (replaced.startsWith('/') ? replaced : `/${replaced}`) + query;
}

/** A layer that rewrites the authority and/or path before forwarding. */
export function urlRewrite(hostname: string | null, path: PathRewrite | null): Layer {
  return (next) => (req, ctx) => {
    if (hostname !== null) req.authority = hostname;
    if (path !== null) req.path = rewritePath(req.path, path);
    return next(req, ctx);
  };
}
