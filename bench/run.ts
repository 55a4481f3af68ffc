/**
 * Weft benchmark harness — `npm run bench`.
 *
 * One command measures, in one run on this machine, every row of bench/rows/index.ts (direct,
 * Weft, two Weft proxies with mTLS between them, nginx, HAProxy, a node:http + undici peer) against the same upstream (a dedicated nginx):
 *
 *   1. closed-loop maximum req/s with wrk (`-t1 -c<connections> -d<duration>s`, keep-alive),
 *      after a short wrk warm-up;
 *   2. the proxy's CPU during that wrk run (/proc/<pid>/stat utime+stime of the proxy and all its
 *      descendants), reported as CPU-ms per second per 1,000 req/s;
 *   3. open-loop latency p50/p90/p99/p99.9 at a fixed rate (bench/open-loop.ts, latency measured
 *      from each request's intended send time, so coordinated omission is avoided);
 *   4. the proxy's RSS (VmRSS, summed over its processes) at the end.
 *
 * The proxy is pinned to core 0 (`taskset -c 0`); wrk, the open-loop generator, the upstream and
 * this harness to core 1. Everything listens on 127.0.0.1 on ports the OS picked. Configs, pid files
 * and logs go to a temp dir that is removed at the end. Every process started is stopped, also on
 * errors and Ctrl-C. A row that cannot start is reported as "failed: <reason>", the others still run.
 *
 * Output: bench/results/<YYYY-MM-DD-HHMMSS>.md (tables + machine info) and .json (all figures),
 * and the tables on stdout. Baselines are measured in the same run, so read the ratios.
 *
 * Options (flag, or environment variable):
 *   --duration <s>      BENCH_DURATION     seconds of each closed-loop and open-loop run (10)
 *   --rate <req/s>      BENCH_RATE         open-loop fixed rate (2000)
 *   --connections <n>   BENCH_CONNECTIONS  wrk connections and open-loop sockets (50)
 *   --warmup <s>        BENCH_WARMUP       wrk warm-up before measuring, 0 to skip (2)
 *   --only <a,b>        BENCH_ONLY         run only these rows, e.g. --only weft,nginx
 *   --out <dir>         BENCH_OUT          results directory (bench/results)
 *   --keep-tmp                             keep the temp dir (configs, logs) for debugging
 * e.g. `npm run bench -- --duration 5 --only direct,weft,nginx`
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OpenLoopResult } from './open-loop.js';
import { oneLine } from './lib/http-probe.js';
import { coreBusyPercent, coreTimes, cpuMs, processTree, rssKiB } from './lib/proc.js';
import { launch, runBench, stopAll, wasInterrupted } from './lib/processes.js';
import { ensureCommands, hasCommand, machineInfo } from './lib/tools.js';
import {
  markdownReport,
  ratiosTable,
  resultsTable,
  type BenchReport,
  type BenchSettings,
  type ClosedLoopMeasurement,
  type RowResult,
} from './report.js';
import { ROWS } from './rows/index.js';
import type { BenchRow, RowContext } from './rows/types.js';
import { startUpstream } from './upstream.js';
import { runWrk } from './wrk.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const REPO_ROOT = path.resolve(HERE, '..', '..');
const HOST_HEADER = 'upstream';
const DRAIN_SEC = 5;
/** Open-loop warm-up: sent at the fixed rate before recording starts. */
const OPEN_LOOP_WARMUP_SEC = 1;
/** Up to this rate the generator runs without V8's optimizing compiler (see open-loop.ts). */
const NO_OPT_MAX_RATE = 8000;

interface Options {
  durationSec: number;
  rate: number;
  connections: number;
  warmupSec: number;
  only: string[] | null;
  outDir: string;
  keepTmp: boolean;
}

