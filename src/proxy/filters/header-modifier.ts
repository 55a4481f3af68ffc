/** Gateway API RequestHeaderModifier / ResponseHeaderModifier: set, add, remove fields. */
import type { HeaderModifier } from '../../model/snapshot.js';
import { removeHeader, type Layer } from '../message.js';

/** Applies a modifier to a header list in place. */
export function modifierFn(m: HeaderModifier): (headers: string[]) => void {
  const { set, add, remove } = m;
  return (headers) => {
    for (const name of remove) removeHeader(headers, name);
    for (const { name, value } of set) {
      removeHeader(headers, name);
      headers.push(name, value);
    }
    for (const { name, value } of add) headers.push(name, value);
  };
}

/** A layer that modifies request headers before the request goes on. */
export function requestHeaderModifier(m: HeaderModifier): Layer {
  const apply = modifierFn(m);
  return (next) => (req, ctx) => {
    apply(req.headers);
    return next(req, ctx);
  };
}

/** A layer that modifies the headers of every response, mesh-generated ones included. */
export function responseHeaderModifier(mods: readonly HeaderModifier[]): Layer {
  const fns = mods.map(modifierFn);
  return (next) => (req, ctx) =>
    next(req, ctx).then((res) => {
      for (const f of fns) f(res.headers);
      return res;
    });
}
