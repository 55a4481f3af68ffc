// Small helpers shared by the pages: element builders, number formats, health colours.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: `h('td', { class: 'num', text: '12' })`, children after the attributes. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, like `h`. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

const dash = '–';

/** Requests per second, with as many decimals as are readable. */
export function rps(x) {
  if (x === null || x === undefined) return dash;
  if (x === 0) return '0';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** A ratio as a percentage: `99.4%`, `100%`. */
export function pct(x) {
  if (x === null || x === undefined) return dash;
  if (x >= 1) return '100%';
  return `${(Math.floor(x * 1000) / 10).toFixed(1)}%`;
}

/** Milliseconds: `0.84 ms`, `12.3 ms`, `240 ms`, `1.25 s`. */
export function ms(x) {
  if (x === null || x === undefined) return dash;
  if (x >= 1000) return `${(x / 1000).toFixed(2)} s`;
  return `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)} ms`;
}

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** A byte count in binary units (KiB = 1024 B), with as many decimals as are readable: `512 B`, `1.50 KiB`, `160 KiB`, `2.34 MiB`. */
export function bytes(x) {
  if (x === null || x === undefined) return dash;
  let i = 0;
  // 1023.5 and up would print as 1024 of this unit: the next one reads better.
  while (Math.abs(x) >= 1023.5 && i < BINARY.length - 1) {
    x /= 1024;
    i++;
  }
  if (i === 0) return `${Math.round(x)} B`;
  return `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)} ${BINARY[i]}`;
}

/** Bytes per second: `0 B/s`, `75 B/s`, `160 KiB/s`, `2.34 MiB/s`. */
export function byteRate(x) {
  return x === null || x === undefined ? dash : `${bytes(x)}/s`;
}

/** How long ago an epoch-ms time was: `4s ago`, `3m ago`. */
export function ago(t) {
  const d = Math.max(0, Date.now() - t) / 1000;
  if (d < 60) return `${Math.floor(d)}s ago`;
  if (d < 3600) return `${Math.floor(d / 60)}m ago`;
  if (d < 86400) return `${Math.floor(d / 3600)}h ago`;
  return `${Math.floor(d / 86400)}d ago`;
}

/** How long until an epoch-ms time: `in 23h 10m`, or `expired 5m ago`. */
export function until(t) {
  const d = (t - Date.now()) / 1000;
  const span = (x) => (x >= 86400 ? `${Math.floor(x / 86400)}d ${Math.floor((x % 86400) / 3600)}h` : x >= 3600 ? `${Math.floor(x / 3600)}h ${Math.floor((x % 3600) / 60)}m` : `${Math.max(0, Math.floor(x / 60))}m`);
  return d >= 0 ? `in ${span(d)}` : `expired ${span(-d)} ago`;
}

/** A success rate's health: `good` ≥ 99 %, `warn` ≥ 95 %, `bad` below, `idle` with no requests. */
export function health(successRate) {
  if (successRate === null || successRate === undefined) return 'idle';
  return successRate >= 0.99 ? 'good' : successRate >= 0.95 ? 'warn' : 'bad';
}

/** Colours by state: a success rate's health, `idle`, or `tcp` (TCP traffic only, which has no success rate). */
export const HEALTH_COLOUR = { good: '#2f9e44', warn: '#e8590c', bad: '#e03131', idle: '#adb5bd', tcp: '#1c7ed6' };

/** Whether a TCP row or edge had any traffic in its window: connections opened, bytes moved, or connections open. */
export function tcpActive(t) {
  return t !== null && t !== undefined && (t.connections > 0 || t.activeConnections > 0 || t.readBytes > 0 || t.writeBytes > 0);
}

const PALETTE = ['#4263eb', '#0c8599', '#ae3ec9', '#f08c00', '#2b8a3e', '#d6336c', '#1971c2', '#5f3dc4', '#e8590c', '#087f5b'];

/** A stable colour per service name (the same on every page and every load). */
export function colourOf(name) {
  let x = 2166136261;
  for (let i = 0; i < name.length; i++) x = Math.imul(x ^ name.charCodeAt(i), 16777619);
  return PALETTE[(x >>> 0) % PALETTE.length];
}

/** `namespace/name` of a resource. */
export function keyOf(r) {
  return `${r.metadata.namespace ?? 'default'}/${r.metadata.name}`;
}

/** A service's short label: the name alone in `default`, else `namespace/name`. */
export function label(key) {
  return key.startsWith('default/') ? key.slice('default/'.length) : key;
}

/** A card: a titled section of a page. */
export function card(title, ...body) {
  return h('section', { class: 'card' }, h('h2', { text: title }), ...body);
}

/** A message in place of content: `empty('no routes')`. */
export function empty(text) {
  return h('p', { class: 'empty', text });
}

/** A small padlock (mTLS), as SVG, centred on 0,0. */
export function lock(colour = '#495057') {
  return s('g', { class: 'lock' },
    s('title', { text: 'mutual TLS' }),
    s('path', { d: 'M-2.6,-0.5 v-2 a2.6,2.6 0 0 1 5.2,0 v2', fill: 'none', stroke: colour, 'stroke-width': 1.4 }),
    s('rect', { x: -4, y: -0.8, width: 8, height: 6, rx: 1.2, fill: colour }));
}

/** The same padlock in an inline SVG, for HTML tables. */
export function lockIcon(on) {
  const svg = s('svg', { class: `lock-icon${on ? '' : ' off'}`, viewBox: '-6 -6 12 12', width: 12, height: 12 }, lock(on ? '#2f9e44' : '#ced4da'));
  return h('span', { class: 'lock-wrap', title: on ? 'mutual TLS' : 'plaintext' }, svg);
}
