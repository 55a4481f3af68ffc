/**
 * The control plane's HTTP JSON API, for the CLI and the dashboard, and the door of the config
 * stream (an HTTP Upgrade on the same port). Errors are JSON `{ "error": { "code", "message" } }`;
 * an apply answers 422 with every problem of every document, while the valid documents still apply.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { STREAM_PROTOCOL, formatResourceError, loadResources, type ResourceError } from '../../model/index.js';
import type { Resource } from '../../model/resources.js';
import { ConflictError, resourceKey, type ApplyAction, type IndexedResource, type IndexEvent, type ResourceIndex } from '../resource-index.js';
import type { CertificateAuthority } from '../ca/certificate-authority.js';
import { TokenError, type JoinTokens } from '../ca/join-tokens.js';
import type { ConfigServer } from '../serve/config-server.js';
import { parseDuration } from '../../model/index.js';
import type { FileProblems } from '../sources/config-dir.js';
import { TLS_HANDSHAKE, onFirstByte } from '../../core/first-byte.js';
import type { ControlPlaneCertificate } from '../ca/control-plane-certificate.js';
import type { AdminToken } from './admin-token.js';
import type { TraceStore } from '../telemetry/trace-store.js';
import type { StatsStore } from '../telemetry/stats-store.js';
import type { TapHub } from '../telemetry/tap-hub.js';
import type { EndpointHealthStore } from '../telemetry/endpoint-health-store.js';
import { StatsQueryError, statsQuery, tapStream } from '../telemetry/stats-api.js';
import { isDashboardPath, serveDashboard } from '../dashboard/serve.js';

const MAX_BODY = 8 << 20;

/** What the API reads from the rest of the control plane. */
export interface ApiContext {
  index: ResourceIndex;
  config: ConfigServer;
  version: string;
  fileProblems: () => FileProblems[];
  metrics: () => string;
  ca: CertificateAuthority;
  tokens: JoinTokens;
  /** Required on every call but health, metrics and the metrics targets. */
  adminToken: AdminToken;
  /** The TLS side of the port (proxies' mTLS streams, HTTPS callers); null: plaintext only. */
  tls: ControlPlaneCertificate | null;
  /** Recent spans: `POST /v1/traces` (OTLP/HTTP JSON) fills it, `GET /api/v1/traces` reads it; absent: no trace API. */
  traces?: TraceStore;
  /** The golden signals' rolling window (`GET /api/v1/stats…`) and live taps (`GET /api/v1/tap`); absent: no such API. */
  stats?: StatsStore;
  taps?: TapHub;
  /** Endpoint health the proxies report (`GET /api/v1/endpoints`); absent: no such API. */
  endpointHealth?: EndpointHealthStore;
}

/** A started API: its port, and how to stop it (every connection closed). */
export interface RunningApi {
  port: number;
  close(): Promise<void>;
}

/** How long a connection may take to send its first byte, or to finish a TLS handshake. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/** The result of applying one document. */
export interface ApplyResult {
  kind: string;
  namespace: string;
  name: string;
  action: ApplyAction | 'refused';
}

/** A resource error as the API returns it: the fields, and the line a person reads. */
export type ApiResourceError = ResourceError & { text: string };

class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Starts the API on `port` (0 = chosen by the OS). One port speaks plaintext HTTP and TLS, told apart
 * by the first byte (a TLS record starts with 0x16): the TLS side asks for a client certificate, so a
 * proxy's config stream authenticates with its SVID, while HTTPS callers without one still reach the
 * API (which wants the admin token either way).
 */