function parseOptions(argv: string[]): Options {
  const flag = (name: string, env: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0) {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
      return v;
    }
    const eq = argv.find((a) => a.startsWith(`--${name}=`));
    if (eq) return eq.slice(name.length + 3);
    return process.env[env] || undefined;
  };
  const num = (name: string, env: string, fallback: number, min: number): number => {
    const raw = flag(name, env);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number ≥ ${min}, got "${raw}"`);
    return v;
  };
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      'usage: npm run bench -- [--duration 10] [--rate 2000] [--connections 50] [--warmup 2] [--only weft,nginx] [--out dir] [--keep-tmp]\n' +
        `rows: ${ROWS.map((r) => r.name).join(', ')}\n`,
    );
    process.exit(0);
  }
  const only = flag('only', 'BENCH_ONLY');
  return {
    durationSec: num('duration', 'BENCH_DURATION', 10, 1),
    rate: num('rate', 'BENCH_RATE', 2000, 1),
    connections: Math.round(num('connections', 'BENCH_CONNECTIONS', 50, 1)),
    warmupSec: num('warmup', 'BENCH_WARMUP', 2, 0),
    only: only ? only.split(',').map((s) => s.trim()).filter(Boolean) : null,
    outDir: path.resolve(flag('out', 'BENCH_OUT') ?? path.join(REPO_ROOT, 'bench', 'results')),
    keepTmp: argv.includes('--keep-tmp'),
  };
}

const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

function stamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Run the open-loop generator as its own process on the load core, so it never shares the proxy's. */
async function runOpenLoopProcess(port: number, opts: Options, core: number | null): Promise<OpenLoopResult> {
  const script = path.join(HERE, 'open-loop.js');
  const gen = launch(
    'open-loop',
    process.execPath,
    [
      ...(opts.rate <= NO_OPT_MAX_RATE ? ['--no-opt'] : []),
      script,
      '--port',
      String(port),
      '--rate',
      String(opts.rate),
      '--duration',
      String(opts.durationSec),
      '--connections',
      String(opts.connections),
      '--host-header',
      HOST_HEADER,
      '--drain',
      String(DRAIN_SEC),
      '--warmup',
      String(OPEN_LOOP_WARMUP_SEC),
    ],
    // The generator busy-polls its event loop between sends; at nice 19 it never delays the
    // upstream nginx sharing its core (that contention otherwise adds milliseconds to p99.9).
    { core, nice: 19 },
  );
  const timer = setTimeout(() => void gen.stop(), (OPEN_LOOP_WARMUP_SEC + opts.durationSec + DRAIN_SEC + 15) * 1000);
  const code = await gen.exited;
  clearTimeout(timer);
  await gen.stop();
  const out = gen.outputTail();
  const json = out
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (code !== 0 || !json) throw new Error(`open-loop generator exited (${code}): ${oneLine(out)}`);
  return JSON.parse(json) as OpenLoopResult;
}

async function measureRow(row: BenchRow, ctx: RowContext, opts: Options, loadCore: number | null): Promise<RowResult> {
  const result: RowResult = {
    name: row.name,
    description: row.description,
    failure: null,
    closedLoop: null,
    openLoop: null,
    rssMiB: null,
    notes: [],
  };
  log(`${row.name}: starting`);
  let running;
  try {
    running = await row.start(ctx);
  } catch (err) {
    result.failure = err instanceof Error ? err.message : String(err);
    log(`${row.name}: failed: ${result.failure}`);
    return result;
  }
  result.notes.push(...(running.notes ?? []));
  const hasProxy = running.pids.length > 0;
  const wrkOpts = { port: running.port, connections: opts.connections, threads: 1, hostHeader: HOST_HEADER, core: loadCore };
  try {
    if (opts.warmupSec > 0) {
      log(`${row.name}: warm-up ${opts.warmupSec} s`);
      await runWrk({ ...wrkOpts, durationSec: opts.warmupSec });
    }
    log(`${row.name}: closed loop ${opts.durationSec} s (wrk -c${opts.connections})`);
    const pidsBefore = processTree(running.pids);
    const cpuBefore = cpuMs(pidsBefore);
    const coresBefore = coreTimes();
    const t0 = process.hrtime.bigint();
    const wrk = await runWrk({ ...wrkOpts, durationSec: opts.durationSec });
    const wallSec = Number(process.hrtime.bigint() - t0) / 1e9;
    const coresAfter = coreTimes();
    const pidsAfter = [...new Set([...pidsBefore, ...processTree(running.pids)])];
    const proxyCpuMs = hasProxy ? cpuMs(pidsAfter) - cpuBefore : null;
    const closed: ClosedLoopMeasurement = {
      requestsPerSec: wrk.requestsPerSec,
      requests: wrk.requests,
      seconds: wrk.seconds,
      avgLatencyMs: wrk.avgLatencyMs,
      non2xx: wrk.non2xx,
      socketErrors: wrk.socketErrors,
      proxyCpuMs,
      wallSec,
      cpuMsPer1kRps: proxyCpuMs === null || wrk.requestsPerSec <= 0 ? null : proxyCpuMs / wallSec / (wrk.requestsPerSec / 1000),
      proxyCoreBusyPct: ctx.proxyCore === null ? Number.NaN : coreBusyPercent(coresBefore, coresAfter, ctx.proxyCore),
      loadCoreBusyPct: loadCore === null ? Number.NaN : coreBusyPercent(coresBefore, coresAfter, loadCore),
    };
    result.closedLoop = closed;
    if (wrk.non2xx > 0 || wrk.socketErrors > 0)
      result.notes.push(`wrk: ${wrk.non2xx} non-2xx, ${wrk.socketErrors} socket errors of ${wrk.requests}`);
    if (proxyCpuMs !== null && ctx.proxyCore !== null) {
      // Busy time on the proxy core not accounted to the proxy: other processes (or softirq work).
      const otherPct = closed.proxyCoreBusyPct - proxyCpuMs / wallSec / 10;
      if (otherPct > 10) result.notes.push(`proxy core ${otherPct.toFixed(0)} % busy with other work`);
    }
    if (closed.loadCoreBusyPct > 95) result.notes.push(`load core ${closed.loadCoreBusyPct.toFixed(0)} % busy: req/s may be load-bound`);
    log(`${row.name}: ${Math.round(wrk.requestsPerSec)} req/s; open loop ${opts.rate} req/s for ${opts.durationSec} s`);

    const open = await runOpenLoopProcess(running.port, opts, loadCore);
    result.openLoop = open;
    const lost = open.errors + open.unfinished;
    if (lost > 0 || open.non2xx > 0)
      result.notes.push(`open loop: ${lost} failed/unanswered, ${open.non2xx} non-2xx of ${open.intended}`);
    if (open.sendLag.p99Ms > 1) result.notes.push(`generator send lag p99 ${open.sendLag.p99Ms.toFixed(2)} ms`);

    if (hasProxy) {
      const pids = processTree(running.pids);
      if (pids.length === 0) result.notes.push('proxy exited during the run');
      else result.rssMiB = rssKiB(pids) / 1024;
    }
    log(
      `${row.name}: p50 ${open.latency.p50Ms.toFixed(3)} ms, p99 ${open.latency.p99Ms.toFixed(3)} ms, p99.9 ${open.latency.p999Ms.toFixed(3)} ms`,
    );
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    if (result.closedLoop === null) result.failure = reason;
    else result.notes.push(`failed: ${reason}`);
    log(`${row.name}: failed: ${reason}`);
  } finally {
    if (running.finalCheck) {
      try {
        const check = await running.finalCheck();
        result.notes.push(...check.notes);
        if (check.failure !== undefined) {
          result.failure = check.failure;
          log(`${row.name}: failed: ${check.failure}`);
        }
      } catch (err) {
        result.notes.push(`final check failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    await running.stop();
  }
  return result;
}

