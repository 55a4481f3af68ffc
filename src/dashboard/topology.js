// The topology: services as nodes, calls and TCP connections as edges, laid out in layers by call
// depth (left → right), with live golden signals (TCP numbers for a service with TCP traffic only);
// refreshed every 3 s.
import { maybe, get } from './api.js';
import { HEALTH_COLOUR, byteRate, card, empty, h, health, keyOf, label, lock, lockIcon, ms, pct, rps, s, tcpActive } from './util.js';

const NODE_W = 220;
const NODE_H = 80;
const GAP_X = 96;
const GAP_Y = 34;
const PAD = 24;
const REFRESH_MS = 3000;

export function topologyPage(el) {
  const graph = h('div', { class: 'graph', id: 'graph' });
  const note = h('p', { class: 'note' });
  const table = h('div');
  const tcpTable = h('div');
  const tcpCard = card('TCP services', tcpTable);
  tcpCard.hidden = true;
  el.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Topology' }), h('span', { class: 'muted', text: 'requests and TCP connections in the last minute, refreshed every 3 s' }), legend()),
    h('section', { class: 'card graph-card' }, graph, note),
    card('Services', table),
    tcpCard,
  );
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      const [services, stats, edges, tcp, tcpEdges] = await Promise.all([
        get('/api/v1/resources?kind=Service'),
        maybe('/api/v1/stats?by=service&window=1m'),
        maybe('/api/v1/stats/edges?window=1m'),
        maybe('/api/v1/stats/tcp?window=1m'),
        maybe('/api/v1/stats/tcp/edges?window=1m'),
      ]);
      if (stopped) return;
      const model = buildModel(services.items, stats?.rows ?? [], edges?.edges ?? [], tcp?.rows ?? [], tcpEdges?.edges ?? []);
      graph.replaceChildren(render(model));
      table.replaceChildren(statTable(model));
      const tcpRows = tcpTableView(model);
      tcpCard.hidden = tcpRows === null;
      tcpTable.replaceChildren(...(tcpRows === null ? [] : [tcpRows]));
      note.textContent = stats === null ? 'This control plane serves no golden signals (/api/v1/stats): services are shown without traffic.' : '';
    } catch (err) {
      note.textContent = err.message;
    }
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  void tick();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

function legend() {
  const item = (cls, text) => h('span', { class: 'legend-item' }, h('i', { class: `dot ${cls}` }), text);
  return h('div', { class: 'legend' }, item('good', '≥ 99 %'), item('warn', '≥ 95 %'), item('bad', '< 95 %'), item('tcp', 'TCP'), item('idle', 'no traffic'), h('span', { class: 'legend-item' }, lockIcon(true), 'mTLS'));
}

/**
 * Nodes (every Service, and whatever the traffic names) and edges, keyed `namespace/name`; a node
 * carries its request row (`stats`) and its TCP row (`tcp`), a TCP edge `tcp: true`.
 */
