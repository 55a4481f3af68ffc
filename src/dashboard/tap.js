// Live tap: requests to (or from) a service as they complete, streamed as NDJSON from /api/v1/tap.
import { get, stream } from './api.js';
import { card, empty, h, keyOf, label, lockIcon, ms } from './util.js';

const MAX_ROWS = 300;
const TAP_SECONDS = 300;
const TAP_LIMIT = 10000;

export function tapPage(el, args) {
  const select = h('select', { id: 'tap-service', name: 'service' });
  const method = h('select', { id: 'tap-method', name: 'method' }, ['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'].map((m) => h('option', { value: m, text: m || 'any method' })));
  const path = h('input', { id: 'tap-path', name: 'path', placeholder: 'path prefix, e.g. /product', spellcheck: 'false' });
  const status = h('input', { id: 'tap-status', name: 'status', placeholder: 'status: 5xx, 404', spellcheck: 'false', size: 12 });
  const button = h('button', { id: 'tap-toggle', type: 'submit', text: 'Start' });
  const counts = h('span', { class: 'muted', id: 'tap-counts' });
  const state = h('span', { class: 'tap-state', id: 'tap-state', text: 'stopped' });
  const body = h('tbody', { id: 'tap-rows' });
  const note = h('p', { class: 'note' });
  const form = h('form', { class: 'toolbar' }, select, method, path, status, button, state, h('span', { class: 'spacer' }), counts);
  const table = h('table', { class: 'table tap-table' },
    h('thead', {}, h('tr', {}, ['Time', '', 'From', 'To', 'Method', 'Path', 'Status', 'Latency', 'mTLS', 'Trace'].map((c, i) => h('th', { class: i === 7 ? 'num' : '', text: c })))), body);
  const placeholder = empty('Pick a service and press Start: requests appear here as they complete.');
  el.append(h('div', { class: 'page-head' }, h('h1', { text: 'Tap' }), h('span', { class: 'muted', text: 'a live stream of requests, newest first' })), form, note, card('Requests', placeholder, table));
  table.hidden = true;

  let controller = null;
  let seen = 0;
  let errors = 0;
  const stop = (why) => {
    controller?.abort();
    controller = null;
    button.textContent = 'Start';
    state.textContent = why;
    state.className = 'tap-state';
  };
  const start = () => {
    if (!select.value) return;
    controller = new AbortController();
    const q = new URLSearchParams({ service: select.value, seconds: String(TAP_SECONDS), limit: String(TAP_LIMIT) });
    if (method.value) q.set('method', method.value);
    if (path.value.trim()) q.set('path', path.value.trim());
    if (status.value.trim()) q.set('status', status.value.trim());
    body.replaceChildren();
    seen = 0;
    errors = 0;
    counts.textContent = '';
    note.textContent = '';
    placeholder.hidden = true;
    table.hidden = false;
    button.textContent = 'Stop';
    state.textContent = 'live';
    state.className = 'tap-state on';
    history.replaceState(null, '', `#/tap/${select.value}`);
    const mine = controller;
    stream(`/api/v1/tap?${q}`, mine.signal, (ev) => {
      seen++;
      if (ev.status >= 500 || ev.errorCode) errors++;
      body.prepend(row(ev));
      while (body.childElementCount > MAX_ROWS) body.lastElementChild.remove();
      counts.textContent = `${seen} requests · ${errors} errors`;
    }).then(
      () => { if (controller === mine) stop('ended: the tap reached its time or count limit'); },
      (err) => {
        if (controller !== mine) return;
        if (err.name !== 'AbortError') note.textContent = err.message;
        stop(err.name === 'AbortError' ? 'stopped' : 'failed');
      },
    );
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (controller) stop('stopped');
    else start();
  });

  void get('/api/v1/resources?kind=Service').then((r) => {
    const keys = r.items.map(keyOf).sort();
    select.replaceChildren(...keys.map((k) => h('option', { value: k, text: label(k) })));
    if (keys.length === 0) select.append(h('option', { value: '', text: 'no services' }));
    if (args.service && keys.includes(args.service)) {
      select.value = args.service;
      start();
    }
  }, (err) => { note.textContent = err.message; });
  return { stop: () => { controller?.abort(); controller = null; } };
}

function statusClass(ev) {
  if (ev.errorCode || ev.status >= 500 || (ev.grpcStatus !== null && ev.grpcStatus !== undefined && ev.grpcStatus !== 0)) return 'bad';
  if (ev.status >= 400) return 'warn';
  return 'good';
}

function row(ev) {
  const t = new Date(ev.time);
  const time = `${t.toLocaleTimeString([], { hour12: false })}.${String(t.getMilliseconds()).padStart(3, '0')}`;
  const cls = statusClass(ev);
  const statusText = `${ev.status}${ev.grpcStatus !== null && ev.grpcStatus !== undefined ? ` grpc ${ev.grpcStatus}` : ''}${ev.errorCode ? ` ${ev.errorCode}` : ''}`;
  const tr = h('tr', { class: ev.traceId ? 'link' : '', 'data-trace': ev.traceId || null, title: `${ev.proxy}${ev.upstreamHost ? ` → ${ev.upstreamHost}` : ''}${ev.sourceIdentity ? `\nfrom ${ev.sourceIdentity}` : ''}` },
    h('td', { class: 'mono muted', text: time }),
    h('td', {}, h('span', { class: `dir ${ev.direction}`, text: ev.direction === 'inbound' ? 'IN' : 'OUT' })),
    h('td', { text: ev.source ? label(ev.source) : '(unmeshed)' }),
    h('td', { text: label(ev.destination) }),
    h('td', { class: 'mono', text: ev.method }),
    h('td', { class: 'mono path', text: ev.path }),
    h('td', {}, h('span', { class: `status ${cls}`, text: statusText })),
    h('td', { class: 'num', text: ms(ev.durationMs) }),
    h('td', {}, lockIcon(ev.mtls)),
    h('td', { class: 'mono' }, ev.traceId ? h('a', { href: `#/traces/${ev.traceId}`, text: `${ev.traceId.slice(0, 8)}…` }) : h('span', { class: 'muted', text: '–' })));
  if (ev.traceId) tr.addEventListener('click', (e) => { if (e.target.tagName !== 'A') location.hash = `#/traces/${ev.traceId}`; });
  return tr;
}
