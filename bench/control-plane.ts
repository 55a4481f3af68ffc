/**
 * Control-plane scale benchmark — `npm run bench:control`.
 *
 * Starts `weft control` (pinned to core 0), applies a mesh of `--services` Services and
 * `--endpoints` Workloads through the API, then connects `--proxies` simulated proxies
 * (bench/control-plane-clients.ts, a few processes on core 1, each holding many real config streams
 * that ACK every update at once). Then it makes `--changes` endpoint changes, one at a time, through
 * the API, and measures for each:
 *
 *   - the time from sending the apply until each affected proxy has the update (the client saw the line)
 *     and until the control plane recorded its ACK (`ackedAt` in /api/v1/proxies), p50/p99/max;
 *   - the bytes the control plane sent for the change (`weft_control_config_sent_bytes_total`);
 *   - the control plane's CPU time for the change.
 *
 * It also reports the time to load the mesh, the time for every proxy's first full sync, and the
 * control plane's RSS (idle with the mesh loaded, after the first sync, after the changes, and its peak).
 *
 * Options (flag or env): --proxies (BENCH_CP_PROXIES, 1000), --endpoints (BENCH_CP_ENDPOINTS, 10000),
 * --services (BENCH_CP_SERVICES, 100), --changes (BENCH_CP_CHANGES, 20), --processes
 * (BENCH_CP_PROCESSES, 4), --scope <n> (BENCH_CP_SCOPE, 0: each proxy declares n services it calls;
 * 0 declares none, so every proxy gets the whole namespace), --out (BENCH_OUT, bench/results).
 * BENCH_CP_PROF=<dir> writes a CPU profile (.cpuprofile) of the control plane into <dir>.
 * Writes bench/results/control-plane-<stamp>.md and .json and prints the tables.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { cpuMs } from './lib/proc.js';
import { killAllNow, launch, stopAll } from './lib/processes.js';
import { machineInfo } from './lib/tools.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const REPO_ROOT = path.resolve(HERE, '..', '..');
const NAMESPACE = 'default';
const SYNC_TIMEOUT_MS = 180_000;
const CHANGE_TIMEOUT_MS = 30_000;

interface Options {
  proxies: number;
  endpoints: number;
  services: number;
  changes: number;
  processes: number;
  scope: number;
  out: string;
}

function options(argv: string[]): Options {
  const get = (flag: string, env: string, def: string): string => {
    const i = argv.indexOf(flag);
    if (i !== -1 && argv[i + 1] !== undefined) return argv[i + 1]!;
    return process.env[env] ?? def;
  };
  const int = (flag: string, env: string, def: number, min: number): number => {
    const raw = get(flag, env, String(def));
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: ${JSON.stringify(raw)} is not an integer ≥ ${min}`);
    return n;
  };
  const o: Options = {
    proxies: int('--proxies', 'BENCH_CP_PROXIES', 1000, 1),
    endpoints: int('--endpoints', 'BENCH_CP_ENDPOINTS', 10000, 1),
    services: int('--services', 'BENCH_CP_SERVICES', 100, 1),
    changes: int('--changes', 'BENCH_CP_CHANGES', 20, 1),
    processes: int('--processes', 'BENCH_CP_PROCESSES', 4, 1),
    scope: int('--scope', 'BENCH_CP_SCOPE', 0, 0),
    out: path.resolve(REPO_ROOT, get('--out', 'BENCH_OUT', 'bench/results')),
  };
  if (o.proxies > o.endpoints) throw new Error('--proxies: each simulated proxy stands beside one of the endpoints, so it must be ≤ --endpoints');
  if (o.scope > o.services) throw new Error('--scope: must be ≤ --services');
  return o;
}

const now = (): number => performance.timeOrigin + performance.now();
const svcName = (i: number): string => `svc-${String(i).padStart(3, '0')}`;
const wlName = (i: number): string => `wl-${String(i).padStart(5, '0')}`;

/** The services workload `i` calls, when proxies declare a scope: `scope` services from i on. */
function calls(i: number, o: Options): string[] {
  return Array.from({ length: o.scope }, (_, k) => svcName((i + k) % o.services));
}

function workload(i: number, o: Options, extraLabels: Record<string, string> = {}): unknown {
  const spec: Record<string, unknown> = { address: '127.0.0.1', ports: { http: 20000 + (i % 40000) } };
  if (o.scope > 0) spec.calls = calls(i, o);
  return { apiVersion: 'weft.dev/v1alpha1', kind: 'Workload', metadata: { name: wlName(i), namespace: NAMESPACE, labels: { app: svcName(i % o.services), ...extraLabels } }, spec };
}

/** The control plane's admin token, read from its data dir once it has started. */
let adminToken = '';

