/** The CLI verbs against the control plane: apply, get, delete, proxy-status, proxy-config, check. */
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import type { ApiResourceError } from '../control/api/api-server.js';
import type { ProxyStatus } from '../control/serve/config-server.js';
import { loadResources } from '../model/index.js';
import type { ProxySnapshot } from '../model/snapshot.js';
import type { ReportedCluster } from '../model/endpoint-health.js';
import { ApiError, api, serverUrl } from './api-client.js';
import { UsageError, duration, type Command } from './command.js';
import { age, table } from './table.js';
import { printCertificates, type CertificatesView } from './identity-commands.js';

const KINDS: Record<string, string> = {};
for (const [kind, aliases] of Object.entries({
  Mesh: ['mesh', 'meshes'],
  Service: ['service', 'services', 'svc'],
  Workload: ['workload', 'workloads', 'wl'],
  HTTPRoute: ['httproute', 'httproutes', 'route', 'routes'],
  GRPCRoute: ['grpcroute', 'grpcroutes'],
  TCPRoute: ['tcproute', 'tcproutes'],
  BackendPolicy: ['backendpolicy', 'backendpolicies'],
  AuthorizationPolicy: ['authorizationpolicy', 'authorizationpolicies', 'authz'],
  HTTPFault: ['httpfault', 'httpfaults', 'fault', 'faults'],
  RateLimitPolicy: ['ratelimitpolicy', 'ratelimitpolicies', 'ratelimit', 'ratelimits'],
})) {
  KINDS[kind.toLowerCase()] = kind;
  for (const a of aliases) KINDS[a] = kind;
}

function kindOf(word: string): string {
  const k = KINDS[word.toLowerCase()];
  if (k === undefined) throw new UsageError(`unknown kind "${word}"; one of: ${[...new Set(Object.values(KINDS))].join(', ')}`);
  return k;
}

function output(v: Record<string, unknown>, allowed = ['table', 'yaml', 'json']): string {
  const o = (v.output as string | undefined) ?? 'table';
  if (!allowed.includes(o)) throw new UsageError(`-o: "${o}" is not one of ${allowed.join(', ')}`);
  return o;
}

interface ApplyResponse {
  results: Array<{ kind: string; namespace: string; name: string; action: string }>;
  errors: ApiResourceError[];
  warnings: ApiResourceError[];
  dryRun: boolean;
}
type Stored = {
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string>; creationTimestamp?: string };
  spec: Record<string, unknown>;
  status: { source: string; state: string; errors: ApiResourceError[] };
};

const id = (r: { kind: string; namespace: string; name: string }): string => `${r.kind}/${r.namespace === 'default' ? '' : `${r.namespace}/`}${r.name}`;

export const applyCommand: Command = {
  summary: 'create or update resources from files',
  usage: 'weft apply -f FILE [-f FILE …] [--dry-run] [-o json]',
  options: {
    file: { type: 'string', short: 'f', multiple: true, default: [] },
    'dry-run': { type: 'boolean', default: false },
    output: { type: 'string', short: 'o' },
  },
  help: `Sends every document of every file to the control plane (WEFT_SERVER, default http://127.0.0.1:15010).
Valid resources apply even when others in the same file are refused; every refused one is listed with its
file, line and field. Exits 0 when all applied, 1 when any was refused. "-f -" reads standard input.`,
  run: async (v) => {
    const files = v.file as string[];
    if (files.length === 0) throw new UsageError('give at least one -f FILE');
    const o = output(v, ['table', 'json']);
    let failed = false;
    const all: ApplyResponse[] = [];
    for (const f of files) {
      const text = f === '-' ? readFileSync(0, 'utf8') : readFileSync(f, 'utf8');
      const q = new URLSearchParams({ file: f === '-' ? 'stdin' : f, ...(v['dry-run'] === true ? { dryRun: 'true' } : {}) });
      const { status, body } = await api<ApplyResponse>('POST', `/api/v1/apply?${q}`, { text, type: f.endsWith('.json') ? 'application/json' : 'application/yaml' });
      all.push(body);
      if (status !== 200) failed = true;
      if (o === 'table') {
        for (const r of body.results) if (r.action !== 'refused') console.log(`${id(r)} ${r.action}${body.dryRun ? ' (dry run)' : ''}`);
        for (const w of body.warnings) console.error(`warning: ${w.text}`);
        for (const e of body.errors) console.error(`error: ${e.text}`);
      }
    }
    if (o === 'json') console.log(JSON.stringify(all.length === 1 ? all[0] : all, null, 2));
    return failed ? 1 : 0;
  },
};

