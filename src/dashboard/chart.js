// A small SVG line chart over time: a few series sharing one y axis, gaps where a value is null.
import { h, s } from './util.js';

const W = 520;
const H = 190;
const M = { left: 52, right: 14, top: 14, bottom: 26 };

/** A readable top for an axis: 1, 2 or 5 times a power of ten, at least `max`. */
function niceTop(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/**
 * `series`: `[{ name, colour, values: [number|null] }]` over `times` (epoch ms, oldest first);
 * `format` writes an axis value; `fixedTop` pins the y axis (e.g. 1 for a ratio).
 */
export function lineChart({ title, times, series, format, fixedTop, fixedBottom = 0, area = false }) {
  const all = series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined);
  const top = fixedTop ?? niceTop(Math.max(0, ...all));
  const bottom = fixedBottom;
  const t0 = times[0] ?? Date.now() - 600_000;
  const t1 = times[times.length - 1] ?? Date.now();
  const x = (t) => M.left + ((t - t0) / Math.max(1, t1 - t0)) * (W - M.left - M.right);
  const y = (v) => M.top + (1 - (v - bottom) / (top - bottom || 1)) * (H - M.top - M.bottom);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  for (let i = 0; i <= 4; i++) {
    const v = bottom + ((top - bottom) * i) / 4;
    svg.append(s('line', { class: 'grid', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }), s('text', { class: 'axis', x: M.left - 8, y: y(v) + 4, 'text-anchor': 'end', text: format(v) }));
  }
  for (let i = 0; i <= 5; i++) {
    const t = t0 + ((t1 - t0) * i) / 5;
    const mins = Math.round((t1 - t) / 60_000);
    svg.append(s('text', { class: 'axis', x: x(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 5 ? 'end' : 'middle', text: mins === 0 ? 'now' : `-${mins}m` }));
  }
  for (const sr of series) {
    let d = '';
    let run = [];
    const runs = [];
    sr.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        if (run.length > 0) runs.push(run);
        run = [];
        return;
      }
      run.push([x(times[i]), y(Math.min(top, Math.max(bottom, v)))]);
    });
    if (run.length > 0) runs.push(run);
    for (const r of runs) {
      d += r.map(([px, py], i) => `${i === 0 ? 'M' : 'L'}${px.toFixed(1)},${py.toFixed(1)}`).join('');
      if (area && r.length > 1) svg.append(s('path', { class: 'area', d: `${r.map(([px, py], i) => `${i === 0 ? 'M' : 'L'}${px.toFixed(1)},${py.toFixed(1)}`).join('')}L${r[r.length - 1][0].toFixed(1)},${y(bottom)}L${r[0][0].toFixed(1)},${y(bottom)}z`, fill: sr.colour }));
      if (r.length === 1) svg.append(s('circle', { cx: r[0][0], cy: r[0][1], r: 2.5, fill: sr.colour }));
    }
    svg.append(s('path', { class: 'line', d, stroke: sr.colour, 'data-series': sr.name }));
  }
  const keys = h('div', { class: 'chart-keys' }, series.map((sr) => h('span', { class: 'chart-key' }, h('i', { class: 'swatch' }), sr.name)));
  keys.querySelectorAll('.swatch').forEach((sw, i) => { sw.style.background = series[i].colour; });
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, h('span', { text: title }), keys), svg);
}
