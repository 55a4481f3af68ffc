// The one HTTP client every shop app uses to call another service.
//
// The apps know nothing of the mesh: they call `http://catalog/products` by plain service name and
// honour HTTP_PROXY like any proxy-aware client. With a proxy set, the request goes to the proxy in
// absolute-form (request line `GET http://catalog/products HTTP/1.1`, `Host: catalog`), which is all
// a mesh sidecar needs to route it. Without one, we connect to the URL's host directly.
import http from 'node:http';

export const DEFAULT_TIMEOUT_MS = 3000;

// One keep-alive pool per process. Through a proxy every request shares the proxy's pool, so 64
// sockets caps what this process can have open to its sidecar; more requests wait for a socket.
export const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** A call that did not produce a usable answer. `status` is the upstream's HTTP status, or null if none came back. */
export class UpstreamError extends Error {
  constructor(message, { upstream, status = null, code = 'error', cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'UpstreamError';
    this.upstream = upstream; // the service name we called, e.g. "catalog"
    this.status = status;
    this.code = status === null ? code : String(status); // "timeout", "ECONNREFUSED", "502", ...
  }
}

const proxy = proxyFromEnv();

/** The proxy in use, with any credentials hidden, or null. For log lines. */
export const proxyUrl = proxy ? `http://${proxy.host}` : null;

function proxyFromEnv() {
  const raw = process.env.HTTP_PROXY || process.env.http_proxy;
  if (!raw) return null;
  // Accept the bare `host:port` form that many tools tolerate, as well as `http://host:port`.
  let url;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new Error(`HTTP_PROXY is not a valid URL: "${raw}"`);
  }
  if (url.protocol !== 'http:') throw new Error(`HTTP_PROXY must be an http:// URL, got "${raw}"`);
  return url;
}

/**
 * Send one request and buffer the whole response.
 * Resolves with `{ status, headers, body }` for any HTTP status; rejects with an UpstreamError on a
 * connection error, a reset mid-response, or when `timeoutMs` passes (covering connect, waiting for a
 * socket from the pool, and reading the body), after aborting the request.
 */
export function request(target, { method = 'GET', headers = {}, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const url = new URL(target);
  const upstream = url.hostname;
  if (url.protocol !== 'http:') {
    return Promise.reject(new UpstreamError(`only http:// URLs are supported, got ${target}`, { upstream }));
  }

  const options = proxy
    ? {
        // WHATWG URLs keep the brackets of an IPv6 literal in hostname; node:http wants them off.
        host: proxy.hostname.replace(/^\[|\]$/g, ''),
        port: proxy.port || 80,
        path: url.href, // absolute-form: the proxy learns the destination from here and from Host
        headers: { ...headers, host: url.host, ...proxyAuth() },
      }
    : { host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port || 80, path: url.pathname + url.search, headers };

  return new Promise((resolve, reject) => {
    let res;
    // Settling twice is harmless (a promise keeps its first outcome), so every failure path just calls fail().
    const fail = (err) => {
      clearTimeout(timer);
      if (err instanceof UpstreamError) return reject(err);
      const code = err.code ?? 'error';
      reject(new UpstreamError(`${upstream} unreachable: ${err.code ?? err.message}`, { upstream, code, cause: err }));
    };
    const timer = setTimeout(() => {
      const err = new UpstreamError(`${upstream} timed out after ${timeoutMs} ms`, { upstream, code: 'timeout' });
      req.destroy(err);
      res?.destroy(err);
      fail(err); // do not rely on destroy() emitting: reject here so the caller always hears back
    }, timeoutMs);

    const req = http.request({ ...options, method, agent }, (response) => {
      res = response;
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', fail);
      // A socket that closes mid-body does not always surface as 'error'; catch it here.
      res.on('close', () => {
        if (!res.complete) fail(new UpstreamError(`${upstream} closed the connection mid-response`, { upstream, code: 'ECONNRESET' }));
      });
    });
    req.on('error', fail);
    req.end();
  });
}

/**
 * GET a JSON document. Anything but a 2xx answer with a JSON body is an UpstreamError, so callers can
 * write the happy path and let the server turn the error into a 502.
 */
export async function getJson(target, options = {}) {
  const res = await request(target, { ...options, method: 'GET', headers: { accept: 'application/json', ...options.headers } });
  const upstream = new URL(target).hostname;
  if (res.status < 200 || res.status >= 300) {
    // Carry the upstream's own error message along: "catalog answered 502: reviews timed out" beats "502".
    let detail = '';
    try {
      const inner = JSON.parse(res.body).error;
      if (typeof inner === 'string') detail = `: ${inner}`;
    } catch {}
    throw new UpstreamError(`${upstream} answered ${res.status}${detail}`, { upstream, status: res.status });
  }
  try {
    return JSON.parse(res.body);
  } catch {
    throw new UpstreamError(`${upstream} answered ${res.status} with a body that is not JSON`, { upstream, status: res.status });
  }
}

function proxyAuth() {
  if (!proxy.username) return {};
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}
