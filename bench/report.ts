/**
 * Turning measurements into the results table (markdown) and the same data as JSON.
 */
import type { OpenLoopResult } from './open-loop.js';
import type { MachineInfo } from './lib/tools.js';
import type { WrkResult } from './wrk.js';

/** Settings of one run, as recorded in the results. */
export interface BenchSettings {
  durationSec: number;
  warmupSec: number;
  rate: number;
  connections: number;
  wrkThreads: number;
  proxyCore: number | null;
  loadCore: number | null;
  rows: string[];
}

/** Closed-loop (wrk) throughput and the proxy's CPU during it. */
export interface ClosedLoopMeasurement extends Omit<WrkResult, 'raw'> {
  /** CPU consumed by the proxy processes during the wrk run, and the wall time it took. */
  proxyCpuMs: number | null;
  wallSec: number;
  /** (proxyCpuMs / wallSec) / (requestsPerSec / 1000): CPU-ms per second of load at 1,000 req/s. */
  cpuMsPer1kRps: number | null;
  /** How busy each core was during the wrk run (proxy core, load core), in %. */
  proxyCoreBusyPct: number;
  loadCoreBusyPct: number;
}

/** Everything measured for one row. */
export interface RowResult {
  name: string;
  description: string;
  failure: string | null;
  closedLoop: ClosedLoopMeasurement | null;
  openLoop: OpenLoopResult | null;
  rssMiB: number | null;
  notes: string[];
}

/** The whole run; written as <stamp>.json next to <stamp>.md. */
export interface BenchReport {
  machine: MachineInfo;
  settings: BenchSettings;
  rows: RowResult[];
}

const DASH = '—';

function fixed(n: number | null | undefined, digits: number): string {
  return n === null || n === undefined || !Number.isFinite(n) ? DASH : n.toFixed(digits);
}

function integer(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? DASH : Math.round(n).toLocaleString('en-US');
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0)
    return DASH;
  return `${(a / b).toFixed(2)}×`;
}

function ms(n: number | null | undefined): string {
  return fixed(n, n !== null && n !== undefined && n >= 10 ? 1 : 3);
}

function find(report: BenchReport, name: string): RowResult | undefined {
  return report.rows.find((r) => r.name === name && r.failure === null);
}

/** The main table, one line per row. */
export function resultsTable(report: BenchReport): string {
  const nginx = find(report, 'nginx');
  const direct = find(report, 'direct');
  const lines = [
    '| Row | req/s (closed loop) | vs nginx | vs direct | p50 ms | p90 ms | p99 ms | p99.9 ms | CPU ms per 1k req/s | RSS MiB | notes |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of report.rows) {
    if (r.failure !== null) {
      lines.push(`| ${r.name} | failed: ${escapeCell(r.failure)} | ${DASH} | ${DASH} | ${DASH} | ${DASH} | ${DASH} | ${DASH} | ${DASH} | ${DASH} | |`);
      continue;
    }
    const rps = r.closedLoop?.requestsPerSec;
    const lat = r.openLoop?.latency;
    lines.push(
      `| ${r.name} | ${integer(rps)} | ${ratio(rps, nginx?.closedLoop?.requestsPerSec)} | ${ratio(rps, direct?.closedLoop?.requestsPerSec)} | ${ms(lat?.p50Ms)} | ${ms(lat?.p90Ms)} | ${ms(lat?.p99Ms)} | ${ms(lat?.p999Ms)} | ${fixed(r.closedLoop?.cpuMsPer1kRps, 1)} | ${fixed(r.rssMiB, 1)} | ${escapeCell(r.notes.join('; '))} |`,
    );
  }
  return lines.join('\n');
}

