/**
 * Issue 8's table, measured directly — `npm run bench:targets`.
 *
 * The mesh's real path as the issue states it: two Weft proxies with mutual TLS between them, metrics
 * on, tracing at the Mesh default sampling (1 %, spans exported to the control plane), set up as in
 * the `weft-mtls-tracing-1pct` row (bench/rows/weft-mtls.ts). The upstream is a dedicated nginx that
 * answers `GET /1k` with a 1,024-byte body (and `/` with the rows' `hello world\n`, for readiness).
 * Proxies on core 0, everything else (this harness, the open-loop generator, the upstream, the
 * control plane) on core 1. Three phases, in one run:
 *
 *   1. direct:  open loop at `--rate` (1,000 req/s) for `--duration` s, generator → upstream;
 *   2. proxied: the same open loop through the two proxies; the CPU of each proxy is sampled from
 *      /proc during the measured part. Added latency = proxied percentile − direct percentile (p50,
 *      p99); CPU per 1,000 req/s per proxy = CPU-ms per second ÷ 1000 ÷ (rate / 1000), in vCPU;
 *   3. idle + load: `--idle` (1,000) keep-alive connections opened to the client proxy (one request
 *      each, then left idle, held by this harness), then the proxied open loop again; the client
 *      proxy's VmRSS (with RssAnon / RssFile) is sampled every 250 ms: peak and end are reported.
 *
 * The issue's targets are printed beside the measured values, pass/fail per line. Results go to
 * bench/results/targets-<YYYY-MM-DD-HHMMSS>.md and .json.
 *
 * Options (flag, or environment variable):
 *   --duration <s>   BENCH_DURATION   seconds of each open-loop phase (10)
 *   --rate <req/s>   BENCH_RATE       open-loop rate (1000)
 *   --idle <n>       BENCH_IDLE       idle keep-alive connections in phase 3 (1000)
 *   --connections <n>                 sockets of the open-loop generator (50)
 *   --out <dir>      BENCH_OUT        results directory (bench/results)
 *   --peer-transport <h2|http1>       the client proxy's --peer-transport (default: the proxy's own default)
 *   --no-peer                         skip the peers: two nginx proxies with mTLS between them, and two
 *                                     Node processes that only relay bytes over mTLS, each under the same load
 *   --no-relay                        skip only the Node relay pair
 *   --keep-tmp                        keep the temp dir (configs, logs)
 * BENCH_PROXY_NODE_OPTIONS, when set, is the NODE_OPTIONS of the two proxies only (to try V8 flags).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OpenLoopResult } from './open-loop.js';
import { oneLine } from './lib/http-probe.js';
import { cpuMs, processTree } from './lib/proc.js';
import { runOpenLoop } from './lib/open-loop-process.js';
import { runBench, stopAll } from './lib/processes.js';
import { ensureCommands, hasCommand, machineInfo, type MachineInfo } from './lib/tools.js';
import { startNginxMtlsPair } from './peers/nginx-mtls-pair.js';
import { startNodeRelayPair } from './peers/node-relay-pair.js';
import { weftMtlsTracing1Row, weftMtlsTracing1With } from './rows/weft-mtls.js';
import type { RunningRow } from './rows/types.js';
import { startUpstream } from './upstream.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const REPO_ROOT = path.resolve(HERE, '..', '..');
const BODY_BYTES = 1024;
const BODY_PATH = '/1k';
const WARMUP_SEC = 2;
const DRAIN_SEC = 5;
const SAMPLE_MS = 250;

/** Issue 8's targets for the lines this script measures. */
const TARGETS = {
  addedP50Ms: 0.2,
  addedP99Ms: 0.5,
  vcpuPer1kRps: 0.1,
  rssMiB: 60,
};

interface Options {
  durationSec: number;
  rate: number;
  idle: number;
  connections: number;
  outDir: string;
  keepTmp: boolean;
  peerTransport: 'h2' | 'http1' | null;
  /** Measure the nginx mTLS pair (the peer) too. */
  peer: boolean;
  /** Measure the Node byte-relay pair too (with `peer`). */
  relay: boolean;
}