function buildModel(services, rows, edges, tcpRows, tcpEdges) {
  const nodes = new Map();
  const node = (key) => {
    if (!nodes.has(key)) nodes.set(key, { key, stats: null, tcp: null, service: null });
    return nodes.get(key);
  };
  for (const svc of services) node(keyOf(svc)).service = svc;
  for (const r of rows) node(`${r.namespace}/${r.service}`).stats = r;
  for (const r of tcpRows) node(`${r.namespace}/${r.service}`).tcp = r;
  for (const e of [...edges, ...tcpEdges]) {
    node(e.source);
    node(e.destination);
  }
  // A caller that serves nothing (a load generator, a job) shows what it sends instead.
  for (const n of nodes.values()) {
    const out = edges.filter((e) => e.source === n.key);
    if (n.stats !== null || out.length === 0) continue;
    const total = out.reduce((a, e) => a + (e.requestsPerSecond ?? 0), 0);
    const rated = out.filter((e) => e.successRate !== null && e.requestsPerSecond > 0);
    const weight = rated.reduce((a, e) => a + e.requestsPerSecond, 0);
    const p99s = out.map((e) => e.p99Ms).filter((x) => x !== null);
    n.stats = { requestsPerSecond: total, successRate: weight > 0 ? rated.reduce((a, e) => a + e.successRate * e.requestsPerSecond, 0) / weight : null, p99Ms: p99s.length > 0 ? Math.max(...p99s) : null, mtlsRate: out.every((e) => e.mtls) ? 1 : null, outbound: true };
  }
  // Likewise a TCP client that serves nothing (a job holding a database connection) shows what it opens.
  for (const n of nodes.values()) {
    if (n.stats !== null || n.tcp !== null) continue;
    const out = tcpEdges.filter((e) => e.source === n.key);
    if (out.length === 0) continue;
    const sum = (field) => out.reduce((a, e) => a + e[field], 0);
    n.tcp = {
      connectionsPerSecond: sum('connectionsPerSecond'), activeConnections: sum('activeConnections'),
      readBytesPerSecond: sum('readBytesPerSecond'), writeBytesPerSecond: sum('writeBytesPerSecond'),
      connections: sum('connections'), readBytes: sum('readBytes'), writeBytes: sum('writeBytes'),
      mtlsRate: out.every((e) => e.mtls) ? 1 : null, outbound: true,
    };
  }
  return { nodes, edges: [...edges.filter((e) => e.source !== e.destination), ...tcpEdges.filter((e) => e.source !== e.destination).map((e) => ({ ...e, tcp: true }))] };
}

/**
 * Whether a node shows its TCP numbers rather than its requests: when it has TCP traffic and no
 * requests it serves (what a service serves comes before what it sends).
 */
function showsTcp(n) {
  if (!tcpActive(n.tcp)) return false;
  if (n.stats === null) return true;
  if (n.stats.outbound === true) return n.tcp.outbound !== true;
  return !(n.stats.requestsPerSecond > 0);
}

/** A TCP row or edge in one line: `5.00 conn/s · 3 active · read 160 KiB/s · write 75 B/s`. */
function tcpLine(t) {
  return `${rps(t.connectionsPerSecond)} conn/s · ${t.activeConnections} active · read ${byteRate(t.readBytesPerSecond)} · write ${byteRate(t.writeBytesPerSecond)}`;
}

/**
 * Layers: a node's column is its longest call depth from a node nobody calls, once the calls that
 * close a cycle are set aside (found by a depth-first walk in name order, and drawn as loops).
 * Within a column, nodes sit near the mean row of their callers (one barycentre pass), ties by
 * name: the same traffic always draws the same picture.
 */