function summary(r: Stored): string {
  const s = r.spec as Record<string, any>; // a display summary over every kind; the API already validated the shape
  switch (r.kind) {
    case 'Service':
      return `${(s.ports as Array<{ name: string; port: number; protocol?: string }>).map((p) => `${p.name}:${p.port}/${p.protocol ?? 'HTTP'}`).join(',')}  selector ${labelText(s.selector)}`;
    case 'Workload':
      return `${s.address} ${Object.entries(s.ports as Record<string, number>).map(([n, p]) => `${n}:${p}`).join(',')}${s.proxy ? ` proxy:${s.proxy.inboundPort}` : ''}  ${labelText(r.metadata.labels ?? {})}`;
    case 'HTTPRoute':
    case 'GRPCRoute':
    case 'TCPRoute': {
      const parents = (s.parentRefs as Array<{ name: string; port?: number }>).map((p) => (p.port ? `${p.name}:${p.port}` : p.name)).join(',');
      const backends = ((s.rules ?? []) as Array<{ backendRefs?: Array<{ name: string; port: number; weight?: number }> }>)
        .flatMap((rule) => rule.backendRefs ?? [])
        .map((b) => `${b.name}:${b.port}${b.weight !== undefined ? `=${b.weight}` : ''}`);
      return `parents ${parents}  rules ${(s.rules ?? []).length}  backends ${[...new Set(backends)].join(',') || '-'}`;
    }
    case 'BackendPolicy':
    case 'RateLimitPolicy':
      return `targets ${(s.targetRefs as Array<{ name: string }>).map((t) => t.name).join(',')}`;
    default:
      return '';
  }
}

function labelText(l: Record<string, string>): string {
  const e = Object.entries(l);
  return e.length === 0 ? '-' : e.map(([k, x]) => `${k}=${x}`).join(',');
}

export const getCommand: Command = {
  summary: 'list or show resources',
  usage: 'weft get <kind> [name] [-n NS | -A] [-o table|yaml|json]',
  positionals: true,
  options: {
    namespace: { type: 'string', short: 'n' },
    'all-namespaces': { type: 'boolean', short: 'A', default: false },
    output: { type: 'string', short: 'o' },
  },
  help: `Kinds: mesh, services (svc), workloads (wl), httproutes (routes), grpcroutes, tcproutes, backendpolicies,
authorizationpolicies (authz), ratelimitpolicies (ratelimits), or "all";
and "certificates" (the CA's roots and every proxy's certificate: identity, serial, expiry).
Without -n, lists every namespace. A resource with problems shows STATUS Problems; "-o yaml" shows why.`,
  run: async (v, args) => {
    if (args.length === 0 || args.length > 2) throw new UsageError('give a kind, and optionally a name');
    const o = output(v);
    if (['certificates', 'certificate', 'certs'].includes(args[0]!.toLowerCase())) return printCertificates(o === 'yaml' ? 'json' : o);
    const kind = args[0] === 'all' ? null : kindOf(args[0]!);
    const ns = (v.namespace as string | undefined) ?? (args[1] !== undefined ? 'default' : undefined);
    let items: Stored[];
    if (args[1] !== undefined) {
      if (kind === null) throw new UsageError('"get all" takes no name');
      items = [(await api<Stored>('GET', `/api/v1/resources/${kind}/${encodeURIComponent(ns!)}/${encodeURIComponent(args[1])}`)).body];
    } else {
      const q = new URLSearchParams({ ...(kind !== null ? { kind } : {}), ...(ns !== undefined && v['all-namespaces'] !== true ? { namespace: ns } : {}) });
      items = (await api<{ items: Stored[] }>('GET', `/api/v1/resources?${q}`)).body.items;
    }
    if (o === 'json') console.log(JSON.stringify(args[1] !== undefined ? items[0] : { items }, null, 2));
    else if (o === 'yaml') console.log(items.map((i) => stringify(i).trimEnd()).join('\n---\n'));
    else if (items.length === 0) console.error(`no ${kind ?? 'resources'} found`);
    else {
      const rows = items.map((i) => [...(kind === null ? [i.kind] : []), i.metadata.namespace, i.metadata.name, i.status.state, i.status.source, age(i.metadata.creationTimestamp), summary(i)]);
      console.log(table([...(kind === null ? ['KIND'] : []), 'NAMESPACE', 'NAME', 'STATUS', 'SOURCE', 'AGE', 'DETAILS'], rows));
      for (const i of items) for (const e of i.status.errors) console.error(`problem: ${e.text}`);
    }
    return 0;
  },
};