function parseOptions(argv: string[]): Options {
  const flag = (name: string, env?: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0) {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
      return v;
    }
    return env === undefined ? undefined : process.env[env] || undefined;
  };
  const num = (name: string, env: string | undefined, fallback: number, min: number): number => {
    const raw = flag(name, env);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number ≥ ${min}, got "${raw}"`);
    return v;
  };
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write('usage: npm run bench:targets -- [--duration 10] [--rate 1000] [--idle 1000] [--connections 50] [--peer-transport h2|http1] [--no-peer] [--no-relay] [--out dir] [--keep-tmp]\n');
    process.exit(0);
  }
  return {
    durationSec: num('duration', 'BENCH_DURATION', 10, 1),
    rate: num('rate', 'BENCH_RATE', 1000, 1),
    idle: Math.round(num('idle', 'BENCH_IDLE', 1000, 0)),
    connections: Math.round(num('connections', undefined, 50, 1)),
    outDir: path.resolve(flag('out', 'BENCH_OUT') ?? path.join(REPO_ROOT, 'bench', 'results')),
    keepTmp: argv.includes('--keep-tmp'),
    peerTransport: peerTransportOption(flag('peer-transport')),
    peer: !argv.includes('--no-peer'),
    relay: !argv.includes('--no-relay'),
  };
}

function peerTransportOption(v: string | undefined): 'h2' | 'http1' | null {
  if (v === undefined) return null;
  if (v === 'h2' || v === 'http1') return v;
  throw new Error(`--peer-transport must be h2 or http1, got "${v}"`);
}

const log = (line: string): void => {
  process.stderr.write(`[targets] ${line}\n`);
};

/** nginx on the load core: `/` answers the rows' readiness body, `/1k` a 1,024-byte body. */
function startUpstream1k(dir: string, core: number | null): Promise<RunningRow> {
  const body = `${'x'.repeat(BODY_BYTES - 1)}\\n`;
  return startUpstream(dir, core, `    location = ${BODY_PATH} { return 200 "${body}"; }\n`, 'upstream nginx (1 KB)');
}

/** A sample of /proc for some processes: CPU-ms of each, and the memory of the first. */
interface Sample {
  atMs: number;
  cpuMs: number[];
  rssKiB: number;
  anonKiB: number;
  fileKiB: number;
}

function memory(pid: number): { rssKiB: number; anonKiB: number; fileKiB: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? 0);
    return { rssKiB: field('VmRSS'), anonKiB: field('RssAnon'), fileKiB: field('RssFile') };
  } catch {
    return { rssKiB: 0, anonKiB: 0, fileKiB: 0 };
  }
}

/** Samples the processes every SAMPLE_MS until stopped; `stop()` returns the samples. */
function sampler(roots: number[]): { stop(): Sample[] } {
  const samples: Sample[] = [];
  const t0 = Date.now();
  const take = (): void => {
    samples.push({ atMs: Date.now() - t0, cpuMs: roots.map((r) => cpuMs(processTree([r]))), ...memory(roots[0]!) });
  };
  take();
  const timer = setInterval(take, SAMPLE_MS);
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** The open-loop generator as its own process on the load core (as `npm run bench` runs it). */
async function openLoop(port: number, hostHeader: string, opts: Options, core: number | null): Promise<OpenLoopResult> {
  const r = await runOpenLoop({
    port, rate: opts.rate, durationSec: opts.durationSec, connections: opts.connections, hostHeader, path: BODY_PATH,
    warmupSec: WARMUP_SEC, drainSec: DRAIN_SEC, core,
  });
  if (r.errors + r.unfinished > 0 || r.non2xx > 0) throw new Error(`open loop: ${r.errors + r.unfinished} failed, ${r.non2xx} non-2xx of ${r.intended}`);
  return r;
}

/**
 * The open loop through `port` while sampling `pids`; CPU is taken over the measured part only
 * (after the generator's start-up and warm-up, before its last second).
 */
async function sampledOpenLoop(port: number, pids: number[], opts: Options, core: number | null): Promise<{ open: OpenLoopResult; samples: Sample[]; cpuWindow: { ms: number[]; sec: number } }> {
  const s = sampler(pids);
  let open: OpenLoopResult;
  try {
    open = await openLoop(port, 'upstream', opts, core);
  } finally {
    s.stop(); // also on errors: a live interval would keep this process from exiting
  }
  const samples = s.stop();
  const from = (WARMUP_SEC + 0.5) * 1000;
  const to = (WARMUP_SEC + opts.durationSec) * 1000;
  const inside = samples.filter((x) => x.atMs >= from && x.atMs <= to);
  if (inside.length < 2) throw new Error('too few CPU samples in the measured window (--duration too short?)');
  const first = inside[0]!;
  const last = inside[inside.length - 1]!;
  return { open, samples, cpuWindow: { ms: first.cpuMs.map((c, i) => last.cpuMs[i]! - c), sec: (last.atMs - first.atMs) / 1000 } };
}

/** Opens `n` keep-alive connections to `port`, one request answered on each, then leaves them idle. */
async function idleConnections(port: number, n: number): Promise<{ sockets: net.Socket[]; closed: () => number }> {
  const sockets: net.Socket[] = [];
  let closed = 0;
  const request = `GET ${BODY_PATH} HTTP/1.1\r\nHost: upstream\r\n\r\n`;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      let seen = Buffer.alloc(0);
      const timer = setTimeout(() => reject(new Error('an idle connection got no answer within 10 s')), 10_000);
      socket.once('connect', () => socket.write(request));
      const onData = (chunk: Buffer): void => {
        seen = Buffer.concat([seen, chunk]);
        const end = seen.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length:\s*(\d+)/i.exec(seen.toString('latin1', 0, end))?.[1] ?? -1);
        if (!seen.toString('latin1', 0, 12).startsWith('HTTP/1.1 200') || length !== BODY_BYTES) {
          clearTimeout(timer);
          reject(new Error(`an idle connection's request was answered ${oneLine(seen.toString('latin1', 0, end), 80)}`));
          return;
        }
        if (seen.length < end + 4 + length) return;
        clearTimeout(timer);
        socket.off('data', onData);
        sockets.push(socket);
        resolve();
      };
      socket.on('data', onData);
      socket.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.on('close', () => {
        closed += 1;
      });
    });
  // In batches, so the listener's accept backlog never overflows.
  for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, one));
  return { sockets, closed: () => closed };
}

