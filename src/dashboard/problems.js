// Resources and files with problems: what `weft check` would complain about.
import { get } from './api.js';
import { card, empty, h } from './util.js';

export function problemsPage(el) {
  const body = h('div');
  el.append(h('div', { class: 'page-head' }, h('h1', { text: 'Problems' }), h('span', { class: 'muted', text: 'resources the compiler refused in part, and unreadable files' })), card('Problems', body));
  get('/api/v1/problems').then((p) => {
    const items = [...p.resources.map((r) => [r.key, r.errors.map((e) => e.text)]), ...p.files.map((f) => [f.file, f.errors])];
    body.replaceChildren(items.length === 0 ? empty('None: every resource applies cleanly.') : h('table', { class: 'table' }, h('tbody', {}, items.map(([k, errs]) => h('tr', {}, h('td', { class: 'mono', text: k }), h('td', {}, errs.map((e) => h('div', { class: 'problem', text: e }))))))));
  }, (err) => body.replaceChildren(empty(err.message)));
}