/** Ratios against the two baselines: req/s (higher is better), latency and CPU (lower is better). */
export function ratiosTable(report: BenchReport): string {
  const nginx = find(report, 'nginx');
  const direct = find(report, 'direct');
  const lines = [
    '| Row | req/s ÷ nginx | p50 ÷ nginx | p99 ÷ nginx | p99.9 ÷ nginx | CPU ÷ nginx | RSS ÷ nginx | req/s ÷ direct | p50 ÷ direct | p99 ÷ direct |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of report.rows) {
    if (r.failure !== null) continue;
    const lat = r.openLoop?.latency;
    lines.push(
      `| ${r.name} | ${ratio(r.closedLoop?.requestsPerSec, nginx?.closedLoop?.requestsPerSec)} | ${ratio(lat?.p50Ms, nginx?.openLoop?.latency.p50Ms)} | ${ratio(lat?.p99Ms, nginx?.openLoop?.latency.p99Ms)} | ${ratio(lat?.p999Ms, nginx?.openLoop?.latency.p999Ms)} | ${ratio(r.closedLoop?.cpuMsPer1kRps, nginx?.closedLoop?.cpuMsPer1kRps)} | ${ratio(r.rssMiB, nginx?.rssMiB)} | ${ratio(r.closedLoop?.requestsPerSec, direct?.closedLoop?.requestsPerSec)} | ${ratio(lat?.p50Ms, direct?.openLoop?.latency.p50Ms)} | ${ratio(lat?.p99Ms, direct?.openLoop?.latency.p99Ms)} |`,
    );
  }
  return lines.join('\n');
}

/** Sanity figures: was the load side saturated, did the generator keep its schedule. */
export function checksTable(report: BenchReport): string {
  const lines = [
    '| Row | proxy core busy % (wrk) | load core busy % (wrk) | wrk errors / non-2xx | open-loop sent / done / errors / non-2xx | generator send lag p99 ms | open-loop max ms |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of report.rows) {
    if (r.failure !== null) continue;
    const c = r.closedLoop;
    const o = r.openLoop;
    lines.push(
      `| ${r.name} | ${fixed(c?.proxyCoreBusyPct, 0)} | ${fixed(c?.loadCoreBusyPct, 0)} | ${c ? `${c.socketErrors} / ${c.non2xx}` : DASH} | ${o ? `${o.intended} / ${o.completed} / ${o.errors + o.unfinished} / ${o.non2xx}` : DASH} | ${ms(o?.sendLag.p99Ms)} | ${ms(o?.latency.maxMs)} |`,
    );
  }
  return lines.join('\n');
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function pinning(s: BenchSettings): string {
  return s.proxyCore === null
    ? 'no pinning (fewer than 2 cores or no taskset)'
    : `proxy on core ${s.proxyCore}; load generator and upstream on core ${s.loadCore}`;
}

/** The full markdown results file. */
export function markdownReport(report: BenchReport): string {
  const { machine: m, settings: s } = report;
  return `# Weft benchmark results — ${m.date}

- Command: \`${m.command}\`
- Machine: ${m.nproc} CPUs (\`nproc\`), ${m.cpuModel}, ${m.kernel}; load average ${m.loadAverage.toFixed(2)} at start
- Node ${m.node}; ${m.nginx}; ${m.haproxy}; ${m.wrk}
- Pinning: ${pinning(s)}
- Closed loop: \`wrk -t${s.wrkThreads} -c${s.connections} -d${s.durationSec}s\` (keep-alive), after a ${s.warmupSec} s warm-up
- Open loop: ${s.rate} req/s for ${s.durationSec} s over ${s.connections} keep-alive connections, latency from each request's intended send time (bench/open-loop.ts)
- Upstream: nginx \`return 200 "hello world\\n"\`, 1 worker, keep-alive

## Results

${resultsTable(report)}

- **req/s**: closed-loop maximum throughput (wrk). **vs nginx / vs direct**: req/s ÷ the nginx / direct row's req/s.
- **p50 … p99.9**: open-loop latency at the fixed rate, in milliseconds, corrected for coordinated omission.
- **CPU ms per 1k req/s**: CPU time of the proxy processes during the closed-loop run, per second, scaled to
  1,000 req/s: (cpu_ms ÷ duration_s) ÷ (req/s ÷ 1000). It is the CPU-milliseconds the proxy burns per second
  for every 1,000 req/s it serves (10 = 1 % of a core per 1,000 req/s).
- **RSS MiB**: resident memory (VmRSS) of the proxy processes at the end of the row, summed.

## Ratios

Throughput ratios: higher is better. Latency, CPU and memory ratios: lower is better.

${ratiosTable(report)}

## Checks

${checksTable(report)}

## Rows

${report.rows.map((r) => `- **${r.name}**: ${r.description}`).join('\n')}
`;
}