export const deleteCommand: Command = {
  summary: 'delete resources',
  usage: 'weft delete <kind> <name> [-n NS]  |  weft delete -f FILE',
  positionals: true,
  options: { namespace: { type: 'string', short: 'n', default: 'default' }, file: { type: 'string', short: 'f', multiple: true, default: [] } },
  help: 'Deletes one resource by kind and name, or every resource a file defines. Exits 1 if any was not found.',
  run: async (v, args) => {
    const targets: Array<{ kind: string; namespace: string; name: string }> = [];
    if ((v.file as string[]).length > 0) {
      if (args.length > 0) throw new UsageError('give either -f FILE or <kind> <name>');
      for (const f of v.file as string[]) {
        const r = loadResources(readFileSync(f, 'utf8'), f);
        for (const x of r.resources) targets.push({ kind: x.kind, namespace: x.metadata.namespace, name: x.metadata.name });
      }
    } else {
      if (args.length !== 2) throw new UsageError('give <kind> <name>');
      targets.push({ kind: kindOf(args[0]!), namespace: v.namespace as string, name: args[1]! });
    }
    let missing = 0;
    for (const t of targets) {
      try {
        await api('DELETE', `/api/v1/resources/${t.kind}/${encodeURIComponent(t.namespace)}/${encodeURIComponent(t.name)}`);
        console.log(`${id(t)} deleted`);
      } catch (err) {
        if (!(err instanceof ApiError) || err.status === 0 || err.status >= 500) throw err;
        console.error(`error: ${err.message}`);
        missing++;
      }
    }
    return missing === 0 ? 0 : 1;
  },
};

export const proxyStatusCommand: Command = {
  summary: 'sync state of every proxy, per config type',
  usage: 'weft proxy-status [-o table|json]',
  options: { output: { type: 'string', short: 'o' } },
  help: `SYNCED: the proxy holds the latest version. STALE: it does not have it yet (or is disconnected).
NACKED: it refused the latest version and keeps serving the one before; the reason is printed.`,
  run: async (v) => {
    const o = output(v, ['table', 'json']);
    const items = (await api<{ items: ProxyStatus[] }>('GET', '/api/v1/proxies')).body.items;
    if (o === 'json') {
      console.log(JSON.stringify({ items }, null, 2));
      return 0;
    }
    if (items.length === 0) {
      console.error('no proxies connected');
      return 0;
    }
    const types = ['clusters', 'endpoints', 'workload', 'routes'] as const;
    console.log(
      table(
        ['PROXY', 'CONNECTED', 'STREAM', 'CLUSTERS', 'ENDPOINTS', 'WORKLOAD', 'ROUTES', 'VERSION', 'IDENTITY'],
        items.map((p) => [p.id, p.connected ? 'yes' : `no (${age(p.lastSeenAt)})`, p.transport ?? '-', ...types.map((t) => p.types[t].state), (p.types.routes.acked ?? '-').slice(0, 8), identityCell(p)]),
      ),
    );
    for (const p of items) {
      for (const t of types) if (p.types[t].state === 'NACKED') console.log(`${p.id} refused ${t} ${p.types[t].latest}: ${p.types[t].error}`);
      if (p.notice !== null) console.log(`${p.id}: ${p.notice}`);
      if (p.identityError !== null) console.log(`${p.id}: no certificate: ${p.identityError}`);
    }
    return 0;
  },
};

