// The API client: every call carries the admin token from this tab's session storage.

const KEY = 'weft.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

/** The API refused the token (or there is none). */
export class Unauthorized extends Error {}

let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

async function call(path, init = {}) {
  const res = await fetch(path, { ...init, cache: 'no-store', headers: { authorization: `Bearer ${token() ?? ''}`, ...(init.headers ?? {}) } });
  if (res.status === 401) {
    onUnauthorized();
    throw new Unauthorized('the admin token was refused');
  }
  return res;
}

async function failure(path, res) {
  let message = `HTTP ${res.status}`;
  try {
    message = (await res.json()).error?.message ?? message;
  } catch {
    // not JSON: keep the status
  }
  return new Error(`${path}: ${message}`);
}

/** GET a JSON resource; throws with the API's message on any error. */
export async function get(path) {
  const res = await call(path);
  if (!res.ok) throw await failure(path, res);
  return res.json();
}

/** GET a JSON resource that this control plane may not serve: null on 404. */
export async function maybe(path) {
  const res = await call(path);
  if (res.status === 404) return null;
  if (!res.ok) throw await failure(path, res);
  return res.json();
}

/** Opens an NDJSON stream and calls `onItem` per line until it ends or `signal` aborts. */
export async function stream(path, signal, onItem) {
  const res = await call(path, { signal });
  if (!res.ok) throw await failure(path, res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line !== '') onItem(JSON.parse(line));
    }
  }
}
