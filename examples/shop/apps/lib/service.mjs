// What every shop server has in common: PORT from the environment, JSON replies, /healthz, 404s,
// turning failed downstream calls into 502s, trace header propagation and a prompt, clean shutdown.
// Each app only lists its routes.
import http from 'node:http';
import { UpstreamError } from './http-client.mjs';

// The mesh can only stitch a request's hops into one trace if each service copies these headers from
// the request it received onto the calls it makes (the same list Istio's bookinfo forwards).
export const TRACE_HEADERS = [
  'x-request-id',
  'traceparent',
  'tracestate',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
  'b3',
];

const SHUTDOWN_GRACE_MS = 2000;

/** The trace headers present on an incoming request, ready to pass to getJson(). */
export function traceHeaders(req) {
  const out = {};
  for (const name of TRACE_HEADERS) {
    if (req.headers[name] !== undefined) out[name] = req.headers[name];
  }
  return out;
}

/** A route result for "no such thing here". */
export function notFound(service, message) {
  return { status: 404, body: { error: message, service } };
}

function readPort(name) {
  const raw = process.env.PORT;
  if (raw === undefined || raw.trim() === '') fatal(`${name}: env PORT is required (e.g. PORT=8080)`);
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fatal(`${name}: env PORT must be a port number 0-65535, got "${raw}"`);
  return port;
}

function fatal(message) {
  console.error(message);
  process.exit(1);
}

function sendJson(res, status, body, headers) {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Start the server `name` on 127.0.0.1:$PORT.
 * routes: [{ method, path: RegExp, handle({ params, headers, req }) → { status?, body, headers? } }]
 *   params are the regexp's capture groups; headers are the trace headers to forward downstream.
 * options.headers: response headers added to every reply (e.g. a version marker).
 */
export function serve(name, routes, { headers: commonHeaders = {} } = {}) {
  const port = readPort(name);
  const table = [{ method: 'GET', path: /^\/healthz$/, handle: () => ({ body: { ok: true } }) }, ...routes];
  let stopping = false;

  const server = http.createServer(async (req, res) => {
    const reply = (status, body, headers = {}) =>
      // While shutting down, ask keep-alive clients to go away after this response, so the
      // connection closes as soon as it is done instead of holding server.close() open.
      sendJson(res, status, body, { ...commonHeaders, ...headers, ...(stopping ? { connection: 'close' } : {}) });

    // Origin-form is the norm, but tolerate an absolute-form request line too.
    const pathname = req.url.startsWith('/') ? req.url.split('?')[0] : safePath(req.url);
    const matching = table.filter((route) => route.path.test(pathname));
    if (matching.length === 0) return reply(404, { error: `no route for ${pathname}`, service: name });
    const route = matching.find((r) => r.method === req.method);
    if (!route) {
      return reply(405, { error: `${req.method} not allowed on ${pathname}`, service: name }, { allow: [...new Set(matching.map((r) => r.method))].join(', ') });
    }

    try {
      const params = pathname.match(route.path).slice(1).map(decodeSegment);
      const out = await route.handle({ params, headers: traceHeaders(req), req });
      reply(out.status ?? 200, out.body, out.headers);
    } catch (err) {
      if (err instanceof UpstreamError) {
        reply(502, { error: err.message, service: name, upstream: err.upstream, status: err.status });
      } else {
        // A bug in this app, not a failure downstream: say so, and keep serving.
        console.error(`${name}: ${req.method} ${req.url}: ${err.stack ?? err}`);
        reply(500, { error: 'internal error', service: name });
      }
    }
  });

  server.on('error', (err) => fatal(`${name}: cannot listen on 127.0.0.1:${port}: ${err.message}`));
  server.listen(port, '127.0.0.1', () => console.log(`${name} listening on 127.0.0.1:${server.address().port}`));

  const shutdown = () => {
    if (stopping) process.exit(0); // a second signal means "now"
    stopping = true;
    // Exit explicitly: the client's keep-alive sockets would otherwise keep the process alive.
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    // A slow in-flight request must not hold up a rollout; give up waiting after the grace period.
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  return server;
}

function safePath(url) {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // malformed %-escapes: let the route treat it as an unknown id
  }
}