interface TargetLine {
  measure: string;
  target: string;
  measured: string;
  pass: boolean;
  /** The same figure for each peer measured in this run, and Weft ÷ that peer; '' where it has none. */
  peers: string[];
}

/** A peer: the same load, in the same run, through another pair of proxies in the sidecars' positions. */
interface PeerSpec {
  /** Its column's title. */
  title: string;
  description: string;
  /** What its RSS figure is. */
  rss: string;
  start(dir: string, upstreamPort: number, core: number | null): Promise<RunningRow>;
}

const NGINX_PAIR: PeerSpec = {
  title: 'nginx mTLS pair, same run (Weft ÷ nginx)',
  description: 'two nginx proxies (one worker each) with TLS 1.3 mutual authentication between them, keep-alive pools, no telemetry',
  rss: 'the client-side nginx, master + worker, at the end of its load (no idle connections)',
  start: (dir, upstreamPort, core) => startNginxMtlsPair(dir, upstreamPort, core),
};

/** The floor of any proxy pair on Node 20 here: no HTTP, only Node's sockets, TLS and the kernel. */
const NODE_RELAY_PAIR: PeerSpec = {
  title: 'Node byte-relay pair, same run (Weft ÷ relay)',
  description: 'two Node processes that only relay bytes, each downstream connection over its own TLS 1.3 connection with mutual authentication; no HTTP parsing, pooling, metrics or tracing',
  rss: 'the client-side relay at the end of its load (no idle connections)',
  start: (dir, upstreamPort, core) => startNodeRelayPair(dir, REPO_ROOT, upstreamPort, core),
};

interface PeerResult {
  spec: PeerSpec;
  proxied: Awaited<ReturnType<typeof sampledOpenLoop>>;
  direct: OpenLoopResult;
  clientRssKiB: number;
}

const ms = (v: number): string => `${v >= 0 ? '+' : ''}${v.toFixed(3)} ms`;
const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

function pinSelf(core: number | null): void {
  if (core === null) return;
  spawnSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' });
}

function stamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