function layout(model) {
  const keys = [...model.nodes.keys()].sort();
  const connected = new Set(model.edges.flatMap((e) => [e.source, e.destination]));
  const out = new Map();
  for (const e of model.edges) (out.get(e.source) ?? out.set(e.source, []).get(e.source)).push(e);
  const called = new Set(model.edges.map((e) => e.destination));
  const back = new Set();
  const state = new Map();
  const visit = (k) => {
    state.set(k, 'open');
    for (const e of [...(out.get(k) ?? [])].sort((x, y) => (x.destination < y.destination ? -1 : 1))) {
      const st = state.get(e.destination);
      if (st === 'open') back.add(e);
      else if (st === undefined) visit(e.destination);
    }
    state.set(k, 'done');
  };
  for (const k of [...keys.filter((k) => connected.has(k) && !called.has(k)), ...keys.filter((k) => connected.has(k))]) if (!state.has(k)) visit(k);
  const forward = model.edges.filter((e) => !back.has(e));
  const depth = new Map(keys.filter((k) => connected.has(k)).map((k) => [k, 0]));
  for (let round = 0; round < keys.length; round++) {
    let changed = false;
    for (const e of forward) {
      const d = depth.get(e.source) + 1;
      if (d > depth.get(e.destination)) {
        depth.set(e.destination, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const [k, d] of depth) (columns[d] ??= []).push(k);
  const row = new Map();
  columns.forEach((col, d) => {
    const score = (k) => {
      if (d === 0) return 0;
      const callers = model.edges.filter((e) => e.destination === k && row.has(e.source)).map((e) => row.get(e.source));
      return callers.length === 0 ? Infinity : callers.reduce((a, b) => a + b, 0) / callers.length;
    };
    col.sort((a, b) => score(a) - score(b) || (a < b ? -1 : 1));
    col.forEach((k, i) => row.set(k, i));
  });
  for (let d = 0; d < columns.length; d++) columns[d] ??= [];
  const tallest = Math.max(0, ...columns.map((c) => c.length));
  const pos = new Map();
  columns.forEach((col, d) => {
    const offset = ((tallest - col.length) * (NODE_H + GAP_Y)) / 2;
    col.forEach((k, i) => pos.set(k, { x: PAD + d * (NODE_W + GAP_X), y: PAD + offset + i * (NODE_H + GAP_Y) }));
  });
  // Services without traffic: a row of their own below the graph.
  const idle = keys.filter((k) => !connected.has(k));
  const idleTop = PAD + tallest * (NODE_H + GAP_Y) + (tallest > 0 ? 28 : 0);
  const perRow = Math.max(columns.length, 4);
  idle.forEach((k, i) => pos.set(k, { x: PAD + (i % perRow) * (NODE_W + 24), y: idleTop + Math.floor(i / perRow) * (NODE_H + 18) + 22, idle: true }));
  const width = Math.max(...[...pos.values()].map((p) => p.x + NODE_W), 400) + PAD;
  const height = Math.max(...[...pos.values()].map((p) => p.y + NODE_H), 120) + PAD;
  return { pos, width, height, idleTop: idle.length > 0 ? idleTop : null };
}

function render(model) {
  const { pos, width, height, idleTop } = layout(model);
  const svg = s('svg', { class: 'topology', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'service topology' },
    s('defs', {}, ...['good', 'warn', 'bad', 'idle', 'tcp'].map((k) => s('marker', { id: `arrow-${k}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 10, markerHeight: 10, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: HEALTH_COLOUR[k] })))));
  const edgeLayer = s('g', { class: 'edges' });
  const labelLayer = s('g', { class: 'edge-labels' });
  const httpPairs = new Set(model.edges.filter((e) => !e.tcp).map((e) => `${e.source}→${e.destination}`));
  for (const e of model.edges) {
    const a = pos.get(e.source);
    const b = pos.get(e.destination);
    const pair = `${e.source}→${e.destination}`;
    const state = e.tcp ? 'tcp' : health(e.successRate);
    let d;
    let mid;
    if (b.x > a.x) {
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 2, y2 = b.y + NODE_H / 2;
      const cx = (x1 + x2) / 2;
      d = `M${x1},${y1} C${cx},${y1} ${cx},${y2} ${x2},${y2}`;
      // Above the line, so the line and its arrow stay visible in the gap between columns.
      mid = { x: cx, y: (y1 + y2) / 2 - 15 };
    } else {
      // A call back to an earlier (or the same) column: loop under the nodes.
      const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2, y2 = b.y + NODE_H + 2;
      const low = Math.max(y1, y2) + 40;
      d = `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`;
      mid = { x: (x1 + x2) / 2, y: low - 10 };
    }
    // A TCP edge beside calls between the same services: its label goes under theirs.
    if (e.tcp && httpPairs.has(pair)) mid.y += 24;
    const bytesPerSecond = e.tcp ? e.readBytesPerSecond + e.writeBytesPerSecond : 0;
    const widthPx = 1.5 + Math.min(4, e.tcp ? Math.log10(1 + bytesPerSecond / 1024) * 1.2 : Math.log10(1 + (e.requestsPerSecond ?? 0)) * 1.6);
    const title = e.tcp
      ? `${label(e.source)} → ${label(e.destination)} (TCP)\n${tcpLine(e)}\n${e.mtls ? 'mutual TLS' : 'plaintext'}`
      : `${label(e.source)} → ${label(e.destination)}\n${rps(e.requestsPerSecond)} rps · ${pct(e.successRate)} success · p99 ${ms(e.p99Ms)}\n${e.mtls ? 'mutual TLS' : 'plaintext'}${e.sourceIdentity ? `\nfrom ${e.sourceIdentity}` : ''}${e.destinationIdentity ? `\nto ${e.destinationIdentity}` : ''}`;
    const protocol = e.tcp ? 'tcp' : null;
    edgeLayer.append(s('path', { class: `edge ${state}`, d, stroke: HEALTH_COLOUR[state], 'stroke-width': widthPx.toFixed(1), fill: 'none', 'marker-end': `url(#arrow-${state})`, 'data-edge': pair, 'data-protocol': protocol }, s('title', { text: title })));
    // A TCP edge is labelled with its throughput, as Kiali does; the rest is on hover.
    const text = e.tcp ? byteRate(bytesPerSecond) : `${rps(e.requestsPerSecond)} rps`;
    const w = text.length * 6.6 + (e.mtls ? 30 : 16);
    labelLayer.append(s('g', { class: `edge-label${e.tcp ? ' tcp' : ''}`, transform: `translate(${mid.x.toFixed(1)},${mid.y.toFixed(1)})`, 'data-edge': pair, 'data-protocol': protocol },
      s('title', { text: title }),
      s('rect', { x: -w / 2, y: -10, width: w, height: 20, rx: 10 }),
      s('text', { x: e.mtls ? -w / 2 + 10 : 0, y: 4, 'text-anchor': e.mtls ? 'start' : 'middle', text }),
      e.mtls ? s('g', { transform: `translate(${(w / 2 - 12).toFixed(1)},-1)` }, lock('#2f9e44')) : null));
  }
  svg.append(edgeLayer);
  if (idleTop !== null) svg.append(s('text', { class: 'idle-title', x: PAD, y: idleTop + 8, text: 'NO TRAFFIC IN THE LAST MINUTE' }));
  for (const [key, n] of model.nodes) svg.append(nodeView(key, n, pos.get(key)));
  svg.append(labelLayer);
  return svg;
}

function nodeView(key, n, p) {
  const st = n.stats;
  const tcp = showsTcp(n) ? n.tcp : null;
  const state = tcp !== null ? 'tcp' : health(st?.successRate);
  const unmeshed = key === '(unmeshed)';
  const [ns, name] = unmeshed ? ['', 'unmeshed callers'] : key.split('/');
  const tcpNote = tcpActive(n.tcp) ? `\nTCP${n.tcp.outbound ? ' out' : ''}: ${tcpLine(n.tcp)}` : '';
  const g = s('g', { class: `node ${state}${unmeshed ? ' unmeshed' : ''}`, transform: `translate(${p.x},${p.y})`, 'data-service': key, 'data-protocol': tcp !== null ? 'tcp' : null, tabindex: unmeshed ? null : 0, role: unmeshed ? null : 'link' },
    s('title', { text: `${unmeshed ? 'callers without a proxy' : `${key}: open its page`}${tcpNote}` }),
    s('rect', { class: 'node-box', width: NODE_W, height: NODE_H, rx: 10 }),
    s('rect', { class: 'node-bar', width: 6, height: NODE_H - 16, x: 0, y: 8, rx: 3, fill: HEALTH_COLOUR[state] }),
    s('text', { class: 'node-name', x: 18, y: 25, text: name }),
    s('text', { class: 'node-ns', x: NODE_W - 30, y: 25, 'text-anchor': 'end', text: ns === 'default' ? '' : ns }));
  const metric = (x, value, caption, what) => s('g', { transform: `translate(${x},0)`, 'data-metric': what }, s('text', { class: 'node-value', x: 0, y: 52, text: value }), s('text', { class: 'node-caption', x: 0, y: 67, text: caption }));
  if (tcp !== null) {
    // Bytes/s take the room of two short numbers; OUT marks a client's own connections.
    g.append(metric(18, rps(tcp.connectionsPerSecond), 'CONN/S', 'conn'), metric(84, String(tcp.activeConnections), 'ACTIVE', 'active'), metric(132, byteRate(tcp.readBytesPerSecond + tcp.writeBytesPerSecond), `BYTES/S${tcp.outbound ? ' OUT' : ''}`, 'bytes'));
  } else {
    const out = st?.outbound === true ? ' OUT' : '';
    g.append(metric(18, rps(st?.requestsPerSecond ?? null), `RPS${out}`, 'rps'), metric(84, pct(st?.successRate), 'SUCCESS', 'success'), metric(152, ms(st?.p99Ms), `P99${out}`, 'p99'));
  }
  const mtlsRate = tcp !== null ? tcp.mtlsRate : st?.mtlsRate;
  if (mtlsRate !== null && mtlsRate !== undefined && mtlsRate >= 1) g.append(s('g', { transform: `translate(${NODE_W - 16},20)` }, lock('#2f9e44')));
  if (!unmeshed) {
    const open = () => { location.hash = `#/service/${key}`; };
    g.addEventListener('click', open);
    g.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
  }
  return g;
}

function statTable(model) {
  const rows = [...model.nodes.values()].filter((n) => n.key !== '(unmeshed)' && n.stats?.outbound !== true).sort((a, b) => (a.key < b.key ? -1 : 1));
  if (rows.length === 0) return empty('no services yet: apply some with weft apply');
  return h('table', { class: 'table' },
    h('thead', {}, h('tr', {}, ['Service', 'RPS', 'Success', 'P50', 'P95', 'P99', 'mTLS'].map((c, i) => h('th', { class: i > 0 ? 'num' : '', text: c })))),
    h('tbody', {}, rows.map((n) => {
      const st = n.stats;
      const state = health(st?.successRate);
      return h('tr', { class: 'link', onclick: () => { location.hash = `#/service/${n.key}`; } },
        h('td', {}, h('i', { class: `dot ${showsTcp(n) ? 'tcp' : state}` }), h('a', { href: `#/service/${n.key}`, text: label(n.key) })),
        h('td', { class: 'num', text: rps(st?.requestsPerSecond) }),
        h('td', { class: `num ${state}`, text: pct(st?.successRate) }),
        h('td', { class: 'num', text: ms(st?.p50Ms) }),
        h('td', { class: 'num', text: ms(st?.p95Ms) }),
        h('td', { class: 'num', text: ms(st?.p99Ms) }),
        h('td', { class: 'num', text: st?.mtlsRate === null || st?.mtlsRate === undefined ? '–' : pct(st.mtlsRate) }));
    })));
}

/** The TCP services with traffic in the window (as their own side reports them), or null when none has any. */
function tcpTableView(model) {
  const rows = [...model.nodes.values()].filter((n) => n.key !== '(unmeshed)' && n.tcp !== null && n.tcp.outbound !== true && tcpActive(n.tcp)).sort((a, b) => (a.key < b.key ? -1 : 1));
  if (rows.length === 0) return null;
  return h('table', { class: 'table', id: 'tcp-services' },
    h('thead', {}, h('tr', {}, ['Service', 'Conn/s', 'Active', 'Read/s', 'Write/s', 'mTLS', 'Connections'].map((c, i) => h('th', { class: i > 0 ? 'num' : '', text: c })))),
    h('tbody', {}, rows.map((n) => {
      const t = n.tcp;
      return h('tr', { class: 'link', 'data-service': n.key, onclick: () => { location.hash = `#/service/${n.key}`; } },
        h('td', {}, h('i', { class: 'dot tcp' }), h('a', { href: `#/service/${n.key}`, text: label(n.key) })),
        h('td', { class: 'num', text: rps(t.connectionsPerSecond) }),
        h('td', { class: 'num', text: String(t.activeConnections) }),
        h('td', { class: 'num', text: byteRate(t.readBytesPerSecond) }),
        h('td', { class: 'num', text: byteRate(t.writeBytesPerSecond) }),
        h('td', { class: 'num', text: pct(t.mtlsRate) }),
        h('td', { class: 'num', text: String(t.connections) }));
    })));
}