/** What proxy-status shows of a proxy's identity: its SPIFFE ID and whether it installed its certificate. */
function identityCell(p: ProxyStatus): string {
  if (p.certificate === null) return p.identityError !== null ? 'REFUSED' : 'none (plaintext)';
  const state = !p.certificate.installed ? ' (pending)' : !p.certificate.bundleSynced ? ' (old bundle)' : '';
  return `${p.certificate.identity.replace(/^spiffe:\/\/[^/]+/, '')}${state}`;
}

export const proxyConfigCommand: Command = {
  summary: "a proxy's routes, clusters or endpoints",
  usage: 'weft proxy-config <[namespace/]workload> routes|clusters|endpoints|all [-o table|json] [--admin HOST:PORT]',
  positionals: true,
  options: { output: { type: 'string', short: 'o' }, admin: { type: 'string' } },
  help: `Shows the configuration the control plane holds for a proxy (what it sends it); see proxy-status for whether the proxy has it.
The endpoints' HEALTH column is the proxy's own view, as it last reported it to the control plane:
HEALTHY, EJECTED (until when, and why: outlier detection) or FAILING_HEALTH_CHECKS (the check's
failure); "unchecked" for a cluster without outlier detection or health checks, "(no report)" when
the proxy is not connected. --admin HOST:PORT (the proxy's admin address, e.g. 127.0.0.1:15000) reads
it from the proxy's /clusters instead, on the host where the proxy runs.`,
  run: async (v, args) => {
    if (args.length !== 2) throw new UsageError('give a proxy and one of routes, clusters, endpoints, all');
    const o = output(v, ['table', 'json']);
    const what = args[1]!;
    if (!['routes', 'clusters', 'endpoints', 'all'].includes(what)) throw new UsageError(`"${what}" is not one of routes, clusters, endpoints, all`);
    const proxy = args[0]!.includes('/') ? args[0]! : `default/${args[0]!}`;
    const { snapshot, health } = (await api<{ snapshot: ProxySnapshot; health?: { reportedAt: number; clusters: ReportedCluster[] } | null }>('GET', `/api/v1/proxies/${proxy}/config`)).body;
    if (o === 'json') {
      const pick = what === 'routes' ? { virtualHosts: snapshot.virtualHosts, tcpServices: snapshot.tcpServices } : what === 'clusters' ? snapshot.clusters.map(({ endpoints: _e, ...c }) => c) : what === 'endpoints' ? Object.fromEntries(snapshot.clusters.map((c) => [c.name, c.endpoints])) : snapshot;
      console.log(JSON.stringify(pick, null, 2));
      return 0;
    }
    const parts: string[] = [];
    if (what === 'routes' || what === 'all') {
      const rows = snapshot.virtualHosts.flatMap((vh) =>
        vh.routes.map((r) => {
          const m = r.match;
          const match = [`${m.path.type === 'Exact' ? '=' : m.path.type === 'PathPrefix' ? '' : '~'}${m.path.value}${m.path.type === 'PathPrefix' ? '*' : ''}`, m.method ?? '', ...m.headers.map((h) => `${h.name}=${h.value}`)].filter((x) => x !== '').join(' ');
          const action = r.action.type === 'redirect' ? `redirect ${r.action.redirect.statusCode}` : r.action.backends.map((b) => `${b.cluster ?? '(invalid)'}${r.action.type === 'forward' && r.action.backends.length > 1 ? ` ${b.weight}` : ''}`).join(', ');
          return [vh.name, r.name, match, action];
        }),
      );
      // A port that declares no protocol is also a TCP service that detects HTTP on --upstream ports.
      for (const t of snapshot.tcpServices) rows.push([t.name, t.detect === true ? '(tcp, detects http)' : '(tcp)', '', t.backends.map((b) => `${b.cluster ?? '(invalid)'} ${b.weight}`).join(', ')]);
      parts.push(table(['VIRTUAL HOST', 'ROUTE', 'MATCH', 'BACKENDS'], rows));
    }
    if (what === 'clusters' || what === 'all') {
      parts.push(table(['CLUSTER', 'PROTOCOL', 'LOAD BALANCER', 'CONNECT TIMEOUT', 'ENDPOINTS', 'OUTLIER DETECTION', 'HEALTH CHECK'], snapshot.clusters.map((c) => [c.name, c.protocol, c.loadBalancer, `${c.connectTimeoutMs}ms`, String(c.endpoints.length), outlierCell(c), healthCheckCell(c)])));
    }
    if (what === 'endpoints' || what === 'all') {
      const live = v.admin === undefined ? null : await liveHealth(v.admin as string);
      const reported = live === null ? reportedHealth(health ?? null) : null;
      const rows = snapshot.clusters.flatMap((c) =>
        c.endpoints.map((e) => {
          const row = [c.name, `${e.address}:${e.port}`, e.workload, e.proxied ? `yes (app port ${e.appPort})` : 'no'];
          if (live !== null) row.push(live.get(`${c.name} ${e.workload}`) ?? '(not in the proxy)');
          else {
            const watched = c.outlierDetection !== undefined || c.healthCheck !== undefined;
            const rc = reported?.get(c.name);
            row.push(
              rc !== undefined ? (rc.endpoints.get(`${e.workload}|${e.address}:${e.port}`) ?? (rc.partial ? 'HEALTHY' : '(not in the proxy)'))
              : !watched ? 'unchecked'
              : reported === null ? '(no report)'
              : '(not in the report)',
            );
          }
          return row;
        }),
      );
      parts.push(rows.length === 0 ? 'no endpoints' : table(['CLUSTER', 'ENDPOINT', 'WORKLOAD', 'PROXIED', 'HEALTH'], rows));
    }
    console.log(parts.join('\n\n'));
    return 0;
  },
};