let cleanupTmp: () => void = () => {};

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const missing = ensureCommands(['nginx', 'taskset'], log);
  if (missing.includes('nginx')) throw new Error('nginx is required and could not be installed');
  const canPin = os.availableParallelism() >= 2 && hasCommand('taskset');
  const proxyCore = canPin ? 0 : null;
  const loadCore = canPin ? 1 : null;
  const args = process.argv.slice(2);
  const machine: MachineInfo = machineInfo(args.length > 0 ? `npm run bench:targets -- ${args.join(' ')}` : 'npm run bench:targets');
  pinSelf(loadCore);
  const nofile = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
  if (Number.isFinite(nofile) && nofile < opts.idle + opts.connections + 200)
    throw new Error(`ulimit -n is ${nofile}: raise it above ${opts.idle + opts.connections + 200} for ${opts.idle} idle connections (ulimit -n 20000)`);
  if (machine.loadAverage > 0.5) log(`warning: load average ${machine.loadAverage.toFixed(2)}: other work on this machine will show up in the figures`);

  const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'weft-targets-'));
  chmodSync(tmpRoot, 0o755);
  cleanupTmp = () => {
    if (!opts.keepTmp) rmSync(tmpRoot, { recursive: true, force: true });
    else log(`kept ${tmpRoot}`);
  };
  const proxyNodeOptions = process.env.BENCH_PROXY_NODE_OPTIONS;
  const notes: string[] = [];
  let report: Record<string, unknown>;
  let lines: TargetLine[];
  let peerTitles: string[] = [];
  try {
    const upDir = path.join(tmpRoot, 'upstream');
    mkdirSync(upDir);
    const upstream = await startUpstream1k(upDir, loadCore);
    // The peers first, so nothing of Weft's is running while they are measured.
    const peers: PeerResult[] = [];
    const specs = !opts.peer ? [] : opts.relay ? [NGINX_PAIR, NODE_RELAY_PAIR] : [NGINX_PAIR];
    for (const [i, spec] of specs.entries()) {
      const peerDir = path.join(tmpRoot, `peer-${i}`);
      mkdirSync(peerDir);
      log(`peer: ${spec.description} (on the proxy core)`);
      const pair = await spec.start(peerDir, upstream.port, proxyCore);
      try {
        log(`peer direct: ${opts.rate} req/s for ${opts.durationSec} s`);
        const peerDirect = await openLoop(upstream.port, 'upstream', opts, loadCore);
        log(`peer proxied: ${opts.rate} req/s for ${opts.durationSec} s`);
        const proxied = await sampledOpenLoop(pair.port, pair.pids, opts, loadCore);
        // The client side's whole process tree (nginx: master and worker), summed.
        const clientRssKiB = processTree([pair.pids[0]!]).reduce((sum, pid) => sum + memory(pid).rssKiB, 0);
        peers.push({ spec, proxied, direct: peerDirect, clientRssKiB });
      } finally {
        await pair.stop();
      }
    }
    const rowDir = path.join(tmpRoot, 'mesh');
    mkdirSync(rowDir, { mode: 0o755 });
    log(`upstream nginx on 127.0.0.1:${upstream.port} (${BODY_PATH}: ${BODY_BYTES} bytes); starting control plane and two proxies (mTLS, tracing 1 %)`);
    // The row passes this process's environment to the proxies: NODE_OPTIONS for them only.
    const savedNodeOptions = process.env.NODE_OPTIONS;
    if (proxyNodeOptions !== undefined) process.env.NODE_OPTIONS = proxyNodeOptions;
    let mesh: RunningRow;
    try {
      mesh = await (opts.peerTransport === null ? weftMtlsTracing1Row : weftMtlsTracing1With(opts.peerTransport)).start({ upstreamPort: upstream.port, tmpDir: rowDir, proxyCore, repoRoot: REPO_ROOT });
    } finally {
      if (savedNodeOptions === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = savedNodeOptions;
    }
    // The row's own note says its figures are the two proxies' sum; here each proxy is reported alone.
    notes.push(...(mesh.notes ?? []).filter((n) => !n.startsWith('two proxies')));
    if (proxyNodeOptions !== undefined) notes.push(`proxies run with NODE_OPTIONS=${JSON.stringify(proxyNodeOptions)}`);
    const [serverPid, clientPid] = mesh.pids as [number, number];
    let idleSockets: net.Socket[] = [];
    try {
      log(`direct: ${opts.rate} req/s for ${opts.durationSec} s`);
      const direct = await openLoop(upstream.port, 'upstream', opts, loadCore);
      const idleRss = memory(clientPid);
      log(`proxied: ${opts.rate} req/s for ${opts.durationSec} s`);
      const proxied = await sampledOpenLoop(mesh.port, [clientPid, serverPid], opts, loadCore);
      log(`opening ${opts.idle} idle keep-alive connections to the client proxy`);
      const idle = await idleConnections(mesh.port, opts.idle);
      idleSockets = idle.sockets;
      const withIdleConns = memory(clientPid);
      log(`proxied with ${idle.sockets.length} idle connections: ${opts.rate} req/s for ${opts.durationSec} s`);
      const loaded = await sampledOpenLoop(mesh.port, [clientPid, serverPid], opts, loadCore);
      const stillOpen = idle.sockets.length - idle.closed();
      for (const s of idle.sockets) s.destroy();
      if (stillOpen < opts.idle) notes.push(`only ${stillOpen} of ${opts.idle} idle connections were still open at the end`);
      const check = await mesh.finalCheck?.();
      if (check) notes.push(...check.notes);
      if (check?.failure !== undefined) throw new Error(check.failure);

      const addedP50 = proxied.open.latency.p50Ms - direct.latency.p50Ms;
      const addedP99 = proxied.open.latency.p99Ms - direct.latency.p99Ms;
      const vcpu = proxied.cpuWindow.ms.map((c) => c / proxied.cpuWindow.sec / 1000 / (opts.rate / 1000));
      const vcpuIdle = loaded.cpuWindow.ms.map((c) => c / loaded.cpuWindow.sec / 1000 / (opts.rate / 1000));
      const peak = loaded.samples.reduce((a, b) => (b.rssKiB > a.rssKiB ? b : a));
      const end = loaded.samples[loaded.samples.length - 1]!;
      const peerVcpu = (p: PeerResult): number[] => p.proxied.cpuWindow.ms.map((c) => c / p.proxied.cpuWindow.sec / 1000 / (opts.rate / 1000));
      const vs = (weft: number, peer: number, text: string): string => `${text} (${peer > 0 ? `${(weft / peer).toFixed(1)}×` : 'n/a'})`;
      const each = (f: (p: PeerResult) => string): string[] => peers.map(f);
      const added = (p: PeerResult, q: 'p50Ms' | 'p99Ms'): number => p.proxied.open.latency[q] - p.direct.latency[q];
      peerTitles = peers.map((p) => p.spec.title);
      lines = [
        { measure: `added latency p50 (proxied ${proxied.open.latency.p50Ms.toFixed(3)} − direct ${direct.latency.p50Ms.toFixed(3)} ms)`, target: '≤ 0.2 ms', measured: ms(addedP50), pass: addedP50 <= TARGETS.addedP50Ms, peers: each((p) => vs(addedP50, added(p, 'p50Ms'), ms(added(p, 'p50Ms')))) },
        { measure: `added latency p99 (proxied ${proxied.open.latency.p99Ms.toFixed(3)} − direct ${direct.latency.p99Ms.toFixed(3)} ms)`, target: '≤ 0.5 ms', measured: ms(addedP99), pass: addedP99 <= TARGETS.addedP99Ms, peers: each((p) => vs(addedP99, added(p, 'p99Ms'), ms(added(p, 'p99Ms')))) },
        { measure: 'CPU per 1,000 req/s, client proxy', target: '≤ 0.10 vCPU', measured: `${vcpu[0]!.toFixed(3)} vCPU`, pass: vcpu[0]! <= TARGETS.vcpuPer1kRps, peers: each((p) => vs(vcpu[0]!, peerVcpu(p)[0]!, `${peerVcpu(p)[0]!.toFixed(3)} vCPU`)) },
        { measure: 'CPU per 1,000 req/s, server proxy', target: '≤ 0.10 vCPU', measured: `${vcpu[1]!.toFixed(3)} vCPU`, pass: vcpu[1]! <= TARGETS.vcpuPer1kRps, peers: each((p) => vs(vcpu[1]!, peerVcpu(p)[1]!, `${peerVcpu(p)[1]!.toFixed(3)} vCPU`)) },
        { measure: `client proxy RSS, ${opts.rate} req/s + ${stillOpen} idle connections (peak)`, target: '≤ 60 MB', measured: `${mib(peak.rssKiB)} (anon ${mib(peak.anonKiB)}, file ${mib(peak.fileKiB)})`, pass: peak.rssKiB / 1024 <= TARGETS.rssMiB, peers: each((p) => `${mib(p.clientRssKiB)}: ${p.spec.rss}`) },
      ];
      notes.push(
        `client proxy RSS: ${mib(idleRss.rssKiB)} after the direct phase (no load through it yet besides readiness), ${mib(withIdleConns.rssKiB)} with the idle connections open, ${mib(end.rssKiB)} at the end of the loaded phase; server proxy ${mib(memory(serverPid).rssKiB)} at the end`,
        `CPU per 1,000 req/s with the idle connections held: client ${vcpuIdle[0]!.toFixed(3)}, server ${vcpuIdle[1]!.toFixed(3)} vCPU`,
        `open loop: direct ${direct.completed}/${direct.intended}, proxied ${proxied.open.completed}/${proxied.open.intended}, with idle ${loaded.open.completed}/${loaded.open.intended}; generator send lag p99 ${[direct, proxied.open, loaded.open].map((r) => r.sendLag.p99Ms.toFixed(3)).join(' / ')} ms`,
      );
      report = {
        machine,
        settings: { ...opts, bodyBytes: BODY_BYTES, tracingSampling: 1, proxyCore, loadCore, proxyNodeOptions: proxyNodeOptions ?? null },
        direct,
        proxied: { ...proxied.open, cpuMs: proxied.cpuWindow.ms, cpuSec: proxied.cpuWindow.sec, vcpuPer1kRps: vcpu },
        withIdleConnections: { ...loaded.open, cpuMs: loaded.cpuWindow.ms, cpuSec: loaded.cpuWindow.sec, vcpuPer1kRps: vcpuIdle, idleOpen: stillOpen, rss: loaded.samples.map((s) => ({ atMs: s.atMs, rssKiB: s.rssKiB, anonKiB: s.anonKiB, fileKiB: s.fileKiB })) },
        clientProxyMemory: { afterDirect: idleRss, withIdleConnections: withIdleConns, peak, end },
        peers: peers.map((p) => ({ description: p.spec.description, direct: p.direct, proxied: { ...p.proxied.open, cpuMs: p.proxied.cpuWindow.ms, cpuSec: p.proxied.cpuWindow.sec, vcpuPer1kRps: peerVcpu(p) }, clientRssKiB: p.clientRssKiB })),
        lines,
        notes,
      };
    } finally {
      for (const sock of idleSockets) sock.destroy();
      await mesh.stop();
      await upstream.stop();
    }
  } finally {
    await stopAll();
    cleanupTmp();
    cleanupTmp = () => {};
  }

  const table = [
    `| measure | target | measured | |${peerTitles.map((t) => ` ${t} |`).join('')}`,
    `|---|---|---|---|${peerTitles.map(() => '---|').join('')}`,
    ...lines.map((l) => `| ${l.measure} | ${l.target} | ${l.measured} | ${l.pass ? 'pass' : 'FAIL'} |${l.peers.map((p) => ` ${p} |`).join('')}`),
  ].join('\n');
  const md = `# Issue 8 targets — ${machine.date}

\`${machine.command}\`: two Weft proxies, mTLS, metrics on, tracing 1 %; open loop ${opts.rate} req/s × ${opts.durationSec} s (after ${WARMUP_SEC} s warm-up), ${opts.connections} connections, ${BODY_BYTES}-byte responses; ${opts.idle} idle keep-alive connections in the RSS phase. Proxies on core ${proxyCore ?? 'any'}, load on core ${loadCore ?? 'any'}.
${machine.nproc} CPUs (${machine.cpuModel}), ${machine.kernel}, Node ${machine.node}, nginx ${machine.nginx}; load average ${machine.loadAverage.toFixed(2)} at start.

${table}

${notes.map((n) => `- ${n}`).join('\n')}
`;
  mkdirSync(opts.outDir, { recursive: true });
  const base = path.join(opts.outDir, `targets-${stamp(new Date(machine.date))}`);
  writeFileSync(`${base}.md`, md);
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\n${table}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\nresults: ${path.relative(process.cwd(), base)}.md and .json\n`);
}

runBench(main, log, () => cleanupTmp);