/** Move this harness (all threads) to the load core, so it never competes with the proxy. */
function pinSelf(core: number | null): void {
  if (core === null) return;
  spawnSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' });
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const rows = opts.only ? ROWS.filter((r) => opts.only!.includes(r.name)) : [...ROWS];
  if (opts.only) {
    const unknown = opts.only.filter((n) => !ROWS.some((r) => r.name === n));
    if (unknown.length > 0) throw new Error(`unknown row(s) ${unknown.join(', ')}; rows: ${ROWS.map((r) => r.name).join(', ')}`);
  }

  const needed = [...new Set(['wrk', 'nginx', 'taskset', ...rows.flatMap((r) => r.requires)])];
  const stillMissing = ensureCommands(needed, log);
  for (const tool of ['wrk', 'nginx'])
    if (stillMissing.includes(tool)) throw new Error(`${tool} is required and could not be installed`);

  const nproc = os.availableParallelism();
  const canPin = nproc >= 2 && hasCommand('taskset');
  const proxyCore = canPin ? 0 : null;
  const loadCore = canPin ? 1 : null;
  if (!canPin) log('warning: fewer than 2 cores or no taskset: running without CPU pinning');

  const args = process.argv.slice(2);
  const command = args.length > 0 ? `npm run bench -- ${args.join(' ')}` : 'npm run bench';
  const machine = machineInfo(command); // before pinning: nproc honours this process's affinity
  pinSelf(loadCore);
  const settings: BenchSettings = {
    durationSec: opts.durationSec,
    warmupSec: opts.warmupSec,
    rate: opts.rate,
    connections: opts.connections,
    wrkThreads: 1,
    proxyCore,
    loadCore,
    rows: rows.map((r) => r.name),
  };
  if (machine.loadAverage > 0.5)
    log(`warning: load average ${machine.loadAverage.toFixed(2)}: other work on this machine will show up in the latency tails`);
  const perRowSec = opts.warmupSec + OPEN_LOOP_WARMUP_SEC + 2 * opts.durationSec + 2;
  log(`rows: ${settings.rows.join(', ')}; about ${Math.ceil((perRowSec * rows.length) / 10) * 10} s`);

  const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-'));
  chmodSync(tmpRoot, 0o755); // nginx workers drop privileges and must reach their temp paths
  cleanupTmp = () => {
    if (!opts.keepTmp) rmSync(tmpRoot, { recursive: true, force: true });
    else log(`kept ${tmpRoot}`);
  };

  const results: RowResult[] = [];
  try {
    const upstreamDir = path.join(tmpRoot, 'upstream');
    mkdirSync(upstreamDir);
    const upstream = await startUpstream(upstreamDir, loadCore);
    log(`upstream nginx on 127.0.0.1:${upstream.port}`);
    for (const row of rows) {
      if (wasInterrupted()) break;
      const dir = path.join(tmpRoot, row.name.replace(/[^a-z0-9-]/gi, '_'));
      mkdirSync(dir, { mode: 0o755 });
      const ctx: RowContext = { upstreamPort: upstream.port, tmpDir: dir, proxyCore, repoRoot: REPO_ROOT };
      results.push(await measureRow(row, ctx, opts, loadCore));
    }
    await upstream.stop();
  } finally {
    await stopAll();
    cleanupTmp();
    cleanupTmp = () => {};
  }

  const report: BenchReport = { machine, settings, rows: results };
  mkdirSync(opts.outDir, { recursive: true });
  const base = path.join(opts.outDir, stamp(new Date(machine.date)));
  writeFileSync(`${base}.md`, markdownReport(report));
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);

  process.stdout.write(`\n${resultsTable(report)}\n\nRatios vs nginx and vs direct (req/s: higher is better; latency, CPU, RSS: lower is better)\n\n${ratiosTable(report)}\n\n`);
  process.stdout.write(`results: ${path.relative(process.cwd(), base)}.md and .json\n`);
}

let cleanupTmp: () => void = () => {};

runBench(main, log, () => cleanupTmp);
