// loadgen: steady traffic for the shop, so there is always something for the mesh to route and measure.
//
// Env:
//   TARGET    base URL (default http://web)
//   RATE      requests per second (default 20)
//   DURATION  seconds to run, then exit 0 (default: until SIGTERM/SIGINT), for use as a one-shot job
//   PATHS     comma-separated paths, sent in turn (default /,/product/1,…,/product/5)
//   HTTP_PROXY / http_proxy (optional), as for the servers
//
// The rate is open-loop: requests go out on a clock, not when the previous one returns, so a slow
// service gets more concurrent requests instead of less traffic (what real users do). At most 200
// may be in flight; a request due beyond that is skipped and counted, not queued.
import { performance } from 'node:perf_hooks';
import { proxyUrl, request } from './lib/http-client.mjs';

const MAX_IN_FLIGHT = 200;
const REPORT_EVERY_MS = 10_000;
const DEFAULT_PATHS = '/,/product/1,/product/2,/product/3,/product/4,/product/5';

const target = (process.env.TARGET || 'http://web').replace(/\/+$/, '');
const rate = positive('RATE', process.env.RATE, 20);
const duration = process.env.DURATION ? positive('DURATION', process.env.DURATION) : null;
const paths = (process.env.PATHS || DEFAULT_PATHS)
  .split(',')
  .map((p) => p.trim())
  .filter(Boolean)
  .map((p) => (p.startsWith('/') ? p : `/${p}`));
if (paths.length === 0) fatal('loadgen: env PATHS lists no paths');
if (!URL.canParse(target + paths[0]) || new URL(target).protocol !== 'http:') {
  fatal(`loadgen: env TARGET must be an http:// URL, got "${target}"`);
}

const stats = { sent: 0, ok: 0, failed: 0, skipped: 0, byStatus: {} };
let inFlight = 0;
let onIdle = null; // set while draining at the end of DURATION

function fire(n) {
  if (inFlight >= MAX_IN_FLIGHT) {
    stats.skipped++;
    return;
  }
  stats.sent++;
  inFlight++;
  request(target + paths[n % paths.length])
    .then(
      (res) => record(String(res.status), res.status >= 200 && res.status < 300),
      (err) => record(err.code ?? 'error', false), // "timeout", "ECONNREFUSED", ...
    )
    .finally(() => {
      inFlight--;
      if (inFlight === 0) onIdle?.();
    });
}

function record(status, ok) {
  stats[ok ? 'ok' : 'failed']++;
  stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
}

function report() {
  let line = `loadgen: sent ${stats.sent}, ok ${stats.ok}, failed ${stats.failed} (by status: ${JSON.stringify(stats.byStatus)})`;
  if (stats.skipped) line += `, skipped ${stats.skipped} at ${MAX_IN_FLIGHT} in flight`;
  if (inFlight) line += `, ${inFlight} still in flight`;
  console.log(line);
}

// The schedule is "request n is due at n / RATE seconds", checked on a short timer. Counting what is
// due, rather than firing once per timer tick, keeps the rate true when timers drift or RATE > 1000.
const total = duration === null ? Infinity : Math.ceil(duration * rate);
const start = performance.now();
let due = 0;
const clock = setInterval(() => {
  const now = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
  while (due < now) fire(due++);
}, Math.max(1, Math.min(1000 / rate, 100)));
const reporter = setInterval(report, REPORT_EVERY_MS);

console.log(
  `loadgen: ${rate} req/s to ${target} on ${paths.join(',')}${duration === null ? '' : ` for ${duration} s`}` +
    (proxyUrl ? ` via proxy ${proxyUrl}` : ''),
);

function finish() {
  report();
  process.exit(0); // exit explicitly: the client's keep-alive sockets would hold the process open
}

if (duration !== null) {
  setTimeout(() => {
    while (due < total) fire(due++); // the clock may not have ticked since the last request fell due
    clearInterval(clock);
    clearInterval(reporter);
    // Let the last requests land (each is bounded by the client's timeout) so the final count is whole.
    if (inFlight === 0) finish();
    else onIdle = finish;
  }, duration * 1000);
}
process.on('SIGTERM', finish);
process.on('SIGINT', finish);

function positive(name, raw, fallback) {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) fatal(`loadgen: env ${name} must be a positive number, got "${raw}"`);
  return value;
}

function fatal(message) {
  console.error(message);
  process.exit(1);
}