export async function startApi(host: string, port: number, ctx: ApiContext): Promise<RunningApi> {
  const server = createServer((req, res) => {
    handle(req, res, ctx).catch((err: unknown) => {
      const e = err instanceof HttpError ? err : new HttpError(500, 'INTERNAL', (err as Error).message);
      if (!res.headersSent) json(res, e.status, { error: { code: e.code, message: e.message } }, e.status === 401 ? { 'www-authenticate': 'Bearer realm="weft"' } : {});
      else res.destroy();
    });
  });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/api/v1/stream' || req.headers.upgrade?.toLowerCase() !== STREAM_PROTOCOL) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    try {
      ctx.config.accept(req, socket, head);
    } catch (err) {
      socket.destroy(err as Error);
    }
  });
  server.keepAliveTimeout = 65_000;
  let tls: { generation: number; server: TlsServer } | null = null;
  const tlsServer = (): TlsServer => {
    const o = ctx.tls!.options();
    if (tls !== null && tls.generation === o.generation) return tls.server;
    // The chain check's verdict is read by the config stream (authorized or not); API calls need the admin token anyway.
    const s = createTlsServer({ key: o.key, cert: o.cert, ca: o.ca, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false, handshakeTimeout: FIRST_BYTES_TIMEOUT_MS });
    s.on('secureConnection', (t: TLSSocket) => server.emit('connection', t));
    s.on('tlsClientError', (_err, t: TLSSocket) => t.destroy());
    tls = { generation: o.generation, server: s };
    return s;
  };
  const raw = new Set<Socket>();
  const listener = createTcpServer((socket) => {
    raw.add(socket);
    socket.once('close', () => raw.delete(socket));
    if (ctx.tls === null) return server.emit('connection', socket);
    onFirstByte(socket, FIRST_BYTES_TIMEOUT_MS, (first) => {
      if (first !== TLS_HANDSHAKE) {
        server.emit('connection', socket);
        socket.resume();
        return;
      }
      try {
        tlsServer().emit('connection', socket);
      } catch {
        socket.destroy(); // no certificate can be made (e.g. the CA cannot sign): plaintext still works
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(port, host, () => resolve());
  });
  return {
    port: (listener.address() as AddressInfo).port,
    close: async () => {
      const closed = new Promise((r) => listener.close(r));
      server.closeAllConnections();
      for (const s of raw) s.destroy();
      await closed;
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'TOO_LARGE', `request body over ${MAX_BODY} bytes`);
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts).toString('utf8');
}

async function handle(req: IncomingMessage, res: ServerResponse, ctx: ApiContext): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  const parts = url.pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
  const method = req.method ?? 'GET';
  const route = `${method} /${parts.slice(0, 3).join('/')}`;
  if (method === 'GET' && url.pathname === '/metrics') {
    const text = ctx.metrics();
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  if (method === 'GET' && url.pathname === '/metrics/targets') {
    // Prometheus HTTP service discovery: every connected proxy's admin listener, and this port itself.
    const self = { targets: [req.headers.host ?? `127.0.0.1:${req.socket.localPort ?? 0}`], labels: { job: 'weft-control' } };
    const text = JSON.stringify([self, ...ctx.config.scrapeTargets()]);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  if (url.pathname === '/v1/traces' && ctx.traces !== undefined) return receiveTraces(req, res, ctx, ctx.traces);
  // The dashboard's files are public; the API calls it makes need the admin token like any other.
  if (isDashboardPath(url.pathname)) return serveDashboard(req, res, url.pathname);
  if (parts[0] !== 'api' || parts[1] !== 'v1') throw new HttpError(404, 'NOT_FOUND', `no such path: ${url.pathname}`);
  if (route !== 'GET /api/v1/health' && !ctx.adminToken.accepts(req.headers.authorization)) {
    throw new HttpError(
      401,
      'UNAUTHENTICATED',
      req.headers.authorization === undefined
        ? 'this API needs the admin token (authorization: Bearer <token>); the weft CLI reads WEFT_ADMIN_TOKEN, or the credentials "weft control" and "weft up" write when they start'
        : 'the admin token is not the one this control plane has (it is in admin-token in its data dir)',
    );
  }
  switch (route) {
    case 'GET /api/v1/stats':
    case 'GET /api/v1/tap': {
      if (ctx.stats === undefined || ctx.taps === undefined) throw new HttpError(404, 'NOT_FOUND', 'this control plane keeps no golden signals');
      try {
        if (parts[2] === 'tap' && parts.length === 3) return tapStream(req, res, url.searchParams, ctx.taps);
        if (parts[2] === 'tap') throw new HttpError(404, 'NOT_FOUND', `no such path: ${url.pathname}`);
        return json(res, 200, statsQuery(parts.slice(3), url.searchParams, ctx.stats));
      } catch (err) {
        if (err instanceof StatsQueryError) throw new HttpError(err.status, err.code, err.message);
        throw err;
      }
    }
    case 'GET /api/v1/traces': {
      if (ctx.traces === undefined) throw new HttpError(404, 'NOT_FOUND', 'this control plane keeps no traces');
      if (parts.length === 4) {
        const spans = ctx.traces.trace(parts[3]!);
        if (spans === null) throw new HttpError(404, 'NOT_FOUND', `trace ${parts[3]} not found (never received, or already evicted: the store keeps the last ${ctx.traces.maxSpans} spans)`);
        return json(res, 200, { traceId: parts[3]!.toLowerCase(), spans });
      }
      const q = url.searchParams;
      const number = (name: string): number | undefined => {
        const v = q.get(name);
        if (v === null) return undefined;
        if (!/^\d+(\.\d+)?$/.test(v)) throw new HttpError(400, 'BAD_REQUEST', `query parameter ${name}: ${JSON.stringify(v)} is not a number`);
        return Number(v);
      };
      const items = ctx.traces.list({ service: q.get('service') ?? undefined, minDurationMs: number('minDurationMs'), errors: q.get('errors') === 'true', limit: number('limit') });
      return json(res, 200, { items });
    }
    case 'GET /api/v1/health':
      return json(res, 200, { ok: true, version: ctx.version, generation: ctx.index.generation, proxies: ctx.config.connected, streamAuth: ctx.config.streamAuth });
    case 'POST /api/v1/apply':
      return apply(req, res, ctx, url);
    case 'GET /api/v1/resources': {
      if (parts.length === 3) {
        const items = ctx.index.list(url.searchParams.get('kind') ?? undefined, url.searchParams.get('namespace') ?? undefined);
        const errors = ctx.config.view().errorsByResource();
        return json(res, 200, { items: items.map((e) => withStatus(e, errors)) });
      }
      const e = ctx.index.get(keyFrom(parts));
      if (e === undefined) throw new HttpError(404, 'NOT_FOUND', `${keyFrom(parts)} not found`);
      return json(res, 200, withStatus(e, ctx.config.view().errorsByResource()));
    }
    case 'DELETE /api/v1/resources': {
      const key = keyFrom(parts);
      let deleted: boolean;
      try {
        deleted = await ctx.index.delete(key);
      } catch (err) {
        if (err instanceof ConflictError) throw new HttpError(409, 'CONFLICT', err.message);
        throw err;
      }
      if (!deleted) throw new HttpError(404, 'NOT_FOUND', `${key} not found`);
      return json(res, 200, { deleted: key });
    }
    case 'GET /api/v1/watch':
      return watch(req, res, ctx, url);
    case 'GET /api/v1/proxies': {
      if (parts.length === 3) return json(res, 200, { items: ctx.config.statuses() });
      if (parts.length === 6 && parts[5] === 'config') {
        const snapshot = ctx.config.proxyConfig(`${parts[3]}/${parts[4]}`);
        if (snapshot === null) throw new HttpError(404, 'NOT_FOUND', `no configuration for proxy ${parts[3]}/${parts[4]}`);
        const status = ctx.config.statuses().find((s) => s.id === `${parts[3]}/${parts[4]}`) ?? null;
        // The proxy's own view of endpoint health, as it last reported it (null: none on its current stream).
        const health = ctx.endpointHealth?.forProxy(`${parts[3]}/${parts[4]}`) ?? null;
        return json(res, 200, { snapshot, status, health });
      }
      throw new HttpError(404, 'NOT_FOUND', `no such path: ${url.pathname}`);
    }
    case 'POST /api/v1/tokens': {
      let body: { namespace?: unknown; serviceAccount?: unknown; ttl?: unknown };
      try {
        body = JSON.parse(await readBody(req)) as typeof body;
      } catch {
        throw new HttpError(400, 'BAD_REQUEST', 'body: expected JSON {"namespace","serviceAccount","ttl"}');
      }
      let ttlMs: number;
      try {
        ttlMs = parseDuration(String(body.ttl ?? '24h'));
      } catch (err) {
        throw new HttpError(422, 'INVALID', `ttl: ${(err as Error).message}`);
      }
      try {
        // With the pins a proxy joining over TLS may find presented: the root presented now, and the next one during a rotation (docs/identity.md).
        return json(res, 200, { ...(await ctx.tokens.create(String(body.namespace ?? 'default'), String(body.serviceAccount ?? 'default'), ttlMs)), caCertHashes: ctx.ca.pins().filter((p) => p.role === 'presented' || p.role === 'next').map((p) => p.pin) });
      } catch (err) {
        if (err instanceof TokenError) throw new HttpError(422, 'INVALID', err.message);
        throw err;
      }
    }
    case 'GET /api/v1/tokens':
      return json(res, 200, { items: ctx.tokens.list() });
    case 'DELETE /api/v1/tokens': {
      if (parts.length !== 4) throw new HttpError(400, 'BAD_PATH', 'expected /api/v1/tokens/<id>');
      if (!(await ctx.tokens.revoke(parts[3]!))) throw new HttpError(404, 'NOT_FOUND', `token ${parts[3]} not found`);
      ctx.config.tokenRevoked(parts[3]!);
      return json(res, 200, { revoked: parts[3] });
    }
    case 'GET /api/v1/certificates': {
      const proxies = ctx.config.statuses().filter((p) => p.certificate !== null || p.identityError !== null);
      return json(res, 200, {
        roots: ctx.ca.rootInfo(),
        rotation: ctx.ca.rotationPhase(),
        items: proxies.map((p) => ({ proxy: p.id, connected: p.connected, ...(p.certificate ?? {}), error: p.identityError })),
      });
    }
    case 'GET /api/v1/ca': {
      if (parts[3] !== 'pins' || parts.length !== 4) throw new HttpError(404, 'NOT_FOUND', `no route for ${method} ${url.pathname}`);
      return json(res, 200, { trustDomain: ctx.config.trustDomain(), pins: ctx.ca.pins() });
    }
    case 'POST /api/v1/ca': {
      if (parts[3] !== 'rotate' || parts.length !== 4) throw new HttpError(404, 'NOT_FOUND', `no route for ${method} ${url.pathname}`);
      // The rotation takes as long as the proxies need; its steps stream out as NDJSON.
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      req.socket.setTimeout(0);
      try {
        await ctx.config.rotateRoot((step) => res.write(JSON.stringify({ step }) + '\n'));
        res.end(JSON.stringify({ done: true, roots: ctx.ca.rootInfo() }) + '\n');
      } catch (err) {
        res.end(JSON.stringify({ error: (err as Error).message }) + '\n');
      }
      return;
    }
    case 'GET /api/v1/endpoints': {
      if (ctx.endpointHealth === undefined) throw new HttpError(404, 'NOT_FOUND', 'this control plane keeps no endpoint health');
      if (parts.length !== 3) throw new HttpError(404, 'NOT_FOUND', `no such path: ${url.pathname}`);
      const service = url.searchParams.get('service');
      if (service === null || service === '') throw new HttpError(400, 'BAD_REQUEST', 'query parameter service: required, as <namespace>/<name>');
      const [namespace, name] = service.includes('/') ? service.split('/', 2) : ['default', service];
      if (namespace === '' || name === '' || service.split('/').length > 2) throw new HttpError(400, 'BAD_REQUEST', `query parameter service: ${JSON.stringify(service)} is not <namespace>/<name>`);
      if (ctx.index.get(`Service/${namespace}/${name}`) === undefined) throw new HttpError(404, 'NOT_FOUND', `Service ${namespace}/${name} not found`);
      const ns = ctx.config.view().namespace(namespace!);
      const clusters = ns.clusters.value.map((c) => ({ config: c, endpoints: ns.endpoints.clusters.get(c.name)?.value ?? [] }));
      return json(res, 200, ctx.endpointHealth.serviceHealth(namespace!, name!, clusters));
    }
    case 'GET /api/v1/problems': {
      const errors = ctx.config.view().errorsByResource();
      const resources = [...errors].map(([key, list]) => ({ key, errors: list.map(toApiError) }));
      return json(res, 200, { resources, files: ctx.fileProblems() });
    }
    default:
      throw new HttpError(parts.length >= 3 && ['resources', 'proxies', 'apply', 'watch', 'health', 'problems', 'tokens', 'certificates', 'ca', 'stats', 'tap', 'endpoints'].includes(parts[2]!) ? 405 : 404, 'NOT_FOUND', `no route for ${method} ${url.pathname}`);
  }
}

function keyFrom(parts: string[]): string {
  if (parts.length !== 6) throw new HttpError(400, 'BAD_PATH', 'expected /api/v1/resources/<Kind>/<namespace>/<name>');
  return `${parts[3]}/${parts[4]}/${parts[5]}`;
}

function toApiError(e: ResourceError): ApiResourceError {
  return { ...e, text: formatResourceError(e) };
}

function withStatus(e: IndexedResource, errors: Map<string, ResourceError[]>): unknown {
  const list = errors.get(resourceKey(e.resource)) ?? [];
  const source = e.source.type === 'file' ? `file:${e.source.file}` : e.source.type;
  return { ...e.resource, status: { source, state: list.length === 0 ? 'Accepted' : 'Problems', errors: list.map(toApiError) } };
}

async function apply(req: IncomingMessage, res: ServerResponse, ctx: ApiContext, url: URL): Promise<void> {
  const body = await readBody(req);
  const file = url.searchParams.get('file');
  const dryRun = url.searchParams.get('dryRun') === 'true';
  const loaded = loadResources(asYaml(body, req.headers['content-type']), file);
  const results: ApplyResult[] = [];
  const errors: ApiResourceError[] = loaded.errors.map(toApiError);
  for (const e of loaded.errors) if (e.kind !== '' && e.name !== '') results.push({ kind: e.kind, namespace: e.namespace, name: e.name, action: 'refused' });
  const outcomes = await Promise.all(
    loaded.resources.map(async (r: Resource): Promise<ApplyResult> => {
      const id = { kind: r.kind, namespace: r.metadata.namespace, name: r.metadata.name };
      if (r.kind === 'App') {
        errors.push(toApiError({ ...id, file, line: null, path: 'kind', message: 'App resources are run by "weft up"; the control plane does not run processes' }));
        return { ...id, action: 'refused' };
      }
      try {
        return { ...id, action: await ctx.index.apply(r, dryRun) };
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        errors.push(toApiError({ ...id, file, line: null, path: '', message: err.message }));
        return { ...id, action: 'refused' };
      }
    }),
  );
  results.push(...outcomes);
  // Problems the compiler found in what was just applied: reported, but the resource is in force.
  const compiled = ctx.config.view().errorsByResource();
  const warnings = loaded.resources.flatMap((r) => (compiled.get(resourceKey(r)) ?? []).map(toApiError));
  json(res, errors.length > 0 ? 422 : 200, { results, errors, warnings, dryRun });
}

/** JSON arrays and `List` objects become multi-document YAML; anything else is read as YAML (JSON included). */
function asYaml(body: string, contentType: string | undefined): string {
  const trimmed = body.trimStart();
  if (!(contentType?.includes('json') ?? false) && !trimmed.startsWith('[')) return body;
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return body; // the YAML reader reports where the JSON is broken
  }
  const items = Array.isArray(value) ? value : (value as { kind?: unknown; items?: unknown }).kind === 'List' ? (value as { items: unknown[] }).items : [value];
  return items.map((i) => JSON.stringify(i, null, 1)).join('\n---\n');
}

function watch(req: IncomingMessage, res: ServerResponse, ctx: ApiContext, url: URL): void {
  const kind = url.searchParams.get('kind');
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  const send = (type: IndexEvent['type'], e: IndexedResource): void => {
    if (kind !== null && e.resource.kind !== kind) return;
    res.write(JSON.stringify({ type, resource: e.resource }) + '\n');
  };
  for (const e of ctx.index.list()) send('ADDED', e);
  res.write(JSON.stringify({ type: 'SYNCED' }) + '\n');
  const stop = ctx.index.onChange((events) => {
    for (const ev of events) send(ev.type, ev.entry);
  });
  req.socket.setTimeout(0);
  res.on('close', stop);
}

/**
 * `POST /v1/traces`: OTLP/HTTP with JSON encoding, answered as OTLP does (`partialSuccess` when some
 * spans were refused). Accepted from a mesh proxy over mutual TLS (a certificate of this mesh's CA)
 * or from anyone with the admin token; anything else is 401, like the rest of the API.
 */
async function receiveTraces(req: IncomingMessage, res: ServerResponse, ctx: ApiContext, traces: TraceStore): Promise<void> {
  if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', '/v1/traces takes POST (OTLP/HTTP)');
  const meshPeer = (req.socket as TLSSocket).encrypted === true && (req.socket as TLSSocket).authorized === true;
  if (!meshPeer && !ctx.adminToken.accepts(req.headers.authorization)) {
    throw new HttpError(401, 'UNAUTHENTICATED', '/v1/traces takes spans from mesh proxies (mutual TLS with a mesh certificate) or with the admin token (authorization: Bearer <token>)');
  }
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `content-type ${JSON.stringify(type)}: this receiver takes OTLP/HTTP with JSON encoding (application/json), not protobuf`);
  let body: unknown;
  try {
    body = JSON.parse(await readBody(req));
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, 'BAD_REQUEST', `the body is not JSON: ${(err as Error).message}`);
  }
  const r = traces.ingest(body);
  if (r.accepted === 0 && r.rejected === 0 && r.error !== '') throw new HttpError(400, 'BAD_REQUEST', r.error);
  json(res, 200, r.rejected === 0 ? {} : { partialSuccess: { rejectedSpans: String(r.rejected), errorMessage: r.error } });
}
