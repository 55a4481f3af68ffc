// Recent traces from the control plane's store, and one trace as a waterfall.
import { get } from './api.js';
import { card, colourOf, empty, h, ms, ago } from './util.js';

export function tracesPage(el, args) {
  const service = h('input', { id: 'trace-service', name: 'service', placeholder: 'through service, e.g. ratings', value: args.service, spellcheck: 'false' });
  const errorsOnly = h('input', { id: 'trace-errors', type: 'checkbox', name: 'errors' });
  const form = h('form', { class: 'toolbar' }, service, h('label', { class: 'check' }, errorsOnly, ' with errors'), h('button', { type: 'submit', text: 'Refresh' }));
  const list = h('div');
  el.append(h('div', { class: 'page-head' }, h('h1', { text: 'Traces' }), h('span', { class: 'muted', text: 'the most recent traces the control plane holds' })), form, card('Recent traces', list));
  let stopped = false;
  let timer = null;
  const load = async () => {
    clearTimeout(timer);
    const q = new URLSearchParams({ limit: '50' });
    if (service.value.trim()) q.set('service', service.value.trim());
    if (errorsOnly.checked) q.set('errors', 'true');
    try {
      const r = await get(`/api/v1/traces?${q}`);
      if (stopped) return;
      list.replaceChildren(r.items.length === 0 ? empty('No traces yet. Proxies send spans when the Mesh sets spec.tracing (sampling above 0).') : traceTable(r.items));
    } catch (err) {
      list.replaceChildren(empty(err.message));
    }
    if (!stopped) timer = setTimeout(load, 5000);
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void load();
  });
  void load();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

function traceTable(items) {
  const longest = Math.max(...items.map((t) => t.durationMs), 0.001);
  return h('table', { class: 'table' },
    h('thead', {}, h('tr', {}, ['Root', 'Services', 'Spans', 'Errors', 'Duration', '', 'When'].map((c, i) => h('th', { class: [2, 3, 4].includes(i) ? 'num' : '', text: c })))),
    h('tbody', {}, items.map((t) => {
      const bar = h('span', { class: 'mini-fill' });
      bar.style.width = `${Math.max(2, (t.durationMs / longest) * 100).toFixed(1)}%`;
      return h('tr', { class: 'link', 'data-trace': t.traceId, onclick: () => { location.hash = `#/traces/${t.traceId}`; } },
        h('td', {}, h('a', { href: `#/traces/${t.traceId}`, text: `${t.service}: ${t.name}` }), h('div', { class: 'mono muted small', text: t.traceId })),
        h('td', {}, t.services.map(chip)),
        h('td', { class: 'num', text: String(t.spans) }),
        h('td', { class: `num ${t.errors > 0 ? 'bad' : ''}`, text: String(t.errors) }),
        h('td', { class: 'num', text: ms(t.durationMs) }),
        h('td', { class: 'mini' }, h('span', { class: 'mini-bar' }, bar)),
        h('td', { class: 'muted', text: ago(t.startMs) }));
    })));
}

function chip(service) {
  const c = h('span', { class: 'chip', text: service });
  c.style.setProperty('--c', colourOf(service));
  return c;
}

export function tracePage(el, { id }) {
  const body = h('div');
  el.append(h('div', { class: 'page-head' }, h('a', { class: 'back', href: '#/traces', text: '← Traces' }), h('h1', { text: 'Trace' }), h('span', { class: 'mono muted', text: id })), body);
  get(`/api/v1/traces/${encodeURIComponent(id)}`).then((t) => body.replaceChildren(waterfall(t.spans)), (err) => body.replaceChildren(card('Not available', empty(err.message))));
}

/** Spans in tree order (children under their parent, earliest first), with their depth. */
function ordered(spans) {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parentSpanId === '' || !ids.has(s.parentSpanId)) roots.push(s);
    else (children.get(s.parentSpanId) ?? children.set(s.parentSpanId, []).get(s.parentSpanId)).push(s);
  }
  const out = [];
  const seen = new Set();
  const walk = (s, depth) => {
    if (seen.has(s.spanId)) return;
    seen.add(s.spanId);
    out.push({ span: s, depth });
    for (const c of (children.get(s.spanId) ?? []).sort((a, b) => a.startMs - b.startMs)) walk(c, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.startMs - b.startMs)) walk(r, 0);
  return out;
}

