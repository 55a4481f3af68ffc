// The dashboard's entry: the admin token, hash routing between the pages, and the header.
import { get, setToken, token, whenUnauthorized } from './api.js';
import { h } from './util.js';
import { topologyPage } from './topology.js';
import { servicePage } from './service.js';
import { tapPage } from './tap.js';
import { tracesPage, tracePage } from './traces.js';
import { problemsPage } from './problems.js';

const main = document.getElementById('main');
let current = null;
let refused = false;

/** `weft dashboard` hands the token in the fragment: keep it for this tab only, and out of the address bar and history. */
function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has('token')) return;
  setToken(fragment.get('token'));
  refused = false;
  history.replaceState(null, '', `${location.pathname}#/`);
  void header();
}

/** `#/service/default/web` → the page and its arguments. */
function route() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter((p) => p !== '').map(decodeURIComponent);
  const params = new URLSearchParams(query);
  switch (parts[0]) {
    case undefined: return { nav: 'topology', page: topologyPage, args: {} };
    case 'service': return { nav: 'topology', page: servicePage, args: { service: `${parts[1]}/${parts[2]}` } };
    case 'tap': return { nav: 'tap', page: tapPage, args: { service: parts.length === 3 ? `${parts[1]}/${parts[2]}` : null } };
    case 'traces': return parts[1] !== undefined ? { nav: 'traces', page: tracePage, args: { id: parts[1] } } : { nav: 'traces', page: tracesPage, args: { service: params.get('service') ?? '' } };
    case 'problems': return { nav: '', page: problemsPage, args: {} };
    default: return { nav: '', page: notFound, args: { path } };
  }
}

function notFound(el, { path }) {
  el.append(h('div', { class: 'card' }, h('h2', { text: 'Not found' }), h('p', { text: `No page at ${path}. ` }, h('a', { href: '#/', text: 'Back to the topology' }))));
}

function show() {
  takeToken();
  current?.stop?.();
  current = null;
  main.replaceChildren();
  if (!token() || refused) return askToken();
  const r = route();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === r.nav);
  main.dataset.page = r.page.name;
  current = r.page(main, r.args) ?? null;
}

function askToken() {
  main.dataset.page = 'token';
  const input = h('input', { type: 'password', id: 'token', name: 'token', placeholder: 'weft-admin.…', autocomplete: 'off', spellcheck: 'false' });
  const form = h('form', { class: 'card token-card' },
    h('h2', { text: refused ? 'The admin token was refused' : 'Admin token' }),
    h('p', { text: 'The dashboard calls the control plane API, which needs its admin token. Run ' }, h('code', { text: 'weft dashboard' }), ' for a link that carries it, or paste it here.'),
    h('div', { class: 'row' }, input, h('button', { type: 'submit', text: 'Open' })));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (input.value.trim() === '') return;
    setToken(input.value.trim());
    refused = false;
    show();
    void header();
  });
  main.append(form);
  input.focus();
}

whenUnauthorized(() => {
  if (refused) return;
  refused = true;
  setToken(null);
  show();
});

/** The header: mesh name and trust domain, connected proxies, problems. */
async function header() {
  if (!token() || refused) return;
  try {
    const [health, meshes, problems] = await Promise.all([get('/api/v1/health'), get('/api/v1/resources?kind=Mesh'), get('/api/v1/problems')]);
    const mesh = meshes.items[0];
    document.getElementById('mesh').replaceChildren(
      h('strong', { text: mesh?.metadata.name ?? 'mesh' }),
      h('span', { class: 'muted', text: ` · ${mesh?.spec?.trustDomain ?? 'cluster.local'}` }),
    );
    document.getElementById('proxies').textContent = `${health.proxies} ${health.proxies === 1 ? 'proxy' : 'proxies'}`;
    const n = problems.resources.length + problems.files.length;
    const p = document.getElementById('problems');
    p.textContent = `${n} ${n === 1 ? 'problem' : 'problems'}`;
    p.classList.toggle('bad', n > 0);
    p.classList.toggle('good', n === 0);
    const live = document.getElementById('live');
    live.classList.remove('down');
    live.title = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    const live = document.getElementById('live');
    live.classList.add('down');
    live.title = `control plane unreachable: ${err.message}`;
  }
}


window.addEventListener('hashchange', show);
show();
void header();
setInterval(() => void header(), 5000);