/** A cluster's outlier detection in short: its consecutive thresholds and base ejection time. */
function outlierCell(c: ProxySnapshot['clusters'][number]): string {
  const o = c.outlierDetection;
  if (o === undefined) return '-';
  const parts = [o.consecutive5xx > 0 ? `5xx×${o.consecutive5xx}` : '', o.consecutiveGatewayErrors > 0 ? `gateway×${o.consecutiveGatewayErrors}` : '', o.consecutiveConnectFailures > 0 ? `connect×${o.consecutiveConnectFailures}` : '', o.successRate !== null ? 'success rate' : ''];
  return `${parts.filter((p) => p !== '').join(' ') || 'none'}, eject ${o.baseEjectionTimeMs}ms, max ${o.maxEjectionPercent}%`;
}

/** A cluster's active health check in short. */
function healthCheckCell(c: ProxySnapshot['clusters'][number]): string {
  const h = c.healthCheck;
  if (h === undefined) return '-';
  return `${h.probe.type === 'http' ? `http ${h.probe.path}` : 'tcp'} every ${h.intervalMs}ms`;
}

/** A health cell: the state, when an ejection ends, and why. */
function healthText(health: string, until: string | null | undefined, reason: string | null | undefined): string {
  return `${health}${until != null ? ` until ${until}` : ''}${reason != null && reason !== '' ? ` (${reason})` : ''}`;
}

/** The proxy's reported endpoint health, by cluster then `<workload>|<host:port>`; null when it has reported none. */
function reportedHealth(h: { clusters: ReportedCluster[] } | null): Map<string, { partial: boolean; endpoints: Map<string, string> }> | null {
  if (h === null) return null;
  return new Map(h.clusters.map((c) => [c.name, { partial: c.partial, endpoints: new Map(c.endpoints.map((e) => [`${e.workload}|${e.address}`, healthText(e.health, e.ejectedUntil, e.reason)])) }]));
}