function waterfall(spans) {
  if (spans.length === 0) return card('Spans', empty('This trace has no spans.'));
  const t0 = Math.min(...spans.map((s) => s.startMs));
  const total = Math.max(...spans.map((s) => s.startMs + s.durationMs)) - t0 || 0.001;
  const services = [...new Set(spans.map((s) => s.service))];
  const errors = spans.filter((s) => s.status === 'ERROR').length;
  const details = h('div', { class: 'span-details', id: 'span-details' }, empty('Click a span for its attributes.'));
  const ticks = h('div', { class: 'ticks' });
  for (let i = 0; i <= 4; i++) {
    const t = h('span', { class: 'tick', text: ms((total * i) / 4) });
    t.style.left = `${i * 25}%`;
    ticks.append(t);
  }
  const rows = ordered(spans).map(({ span, depth }) => {
    const bar = h('span', { class: `bar${span.status === 'ERROR' ? ' error' : ''}` });
    const left = ((span.startMs - t0) / total) * 100;
    bar.style.left = `${left.toFixed(2)}%`;
    bar.style.width = `max(3px, ${((span.durationMs / total) * 100).toFixed(2)}%)`;
    bar.style.background = colourOf(span.service);
    const dur = h('span', { class: 'bar-text', text: ms(span.durationMs) });
    if (left > 70) {
      dur.style.right = `${(100 - left + 0.5).toFixed(2)}%`;
    } else dur.style.left = `calc(${left.toFixed(2)}% + max(3px, ${((span.durationMs / total) * 100).toFixed(2)}%) + 6px)`;
    const name = h('div', { class: 'span-name' }, h('span', { class: `kind-tag ${span.kind.toLowerCase()}`, text: span.kind === 'UNSPECIFIED' ? '' : span.kind }), chip(span.service), h('span', { class: 'span-title', text: span.name }));
    name.style.paddingLeft = `${8 + depth * 16}px`;
    const row = h('div', { class: `span-row${span.status === 'ERROR' ? ' error' : ''}`, 'data-span': span.spanId, 'data-depth': depth, tabindex: 0 }, name, h('div', { class: 'span-track' }, bar, dur));
    const pick = () => {
      for (const r of row.parentElement.children) r.classList.remove('selected');
      row.classList.add('selected');
      details.replaceChildren(spanDetails(span, t0));
    };
    row.addEventListener('click', pick);
    row.addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(); });
    return row;
  });
  const summary = h('div', { class: 'signals' },
    ...[['spans', String(spans.length)], ['services', String(services.length)], ['duration', ms(total)], ['errors', String(errors)]].map(([c, v]) => h('div', { class: `signal ${c === 'errors' && errors > 0 ? 'bad' : ''}` }, h('div', { class: 'signal-value', text: v }), h('div', { class: 'signal-caption', text: c }))));
  return h('div', {}, summary,
    h('section', { class: 'card' }, h('h2', { text: 'Waterfall' }),
      h('div', { class: 'waterfall' }, h('div', { class: 'span-row head' }, h('div', { class: 'span-name', text: 'Span' }), h('div', { class: 'span-track' }, ticks)), h('div', { class: 'span-rows' }, rows))),
    card('Span', details));
}

function spanDetails(span, t0) {
  const facts = [['name', span.name], ['service', span.service], ['kind', span.kind], ['status', `${span.status}${span.statusMessage ? `: ${span.statusMessage}` : ''}`], ['start', `+${ms(span.startMs - t0)}`], ['duration', ms(span.durationMs)], ['span id', span.spanId], ['parent', span.parentSpanId || '(root)'],
    ...Object.entries(span.attributes).sort(([a], [b]) => (a < b ? -1 : 1))];
  return h('table', { class: 'table compact kv' }, h('tbody', {}, facts.map(([k, v]) => h('tr', {}, h('th', { text: k }), h('td', { class: 'mono', text: v })))));
}
