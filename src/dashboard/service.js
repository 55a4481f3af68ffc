// A service's page: its golden signals and their last ten minutes, its TCP traffic (when it has some
// or declares a TCP port), the routes and policies that apply to it, its endpoints (workloads, their
// proxies, their health as the callers see it, traffic) and their certificates.
import { get, maybe } from './api.js';
import { lineChart } from './chart.js';
import { byteRate, card, empty, h, health, keyOf, label, lockIcon, ms, pct, rps, tcpActive, until } from './util.js';

const REFRESH_MS = 5000;
/** The windows of the TCP table: its rows, newest first. */
const TCP_WINDOWS = [['10s', 'last 10 s'], ['1m', 'last minute'], ['10m', 'last 10 minutes']];

export function servicePage(el, { service }) {
  const [namespace, name] = service.split('/');
  const signals = h('div', { class: 'signals' });
  const charts = h('div', { class: 'charts' });
  const routes = h('div');
  const policies = h('div');
  const endpoints = h('div');
  const certs = h('div');
  const tcp = h('div');
  const tcpCard = card('TCP', tcp);
  tcpCard.id = 'tcp';
  tcpCard.hidden = true;
  const error = h('p', { class: 'note' });
  const badge = h('span', { class: 'badge idle', text: 'no traffic' });
  el.append(
    h('div', { class: 'page-head' },
      h('a', { class: 'back', href: '#/', text: '← Topology' }),
      h('h1', {}, name, h('span', { class: 'ns', text: namespace })), badge,
      h('span', { class: 'spacer' }),
      h('a', { class: 'button', href: `#/tap/${service}`, text: 'Tap' }),
      h('a', { class: 'button secondary', href: `#/traces?service=${encodeURIComponent(name)}`, text: 'Traces' })),
    error, signals, charts, tcpCard,
    h('div', { class: 'grid2' }, card('Routes', routes), card('Policies', policies)),
    card('Endpoints', endpoints),
    card('Certificates', certs),
  );
  let stopped = false;
  let timer = null;
  let first = true;
  const tick = async () => {
    try {
      const q = `service=${encodeURIComponent(service)}`;
      const [stats, series, workloadStats, routeStats, tcpEdges, ...tcpWindows] = await Promise.all([
        maybe(`/api/v1/stats?by=service&window=1m&namespace=${encodeURIComponent(namespace)}`),
        maybe(`/api/v1/stats/series?${q}&window=10m&step=10s`),
        maybe(`/api/v1/stats?by=workload&window=1m&namespace=${encodeURIComponent(namespace)}`),
        maybe(`/api/v1/stats?by=route&window=1m&namespace=${encodeURIComponent(namespace)}`),
        maybe('/api/v1/stats/tcp/edges?window=1m'),
        ...TCP_WINDOWS.map(([w]) => maybe(`/api/v1/stats/tcp?window=${w}&namespace=${encodeURIComponent(namespace)}`)),
      ]);
      if (stopped) return;
      const row = stats?.rows.find((r) => r.namespace === namespace && r.service === name) ?? null;
      const tcpRows = tcpWindows.map((w) => w?.rows.find((r) => r.namespace === namespace && r.service === name) ?? null);
      // A service with TCP traffic and no requests is not idle: it says so, in the TCP colour.
      const state = row === null && tcpActive(tcpRows[1]) ? 'tcp' : health(row?.successRate);
      badge.className = `badge ${state}`;
      badge.textContent = { good: 'healthy', warn: 'degraded', bad: 'failing', idle: 'no traffic', tcp: 'TCP traffic' }[state];
      signals.replaceChildren(...signalCards(row));
      charts.replaceChildren(...(series === null ? [empty('this control plane serves no time series (/api/v1/stats/series)')] : seriesCharts(series)));
      let svc;
      if (first) {
        first = false;
        svc = await statics(service, { routes, policies, endpoints, certs }, workloadStats?.rows ?? [], (routeStats?.rows ?? []).filter((r) => r.service === name));
      } else {
        svc = await endpointsView(service, endpoints, certs, workloadStats?.rows ?? []);
      }
      if (stopped) return;
      const ports = svc?.spec.ports ?? [];
      const declaresTcp = ports.some((p) => p.protocol === 'TCP');
      tcpCard.hidden = !declaresTcp && !tcpRows.some(tcpActive);
      if (!tcpCard.hidden) tcp.replaceChildren(...tcpView(tcpWindows[0] === null ? null : tcpRows, (tcpEdges?.edges ?? []).filter((e) => e.destination === service)));
      // A service that declares only TCP ports and serves no requests: its request numbers would be dashes.
      const tcpOnly = row === null && ports.length > 0 && ports.every((p) => p.protocol === 'TCP');
      signals.hidden = tcpOnly;
      charts.hidden = tcpOnly;
      error.textContent = '';
    } catch (err) {
      error.textContent = err.message;
    }
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  void tick();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

function signalCards(row) {
  const one = (caption, value, cls = '') => h('div', { class: `signal ${cls}` }, h('div', { class: 'signal-value', text: value }), h('div', { class: 'signal-caption', text: caption }));
  return [
    one('requests / s', rps(row?.requestsPerSecond ?? null)),
    one('success', pct(row?.successRate), health(row?.successRate)),
    one('p50', ms(row?.p50Ms)),
    one('p95', ms(row?.p95Ms)),
    one('p99', ms(row?.p99Ms)),
    one('errors / 1m', row === null ? '–' : String(row.errors)),
    one('mTLS', row?.mtlsRate === null || row?.mtlsRate === undefined ? '–' : pct(row.mtlsRate)),
  ];
}

/**
 * The TCP section: `weft stat tcp`'s columns for this service over three windows (`rows`, null when
 * the control plane serves no TCP stats), and under it the clients of the last minute.
 */
function tcpView(rows, clients) {
  if (rows === null) return [empty('this control plane serves no TCP stats (/api/v1/stats/tcp)')];
  if (!rows.some(tcpActive)) return [empty('No TCP connections in the last 10 minutes.')];
  const out = [h('table', { class: 'table', 'data-tcp': 'windows' },
    h('thead', {}, h('tr', {}, ['Window', 'Conn/s', 'Active', 'Read/s', 'Write/s', 'mTLS', 'Connections'].map((c, i) => h('th', { class: i > 0 ? 'num' : '', text: c, title: TCP_TITLES[c] })))),
    h('tbody', {}, TCP_WINDOWS.map(([w, text], i) => {
      const r = rows[i];
      return h('tr', { 'data-window': w },
        h('td', { text }),
        h('td', { class: 'num', 'data-col': 'conn', text: rps(r?.connectionsPerSecond) }),
        h('td', { class: 'num', 'data-col': 'active', text: r === null ? '–' : String(r.activeConnections) }),
        h('td', { class: 'num', 'data-col': 'read', text: byteRate(r?.readBytesPerSecond) }),
        h('td', { class: 'num', 'data-col': 'write', text: byteRate(r?.writeBytesPerSecond) }),
        h('td', { class: 'num', 'data-col': 'mtls', text: pct(r?.mtlsRate) }),
        h('td', { class: 'num', 'data-col': 'connections', text: r === null ? '–' : String(r.connections) }));
    })))];
  if (clients.length > 0) {
    out.push(h('div', { class: 'tcp-clients' }, h('h3', { text: 'Clients, last minute' }), h('table', { class: 'table compact', 'data-tcp': 'clients' },
      h('thead', {}, h('tr', {}, ['Client', 'Conn/s', 'Active', 'Read/s', 'Write/s', 'mTLS'].map((c, i) => h('th', { class: i > 0 ? 'num' : '', text: c })))),
      h('tbody', {}, clients.map((e) => h('tr', { 'data-client': e.source },
        h('td', {}, e.source === '(unmeshed)' ? h('span', { class: 'muted', text: 'unmeshed callers' }) : h('a', { href: `#/service/${e.source}`, text: label(e.source) })),
        h('td', { class: 'num', text: rps(e.connectionsPerSecond) }),
        h('td', { class: 'num', text: String(e.activeConnections) }),
        h('td', { class: 'num', text: byteRate(e.readBytesPerSecond) }),
        h('td', { class: 'num', text: byteRate(e.writeBytesPerSecond) }),
        h('td', { class: 'num' }, lockIcon(e.mtls))))))));
  }
  return out;
}

const TCP_TITLES = {
  'Conn/s': 'connections opened per second',
  Active: 'connections open at the end of the window',
  'Read/s': 'bytes per second received from the clients',
  'Write/s': 'bytes per second sent to the clients',
  mTLS: 'share of the connections opened over mutual TLS',
  Connections: 'connections opened in the window',
};

function seriesCharts(series) {
  const times = series.points.map((p) => p.t);
  const lowest = Math.min(1, ...series.points.map((p) => p.successRate).filter((x) => x !== null));
  const successFloor = lowest >= 0.8 ? 0.8 : Math.max(0, Math.floor(lowest * 5) / 5);
  const axisMs = (v) => (v === 0 ? '0' : ms(v).replace(' ', ''));
  return [
    lineChart({ title: 'Latency, last 10 minutes', times, format: axisMs, series: [
      { name: 'p50', colour: '#4263eb', values: series.points.map((p) => p.p50Ms) },
      { name: 'p99', colour: '#e8590c', values: series.points.map((p) => p.p99Ms) },
    ] }),
    lineChart({ title: 'Requests per second', times, area: true, format: rps, series: [{ name: 'rps', colour: '#0c8599', values: series.points.map((p) => p.requestsPerSecond) }] }),
    lineChart({ title: 'Success rate', times, fixedTop: 1, fixedBottom: successFloor, format: (v) => `${Math.round(v * 100)}%`, series: [{ name: 'success', colour: '#2f9e44', values: series.points.map((p) => p.successRate) }] }),
  ];
}

const attached = (r, namespace, name) => (r.spec.parentRefs ?? []).some((p) => (p.kind ?? 'Service') === 'Service' && p.name === name && (p.namespace ?? r.metadata.namespace) === namespace);
const targets = (r, namespace, name) => r.metadata.namespace === namespace && (r.spec.targetRefs ?? []).some((t) => t.kind === 'Service' && t.name === name);

async function statics(service, el, workloadRows, routeRows) {
  const [namespace, name] = service.split('/');
  const [http, grpc, bp, ap, rl] = await Promise.all(['HTTPRoute', 'GRPCRoute', 'BackendPolicy', 'AuthorizationPolicy', 'RateLimitPolicy'].map((k) => get(`/api/v1/resources?kind=${k}`)));
  const routes = [...http.items, ...grpc.items].filter((r) => attached(r, namespace, name));
  el.routes.replaceChildren(...(routes.length === 0 ? [empty('No routes: every request goes to the service\'s own endpoints.')] : routes.map((r) => routeView(r, routeRows))));
  const policies = [...bp.items, ...ap.items, ...rl.items].filter((r) => targets(r, namespace, name));
  el.policies.replaceChildren(...(policies.length === 0 ? [empty('No policies: mesh defaults apply (round robin, no limits, any caller allowed).')] : policies.map(policyView)));
  return endpointsView(service, el.endpoints, el.certs, workloadRows);
}

function matchText(m) {
  const parts = [];
  if (m.method && typeof m.method === 'object') parts.push(`${m.method.service ?? '*'}/${m.method.method ?? '*'}`);
  else if (m.method) parts.push(m.method);
  if (m.path) parts.push(`${m.path.type === 'Exact' ? '' : m.path.type === 'RegularExpression' ? '~' : ''}${m.path.value ?? '/'}${(m.path.type ?? 'PathPrefix') === 'PathPrefix' ? '*' : ''}`);
  for (const x of m.headers ?? []) parts.push(`${x.name}${x.type === 'RegularExpression' ? '~' : '='}${x.value}`);
  for (const x of m.queryParams ?? []) parts.push(`?${x.name}=${x.value}`);
  return parts.join(' ') || 'everything';
}

function routeView(r, routeRows) {
  const st = routeRows.find((x) => x.route === r.metadata.name) ?? null;
  const rules = r.spec.rules ?? [];
  const problems = r.status?.errors ?? [];
  return h('div', { class: 'route', 'data-route': keyOf(r) },
    h('div', { class: 'route-head' },
      h('strong', { text: r.metadata.name }), h('span', { class: 'kind', text: r.kind }),
      h('span', { class: `badge ${problems.length === 0 ? 'good' : 'bad'}`, text: r.status?.state ?? 'Accepted' }),
      st !== null ? h('span', { class: 'muted', text: `${rps(st.requestsPerSecond)} rps · ${pct(st.successRate)} · p99 ${ms(st.p99Ms)}` }) : null),
    ...problems.map((p) => h('p', { class: 'problem', text: p.text ?? p.message })),
    h('table', { class: 'table compact' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Match' }), h('th', { text: 'Backends' }), h('th', { text: 'Filters, timeouts' }))),
      h('tbody', {}, rules.map((rule) => {
        const backends = rule.backendRefs ?? [];
        const total = backends.reduce((a, b) => a + (b.weight ?? 1), 0);
        return h('tr', {},
          h('td', { class: 'mono', text: (rule.matches ?? []).length === 0 ? 'everything' : rule.matches.map(matchText).join(' | ') }),
          h('td', {}, backends.length === 0 ? h('span', { class: 'muted', text: 'none' }) : backends.map((b) => weightBar(b, total))),
          h('td', { class: 'muted', text: ruleExtras(rule) || '–' }));
      }))));
}

function weightBar(b, total) {
  const w = b.weight ?? 1;
  const share = total > 0 ? w / total : 0;
  const fill = h('span', { class: 'weight-fill' });
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return h('div', { class: 'backend' }, h('span', { class: 'backend-name', text: `${b.namespace ? `${b.namespace}/` : ''}${b.name}:${b.port}` }), h('span', { class: 'weight' }, fill), h('span', { class: 'weight-text', text: `${w} (${Math.round(share * 100)}%)` }));
}

function ruleExtras(rule) {
  const out = (rule.filters ?? []).map((f) => f.type === 'ExtensionRef' ? `${f.extensionRef.kind} ${f.extensionRef.name}` : f.type === 'RequestMirror' ? `mirror → ${f.requestMirror.backendRef.name}` : f.type);
  if (rule.timeouts?.request) out.push(`timeout ${rule.timeouts.request}`);
  if (rule.timeouts?.backendRequest) out.push(`per try ${rule.timeouts.backendRequest}`);
  if (rule.retry) out.push(`retry ×${rule.retry.attempts ?? '?'}`);
  return out.join(', ');
}

function policyView(p) {
  const facts = [];
  const sp = p.spec;
  if (p.kind === 'BackendPolicy') {
    if (sp.loadBalancer) facts.push(`load balancer ${sp.loadBalancer.type}`);
    if (sp.connectTimeout) facts.push(`connect timeout ${sp.connectTimeout}`);
    if (sp.circuitBreaker) facts.push(`breaker ${Object.entries(sp.circuitBreaker).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    if (sp.outlierDetection) facts.push('outlier detection');
    if (sp.healthCheck) facts.push(`health check every ${sp.healthCheck.interval ?? 'default'}`);
    if (sp.retryBudget) facts.push(`retry budget ${sp.retryBudget.percent ?? 20}%`);
  } else if (p.kind === 'AuthorizationPolicy') {
    facts.push(sp.action ?? 'ALLOW');
    for (const r of sp.rules ?? []) {
      const from = (r.from ?? []).flatMap((f) => [...(f.identities ?? []), ...(f.namespaces ?? []).map((n) => `ns ${n}`)]);
      const to = (r.to ?? []).flatMap((t) => [...(t.methods ?? []), ...(t.paths ?? [])]);
      facts.push(`${from.length > 0 ? from.join(', ') : 'anyone'} → ${to.length > 0 ? to.join(' ') : 'anything'}`);
    }
    if ((sp.rules ?? []).length === 0) facts.push('no rules: matches nothing');
  } else if (p.kind === 'RateLimitPolicy') {
    if (sp.local) facts.push(`local ${sp.local.requests} per ${sp.local.per}${sp.local.burst ? `, burst ${sp.local.burst}` : ''}`);
    if (sp.global) facts.push(`global ${sp.global.requests} per ${sp.global.per}`);
    facts.push(`key ${sp.key?.type ?? 'none'}`);
    if (sp.failureMode) facts.push(sp.failureMode);
  }
  return h('div', { class: 'policy' }, h('div', { class: 'route-head' }, h('strong', { text: p.metadata.name }), h('span', { class: 'kind', text: p.kind })), h('div', { class: 'facts' }, facts.map((f) => h('span', { class: 'fact', text: f }))));
}

const matches = (labels, selector) => Object.entries(selector ?? {}).every(([k, v]) => (labels ?? {})[k] === v);

/** Shows the endpoints and their certificates; returns the Service resource (null when there is none). */
async function endpointsView(service, el, certEl, workloadRows) {
  const [namespace, name] = service.split('/');
  const [svc, workloads, proxies, certs, callerView] = await Promise.all([
    maybe(`/api/v1/resources/Service/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`),
    get(`/api/v1/resources?kind=Workload&namespace=${encodeURIComponent(namespace)}`),
    get('/api/v1/proxies'),
    get('/api/v1/certificates'),
    maybe(`/api/v1/endpoints?service=${encodeURIComponent(service)}`),
  ]);
  if (svc === null) {
    el.replaceChildren(empty(`${service} is not a Service of this mesh.`));
    certEl.replaceChildren();
    return null;
  }
  const mine = workloads.items.filter((w) => Object.keys(svc.spec.selector ?? {}).length > 0 && matches(w.metadata.labels, svc.spec.selector)).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  const proxyOf = new Map(proxies.items.map((p) => [p.id, p]));
  if (mine.length === 0) el.replaceChildren(empty('No workload matches the selector.'));
  else {
    el.replaceChildren(h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, ['Workload', 'Address', 'Identity', 'Proxy', 'Health', 'Endpoint health', 'RPS', 'Success', 'P99'].map((c, i) => h('th', { class: i >= 6 ? 'num' : '', text: c })))),
      h('tbody', {}, mine.map((w) => {
        const id = keyOf(w);
        const p = proxyOf.get(id);
        const st = workloadRows.find((r) => r.workload === id) ?? null;
        const [state, text] = endpointHealth(w, p);
        const ports = Object.entries(w.spec.ports ?? {}).map(([k, v]) => `${k} ${v}`).join(', ');
        return h('tr', { 'data-workload': id },
          h('td', { text: w.metadata.name }),
          h('td', { class: 'mono', text: `${w.spec.address}${ports ? ` (${ports})` : ''}` }),
          h('td', { class: 'mono muted', text: `sa/${w.spec.serviceAccount ?? 'default'}` }),
          h('td', {}, p === undefined ? h('span', { class: 'muted', text: 'none' }) : [lockIcon(p.transport === 'mtls'), ` ${p.connected ? 'connected' : 'disconnected'}`]),
          h('td', {}, h('i', { class: `dot ${state}` }), text),
          callerHealthCell(callerView?.endpoints.filter((e) => e.workload === id) ?? null),
          h('td', { class: 'num', text: rps(st?.requestsPerSecond) }),
          h('td', { class: `num ${health(st?.successRate)}`, text: pct(st?.successRate) }),
          h('td', { class: 'num', text: ms(st?.p99Ms) }));
      }))));
  }
  const ids = new Set(mine.map(keyOf));
  const mineCerts = certs.items.filter((c) => ids.has(c.proxy));
  certEl.replaceChildren(mineCerts.length === 0 ? empty('No certificates: these workloads have no proxy holding one.') : h('table', { class: 'table' },
    h('thead', {}, h('tr', {}, ['Proxy', 'Identity', 'Serial', 'Expires', 'State'].map((c) => h('th', { text: c })))),
    h('tbody', {}, mineCerts.map((c) => {
      const left = Date.parse(c.notAfter) - Date.now();
      const cls = c.error ? 'bad' : left < 0 ? 'bad' : left < 3600_000 ? 'warn' : 'good';
      return h('tr', {},
        h('td', { text: label(c.proxy) }),
        h('td', { class: 'mono', text: c.identity ?? '–' }),
        h('td', { class: 'mono muted', text: c.serial ? `${c.serial.slice(0, 16)}…` : '–' }),
        h('td', { title: c.notAfter ?? '', text: c.notAfter ? `${until(Date.parse(c.notAfter))}` : '–' }),
        h('td', {}, h('i', { class: `dot ${cls}` }), c.error ? c.error : c.installed ? 'installed' : 'pending'));
    }))));
  return svc;
}

/** A workload's health as the control plane sees it: its proxy connected and holding the latest configuration. */
function endpointHealth(w, p) {
  if (w.spec.proxy === undefined && p === undefined) return ['idle', 'no proxy'];
  if (p === undefined) return ['warn', 'proxy never connected'];
  if (!p.connected) return ['bad', 'proxy disconnected'];
  const types = Object.values(p.types ?? {});
  const nacked = types.some((t) => t.state === 'NACKED');
  const stale = types.some((t) => t.state === 'STALE');
  return nacked ? ['bad', 'config refused'] : stale ? ['warn', 'config stale'] : ['good', 'serving'];
}

const CALLER_HEALTH = {
  HEALTHY: ['good', 'healthy'],
  EJECTED: ['bad', 'ejected'],
  FAILING_HEALTH_CHECKS: ['bad', 'failing checks'],
};

/**
 * A workload's health as its callers' proxies see it (outlier detection, health checks), from
 * /api/v1/endpoints: a pill, and under it how many callers exclude it, why, and how long an
 * ejection has left. A workload with several ports shows its worst one.
 */
function callerHealthCell(eps) {
  if (eps === null) return h('td', { class: 'muted', text: '–' });
  const checked = eps.filter((e) => e.checked);
  if (checked.length === 0) return h('td', { 'data-endpoint-health': 'UNCHECKED' }, h('span', { class: 'badge', title: 'no caller has outlier detection or health checks for it', text: 'unchecked' }));
  const worst = checked.find((e) => e.health !== 'HEALTHY') ?? checked[0];
  const [cls, text] = CALLER_HEALTH[worst.health] ?? ['warn', worst.health];
  const notes = [worst.summary];
  const reasons = [...new Set(worst.by.map((b) => b.reason).filter((r) => r))];
  if (reasons.length > 0) notes.push(reasons.join(', '));
  const ends = worst.by.map((b) => (b.until ? Date.parse(b.until) : NaN)).filter((t) => !Number.isNaN(t));
  if (ends.length > 0) {
    const left = Math.max(0, Math.ceil((Math.max(...ends) - Date.now()) / 1000));
    notes.push(left >= 60 ? `${Math.floor(left / 60)}m ${left % 60}s left` : `${left}s left`);
  }
  const title = worst.by.map((b) => `${b.proxy}: ${b.health}${b.reason ? ` (${b.reason})` : ''}${b.until ? ` until ${b.until}` : ''}`).join('\n');
  return h('td', { 'data-endpoint-health': worst.health, title: title || worst.summary },
    h('span', { class: `badge ${cls}`, text }),
    h('div', { class: 'muted small endpoint-health-note', text: notes.join(' · ') }));
}