async function api(base: string, method: string, p: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(new URL(p, base), {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(adminToken !== '' ? { authorization: `Bearer ${adminToken}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* metrics are text */
  }
  return { status: res.status, json, text };
}

async function applyOk(base: string, docs: unknown[]): Promise<void> {
  const r = await api(base, 'POST', '/api/v1/apply', docs);
  if (r.status !== 200) throw new Error(`apply answered ${r.status}: ${r.text.slice(0, 500)}`);
}

async function sentBytes(base: string): Promise<number> {
  const r = await api(base, 'GET', '/metrics');
  const m = /^weft_control_config_sent_bytes_total (\d+)/m.exec(r.text);
  if (m === null) throw new Error('weft_control_config_sent_bytes_total missing from /metrics');
  return Number(m[1]);
}

function memKiB(pid: number): { rss: number; peak: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface ClientStatus {
  connected: number;
  synced: number;
  failed: number;
  bytes: number;
}

class Clients {
  readonly procs: ChildProcess[] = [];
  readonly status: ClientStatus[] = [];
  private waiters: Array<(seen: Record<string, number | null>) => void> = [];
  private seen: Record<string, number | null> = {};
  private reports = 0;

  constructor(count: number) {
    const script = path.join(HERE, 'control-plane-clients.js');
    for (let i = 0; i < count; i++) {
      // taskset execs node, which inherits the IPC channel's descriptor.
      const child = spawn('taskset', ['-c', '1', process.execPath, script], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true });
      this.status.push({ connected: 0, synced: 0, failed: 0, bytes: 0 });
      child.on('message', (m: ClientStatus & { seen?: Record<string, number | null> }) => {
        if (m.seen !== undefined) {
          Object.assign(this.seen, m.seen);
          if (++this.reports === this.procs.length) {
            const seen = this.seen;
            this.seen = {};
            this.reports = 0;
            for (const w of this.waiters.splice(0)) w(seen);
          }
        } else this.status[i] = m;
      });
      this.procs.push(child);
    }
  }

  total(): ClientStatus {
    return this.status.reduce((a, s) => ({ connected: a.connected + s.connected, synced: a.synced + s.synced, failed: a.failed + s.failed, bytes: a.bytes + s.bytes }), { connected: 0, synced: 0, failed: 0, bytes: 0 });
  }

  send(i: number, msg: unknown): void {
    this.procs[i]!.send(msg as object);
  }

  broadcast(msg: unknown): void {
    for (const p of this.procs) p.send(msg as object);
  }

  report(): Promise<Record<string, number | null>> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.broadcast({ report: true });
    });
  }

  stop(): void {
    for (const p of this.procs) {
      try {
        p.send({ stop: true });
      } catch {
        /* gone */
      }
      setTimeout(() => p.kill('SIGKILL'), 2000).unref();
    }
  }
}

interface ChangeResult {
  kind: string;
  service: string;
  affected: number;
  received: { p50: number; p99: number; max: number };
  acked: { p50: number; p99: number; max: number };
  missing: number;
  bytes: number;
  cpuMs: number;
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const log = (s: string): void => console.log(s);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-cp-'));
  process.on('SIGINT', () => {
    killAllNow();
    process.exit(130);
  });
  const cli = path.join(REPO_ROOT, 'bin', 'weft.js');
  // BENCH_CP_PROF=<dir> writes a CPU profile of the control plane there when it stops.
  const prof = process.env.BENCH_CP_PROF;
  const profArgs = prof === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', path.resolve(prof)];
  const cp = launch('weft control', process.execPath, [...profArgs, cli, 'control', '--data-dir', path.join(tmp, 'data'), '--api-port', '0', '--api-address', '127.0.0.1', '--lease-ttl', '60s'], { core: 0 });
  let clients: Clients | null = null;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`weft control did not start: ${cp.outputTail()}`)), 20_000);
      cp.child.stdout!.on('data', (c: Buffer) => {
        out += c.toString('utf8');
        const m = /"apiPort":(\d+)/.exec(out);
        if (m !== null) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
    });
    const base = `http://127.0.0.1:${port}`;
    adminToken = readFileSync(path.join(tmp, 'data', 'admin-token'), 'utf8').trim();
    log(`weft control pid ${cp.pid} on ${base}; ${o.services} services, ${o.endpoints} endpoints, ${o.proxies} proxies${o.scope > 0 ? `, each calling ${o.scope} services` : ''}`);

    // 1. The mesh.
    let t = now();
    const services = Array.from({ length: o.services }, (_, i) => ({
      apiVersion: 'weft.dev/v1alpha1',
      kind: 'Service',
      metadata: { name: svcName(i), namespace: NAMESPACE },
      spec: { selector: { app: svcName(i) }, ports: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
    }));
    await applyOk(base, services);
    const BATCH = 1000;
    for (let i = 0; i < o.endpoints; i += BATCH) await applyOk(base, Array.from({ length: Math.min(BATCH, o.endpoints - i) }, (_, k) => workload(i + k, o)));
    const loadMs = now() - t;
    const memLoaded = memKiB(cp.pid);
    log(`mesh applied in ${(loadMs / 1000).toFixed(1)} s (batches of ${BATCH}); control plane RSS ${(memLoaded.rss / 1024).toFixed(0)} MiB`);

    // 2. The proxies connect and sync.
    clients = new Clients(Math.min(o.processes, o.proxies));
    const names = Array.from({ length: o.proxies }, (_, i) => wlName(i));
    const per = Math.ceil(o.proxies / clients.procs.length);
    t = now();
    const bytes0 = await sentBytes(base);
    clients.procs.forEach((_, i) => clients!.send(i, { start: { url: base, namespace: NAMESPACE, workloads: names.slice(i * per, (i + 1) * per) } }));
    for (;;) {
      const s = clients.total();
      if (s.synced === o.proxies) break;
      if (s.failed > 0) throw new Error(`${s.failed} config streams could not be opened`);
      if (now() - t > SYNC_TIMEOUT_MS) throw new Error(`only ${s.synced} of ${o.proxies} proxies synced in ${SYNC_TIMEOUT_MS / 1000} s`);
      await sleep(50);
    }
    const syncMs = now() - t;
    const syncBytes = (await sentBytes(base)) - bytes0;
    const memSynced = memKiB(cp.pid);
    log(`${o.proxies} proxies synced in ${(syncMs / 1000).toFixed(2)} s, ${(syncBytes / 1e6).toFixed(1)} MB sent; control plane RSS ${(memSynced.rss / 1024).toFixed(0)} MiB`);
    await sleep(500);

    // 3. Endpoint changes, one at a time.
    const changes: ChangeResult[] = [];
    for (let k = 0; k < o.changes; k++) {
      const svc = k % o.services;
      const mark = `bench-change-${k}`;
      const add = k % 2 === 0;
      // Even changes add a workload to a service; odd ones relabel an existing endpoint of another.
      const doc = add
        ? { ...(workload(o.endpoints + k, o) as object), metadata: { name: `extra-${k}`, namespace: NAMESPACE, labels: { app: svcName(svc), rev: mark } } }
        : workload(o.proxies + ((svc * 7919) % Math.max(1, o.endpoints - o.proxies)), o, { rev: mark });
      const service = add ? svcName(svc) : ((doc as { metadata: { labels: { app: string } } }).metadata.labels.app);
      const serviceIndex = Number(service.slice(4));
      const affected = names.filter((_, i) => o.scope === 0 || calls(i, o).includes(service));
      clients.broadcast({ mark });
      await sleep(50);
      const b0 = await sentBytes(base);
      const c0 = cpuMs([cp.pid]);
      const t0 = now();
      await applyOk(base, [doc]);
      // Wait until every affected proxy's stream carried the change, bounded.
      let seen: Record<string, number | null> = {};
      for (;;) {
        seen = await clients.report();
        if (affected.every((w) => seen[w] !== null && seen[w] !== undefined) || now() - t0 > CHANGE_TIMEOUT_MS) break;
        await sleep(20);
      }
      // Then read when the control plane recorded each ACK.
      let acked: number[] = [];
      for (;;) {
        const ps = (await api(base, 'GET', '/api/v1/proxies')).json.items as Array<{ id: string; types: { endpoints: { state: string; acked: string | null; latest: string | null; ackedAt: number | null } } }>;
        const byId = new Map(ps.map((p) => [p.id.split('/')[1]!, p.types.endpoints]));
        const done = affected.map((w) => byId.get(w)).filter((e) => e !== undefined && e.acked !== null && e.acked === e.latest && e.ackedAt !== null);
        acked = done.map((e) => e!.ackedAt! - t0);
        if (done.length === affected.length || now() - t0 > CHANGE_TIMEOUT_MS) break;
        await sleep(50);
      }
      const c1 = cpuMs([cp.pid]);
      const b1 = await sentBytes(base);
      const received = affected.map((w) => seen[w]).filter((v): v is number => typeof v === 'number').map((v) => v - t0).sort((a, b) => a - b);
      acked.sort((a, b) => a - b);
      const stats = (xs: number[]) => ({ p50: quantile(xs, 0.5), p99: quantile(xs, 0.99), max: xs[xs.length - 1] ?? NaN });
      const r: ChangeResult = {
        kind: add ? 'add endpoint' : 'relabel endpoint',
        service,
        affected: affected.length,
        received: stats(received),
        acked: stats(acked),
        missing: affected.length - Math.min(received.length, acked.length),
        bytes: b1 - b0,
        cpuMs: c1 - c0,
      };
      void serviceIndex;
      changes.push(r);
      log(`change ${k + 1}/${o.changes} (${r.kind}, ${service}): ${r.affected} proxies, acked p50 ${r.acked.p50.toFixed(0)} ms p99 ${r.acked.p99.toFixed(0)} ms, received p99 ${r.received.p99.toFixed(1)} ms, ${(r.bytes / 1e3).toFixed(0)} kB, CPU ${r.cpuMs.toFixed(0)} ms${r.missing > 0 ? `, ${r.missing} MISSING` : ''}`);
      await sleep(200);
    }
    const memEnd = memKiB(cp.pid);

    // 4. Report.
    const all = (f: (c: ChangeResult) => number) => changes.map(f).sort((a, b) => a - b);
    const summary = {
      ackedP50: quantile(all((c) => c.acked.p50), 0.5),
      ackedP99Worst: Math.max(...changes.map((c) => c.acked.p99)),
      ackedP99Median: quantile(all((c) => c.acked.p99), 0.5),
      receivedP99Median: quantile(all((c) => c.received.p99), 0.5),
      bytesMedian: quantile(all((c) => c.bytes), 0.5),
      cpuMsMedian: quantile(all((c) => c.cpuMs), 0.5),
      missing: changes.reduce((a, c) => a + c.missing, 0),
    };
    const info = machineInfo(`npm run bench:control -- ${process.argv.slice(2).join(' ')}`.trim());
    const mib = (k: number): string => (k / 1024).toFixed(0);
    const md = [
      `# Control-plane scale benchmark, ${info.date}`,
      '',
      `\`${info.command}\` — ${info.nproc} cores (${info.cpuModel}), ${info.kernel}, Node ${info.node}, load average ${info.loadAverage.toFixed(2)} at start.`,
      `Control plane pinned to core 0; ${clients.procs.length} client processes on core 1.`,
      '',
      '| measure | value |',
      '|---|---:|',
      `| services / endpoints / proxies | ${o.services} / ${o.endpoints} / ${o.proxies} |`,
      `| services each proxy declares it calls | ${o.scope === 0 ? 'none (whole namespace)' : o.scope} |`,
      `| apply the mesh (batches of ${BATCH}) | ${(loadMs / 1000).toFixed(1)} s |`,
      `| first sync of every proxy | ${(syncMs / 1000).toFixed(2)} s, ${(syncBytes / 1e6).toFixed(1)} MB sent |`,
      `| endpoint change → ACK at the control plane, p50 (median over changes) | ${summary.ackedP50.toFixed(0)} ms |`,
      `| endpoint change → ACK, p99 (median over changes / worst change) | ${summary.ackedP99Median.toFixed(0)} ms / ${summary.ackedP99Worst.toFixed(0)} ms |`,
      `| endpoint change → update received, p99 (median over changes) | ${summary.receivedP99Median.toFixed(1)} ms |`,
      `| bytes sent per change (median) | ${(summary.bytesMedian / 1e3).toFixed(1)} kB |`,
      `| control-plane CPU per change (median) | ${summary.cpuMsMedian.toFixed(0)} ms |`,
      `| control-plane RSS: mesh loaded / after first sync / after changes / peak | ${mib(memLoaded.rss)} / ${mib(memSynced.rss)} / ${mib(memEnd.rss)} / ${mib(memEnd.peak)} MiB |`,
      `| proxies that missed a change | ${summary.missing} |`,
      '',
      '| # | change | service | affected proxies | received p50 / p99 / max ms | ACKed p50 / p99 / max ms | kB sent | CPU ms |',
      '|---:|---|---|---:|---:|---:|---:|---:|',
      ...changes.map((c, i) => `| ${i + 1} | ${c.kind} | ${c.service} | ${c.affected} | ${c.received.p50.toFixed(1)} / ${c.received.p99.toFixed(1)} / ${c.received.max.toFixed(1)} | ${c.acked.p50.toFixed(0)} / ${c.acked.p99.toFixed(0)} / ${c.acked.max.toFixed(0)} | ${(c.bytes / 1e3).toFixed(1)} | ${c.cpuMs.toFixed(0)} |`),
      '',
    ].join('\n');
    console.log('\n' + md);
    mkdirSync(o.out, { recursive: true });
    const stamp = info.date.replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    const file = path.join(o.out, `control-plane-${stamp}`);
    writeFileSync(`${file}.md`, md);
    writeFileSync(`${file}.json`, JSON.stringify({ info, options: o, loadMs, syncMs, syncBytes, memory: { loaded: memLoaded, synced: memSynced, end: memEnd }, summary, changes }, null, 1));
    log(`results: ${path.relative(REPO_ROOT, file)}.md`);
    if (summary.missing > 0) process.exitCode = 1;
  } finally {
    clients?.stop();
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(`bench:control failed: ${err.message}`);
  killAllNow();
  process.exit(1);
});