/** Each endpoint's health from a proxy's admin `/clusters`, by `<cluster> <workload>`. */
async function liveHealth(admin: string): Promise<Map<string, string>> {
  const url = `http://${admin}/clusters`;
  let clusters: Array<{ name: string; endpoints: Array<{ workload: string; health: string; ejectedUntil?: string | null; ejectionReason?: string | null }> }>;
  try {
    clusters = (await (await fetch(url)).json()) as typeof clusters;
  } catch (err) {
    throw new UsageError(`--admin: cannot read ${url}: ${(err as Error).message}`);
  }
  const out = new Map<string, string>();
  for (const c of clusters) for (const e of c.endpoints) out.set(`${c.name} ${e.workload}`, healthText(e.health, e.ejectedUntil, e.ejectionReason));
  return out;
}

interface Problems {
  resources: Array<{ key: string; errors: ApiResourceError[] }>;
  files: Array<{ file: string; errors: string[] }>;
}

export const checkCommand: Command = {
  summary: 'check the mesh: control plane, resources, proxies',
  usage: 'weft check [--wait DURATION] [-o table|json]',
  options: { output: { type: 'string', short: 'o' }, wait: { type: 'string' }, 'root-expiry-threshold': { type: 'string', default: '720h' } },
  help: `Checks that the control plane answers, that no resource has problems, and that every proxy holds
the latest configuration. Exits 0 when all is well, 1 otherwise, saying what to do.
Also checks certificates: every trusted root is further than --root-expiry-threshold (default 720h, 30 days)
from expiry, and every proxy holds a valid certificate it installed.
--wait retries until all is well or the time is up (e.g. --wait 30s).`,
  run: async (v) => {
    const o = output(v, ['table', 'json']);
    const deadline = Date.now() + (v.wait === undefined ? 0 : duration(v.wait, 'wait'));
    rootThresholdMs = duration(v['root-expiry-threshold'], 'root-expiry-threshold');
    for (;;) {
      const result = await runChecks();
      const ok = result.every((c) => c.ok);
      if (ok || Date.now() >= deadline) {
        if (o === 'json') console.log(JSON.stringify({ ok, checks: result }, null, 2));
        else {
          for (const c of result) {
            console.log(`${c.ok ? '√' : '×'} ${c.title}`);
            for (const d of c.details) console.log(`    ${d}`);
            if (!c.ok && c.hint !== '') console.log(`    → ${c.hint}`);
          }
          console.log(ok ? '\nStatus check results are √' : '\nStatus check results are ×');
        }
        return ok ? 0 : 1;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  },
};

interface Check {
  title: string;
  ok: boolean;
  details: string[];
  hint: string;
}

/** Roots expire rarely and must never surprise anyone: warn this long ahead. */
let rootThresholdMs = 30 * 24 * 3600_000;

/** Certificate health: roots far from expiry, every leaf installed and not past three quarters of its life. */
function certificateChecks(view: CertificatesView, rootMs: number): Check[] {
  const now = Date.now();
  const roots = view.roots.filter((r) => r.state !== 'retired');
  const soon = roots.filter((r) => Date.parse(r.notAfter) - now < rootMs);
  const checks: Check[] = [
    {
      title: soon.length === 0 ? `${roots.length} trusted root(s), none expiring within ${Math.round(rootMs / 86_400_000)} days` : `${soon.length} trusted root(s) expire within ${Math.round(rootMs / 86_400_000)} days`,
      ok: soon.length === 0,
      details: soon.map((r) => `${r.subject} (serial ${r.serial.slice(0, 16)}) expires ${r.notAfter}`),
      hint: 'rotate the root now with "weft ca rotate" (traffic keeps flowing), or restart the control plane with the new CA files you were given',
    },
  ];
  const bad: string[] = [];
  for (const i of view.items) {
    if (i.error !== null) bad.push(`${i.proxy}: no certificate: ${i.error}`);
    else if (i.notAfter !== undefined && Date.parse(i.notAfter) <= now) bad.push(`${i.proxy}: certificate ${i.serial} EXPIRED at ${i.notAfter}`);
    else if (i.connected && i.installed !== true) bad.push(`${i.proxy}: certificate ${i.serial} issued but not installed yet`);
  }
  checks.push({
    title: bad.length === 0 ? `${view.items.length} proxy certificate(s) valid and installed` : `${bad.length} proxy certificate problem(s)`,
    ok: bad.length === 0,
    details: bad,
    hint: 'a refused token: create a new one ("weft token create") and restart the proxy with it; an expired certificate: the proxy cannot reach the control plane to renew',
  });
  return checks;
}

async function runChecks(): Promise<Check[]> {
  const checks: Check[] = [];
  let health: { version: string; proxies: number; streamAuth?: 'required' | 'optional' };
  try {
    health = (await api<{ version: string; proxies: number; streamAuth?: 'required' | 'optional' }>('GET', '/api/v1/health')).body;
  } catch (err) {
    return [{ title: `control plane reachable at ${serverUrl()}`, ok: false, details: [(err as Error).message], hint: 'start it with "weft up -f mesh.yaml" or "weft control", or set WEFT_SERVER' }];
  }
  checks.push({ title: `control plane reachable at ${serverUrl()} (weft ${health.version})`, ok: true, details: [], hint: '' });
  if (health.streamAuth !== undefined) {
    // A warning, not a failure: optional is the default, and right on one host.
    const host = new URL(serverUrl()).hostname;
    const exposed = health.streamAuth === 'optional' && !/^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(host);
    checks.push({
      title: health.streamAuth === 'required' ? 'config streams need a credential (--stream-auth required)' : 'config streams without a credential get configuration (--stream-auth optional)',
      ok: true,
      details: exposed ? [`warning: the API is reached at ${host}, not loopback: whoever reaches it can read the mesh's configuration and register endpoints; start weft control with --stream-auth required`] : [],
      hint: '',
    });
  }
  const problems = (await api<Problems>('GET', '/api/v1/problems')).body;
  const bad = problems.resources.flatMap((r) => r.errors.map((e) => e.text));
  checks.push({ title: bad.length === 0 ? 'no resource has problems' : `${problems.resources.length} resource(s) with problems`, ok: bad.length === 0, details: bad, hint: 'fix the fields named above and apply again; the rest of the mesh keeps working meanwhile' });
  const fileBad = problems.files.flatMap((f) => f.errors);
  if (fileBad.length > 0) checks.push({ title: `${problems.files.length} config-dir file(s) with problems`, ok: false, details: fileBad, hint: 'edit the files; their good resources are in force' });
  const proxies = (await api<{ items: ProxyStatus[] }>('GET', '/api/v1/proxies')).body.items;
  const unsynced: string[] = [];
  for (const p of proxies) {
    if (!p.connected) unsynced.push(`${p.id}: disconnected since ${age(p.lastSeenAt)} ago ${p.notice !== null ? `(${p.notice})` : '(serving its last configuration)'}`);
    else if (p.notice !== null) unsynced.push(`${p.id}: ${p.notice}`);
    else for (const [t, s] of Object.entries(p.types)) if (s.state !== 'SYNCED') unsynced.push(`${p.id}: ${t} ${s.state}${s.error !== null ? `: ${s.error}` : ''}`);
  }
  checks.push({
    title: unsynced.length === 0 ? `${proxies.length} proxies, all synced` : `${new Set(unsynced.map((u) => u.split(':')[0])).size} of ${proxies.length} proxies not synced`,
    ok: unsynced.length === 0,
    details: unsynced,
    hint: 'a NACKED proxy keeps its last good configuration: fix what it refused (see "weft proxy-status"); a disconnected one should reconnect on its own, or be restarted',
  });
  checks.push(...certificateChecks((await api<CertificatesView>('GET', '/api/v1/certificates')).body, rootThresholdMs));
  return checks;
}
