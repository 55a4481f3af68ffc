/**
 * HTTP/2 and gRPC through one proxy — `npm run bench:h2`.
 *
 * h2load (Debian nghttp2-client) drives each row in cleartext with prior knowledge, `-c` connections
 * × `-m` streams each, for `--duration` seconds after a warm-up; the proxy is pinned to core 0, the
 * load generator and the upstream to core 1, as in `npm run bench`. Rows:
 *   HTTP/2: h2load → proxy → HTTP/1.1 upstream (nginx `return 200`), small response:
 *     h2-direct (h2load → the upstream's own h2c listener), weft-h2, nginx-h2 (`listen … http2`, proxy_pass).
 *   gRPC:   h2load POSTing one unary gRPC message (`content-type: application/grpc`, `te: trailers`)
 *     → proxy → an HTTP/2 upstream answering like a gRPC server (nginx: `application/grpc`, a small
 *     body, `grpc-status: 0` as a trailer; no component on the path parses the messages, and a
 *     Node gRPC upstream would be slower than the proxies it is meant to measure):
 *     grpc-direct, weft-grpc (a GRPC Service port: HTTP/2 to the upstream), nginx-grpc (`grpc_pass`).
 * Reports req/s, ratio to nginx, mean latency (h2load gives no percentiles), the proxy's CPU per
 * 1,000 req/s and RSS. Issue 8's target: HTTP/2 and gRPC max req/s ≥ 0.6 × nginx.
 *
 *   npm run bench:h2                               # every row, 10 s each
 *   npm run bench:h2 -- --duration 5 --only weft-grpc,nginx-grpc
 *   BENCH_H2_PROF=/tmp/prof npm run bench:h2 -- --only weft-h2   # --cpu-prof of the Weft proxy, written when it stops
 * Writes bench/results/h2-<stamp>.md and .json (`--out DIR`).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './lib/ports.js';
import { coreBusyPercent, coreTimes, cpuMs, processTree, rssKiB } from './lib/proc.js';
import { launch, stopAll, type Launched } from './lib/processes.js';
import { ensureCommands, machineInfo } from './lib/tools.js';
import { nginxHttpPreamble, nginxPreamble } from './upstream.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const REPO_ROOT = path.resolve(HERE, '..', '..');
const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag);
  return i === -1 ? undefined : process.argv[i + 1];
};
const DURATION_S = Number(argValue('--duration') ?? 10);
const WARMUP_S = 2;
const ONLY = argValue('--only')?.split(',').map((s) => s.trim()) ?? null;
const OUT = argValue('--out') ?? path.join(REPO_ROOT, 'bench', 'results');
const CONNECTIONS = 10;
const STREAMS = 10;
const PROXY_CORE = 0;
const LOAD_CORE = 1;

/** One unary gRPC request message: the 5-byte frame header, then 10 bytes of payload. */
const GRPC_REQUEST = Buffer.concat([Buffer.from([0, 0, 0, 0, 10]), Buffer.from('0123456789')]);

interface Row {
  name: string;
  kind: 'h2' | 'grpc';
  /** Starts the proxy (null for direct rows); resolves with the port h2load targets and the pids measured. */
  start(ctx: Ctx): Promise<{ port: number; pids: number[]; stop(): Promise<void> }>;
}

interface Ctx {
  dir: string;
  /** HTTP/1.1 upstream (nginx) and its h2c listener; the gRPC upstream. */
  upstreamH1: number;
  upstreamH2: number;
  grpcUpstream: number;
}

function waitForLine(proc: Launched, pattern: RegExp, ms = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${proc.name}: no ${pattern} within ${ms} ms: ${proc.outputTail()}`)), ms);
    proc.child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = pattern.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
  });
}

async function startNginx(dir: string, name: string, body: string, core: number): Promise<Launched> {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, 'nginx.conf'), `${nginxPreamble(d)}http {\n${nginxHttpPreamble(d)}${body}\n}\n`);
  const p = launch(name, 'nginx', ['-c', path.join(d, 'nginx.conf'), '-p', d], { core });
  await new Promise((r) => setTimeout(r, 300));
  if (p.hasExited()) throw new Error(`${name} exited: ${p.outputTail()}`);
  return p;
}

function weftRow(name: string, kind: 'h2' | 'grpc'): Row {
  return {
    name,
    kind,
    start: async (ctx) => {
      const port = kind === 'grpc' ? ctx.grpcUpstream : ctx.upstreamH1;
      const file = path.join(ctx.dir, `${name}.yaml`);
      writeFileSync(file, `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: upstream }
spec: { selector: { app: upstream }, ports: [{ name: http, port: 80${kind === 'grpc' ? ', protocol: GRPC' : ''} }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: upstream-1, labels: { app: upstream } }
spec: { address: 127.0.0.1, ports: { http: ${port} } }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: 1 } }
`);
      // BENCH_H2_PROF=<dir>: a CPU profile of the proxy (one .cpuprofile per row), written when it stops.
      const prof = process.env.BENCH_H2_PROF;
      const profArgs = prof === undefined || prof === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', path.resolve(prof)];
      const p = launch(name, process.execPath, [...profArgs, path.join(REPO_ROOT, 'bin', 'weft.js'), 'proxy', '--file', file, '--workload', 'client-1', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '-q'], { core: PROXY_CORE });
      const line = await waitForLine(p, /"outbound":(\d+)/);
      return { port: Number(/\d+/.exec(line)![0]), pids: [p.pid], stop: () => p.stop() };
    },
  };
}

function nginxRow(name: string, kind: 'h2' | 'grpc'): Row {
  return {
    name,
    kind,
    start: async (ctx) => {
      const port = await freePort();
      const body =
        kind === 'grpc'
          ? `  upstream up { server 127.0.0.1:${ctx.grpcUpstream}; keepalive 64; }
  server { listen 127.0.0.1:${port} http2; location / { grpc_pass grpc://up; } }`
          : `  upstream up { server 127.0.0.1:${ctx.upstreamH1}; keepalive 64; }
  server { listen 127.0.0.1:${port} http2; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }`;
      const p = await startNginx(ctx.dir, name, body, PROXY_CORE);
      return { port, pids: [p.pid], stop: () => p.stop() };
    },
  };
}

const ROWS: Row[] = [
  { name: 'h2-direct', kind: 'h2', start: async (ctx) => ({ port: ctx.upstreamH2, pids: [], stop: async () => {} }) },
  weftRow('weft-h2', 'h2'),
  nginxRow('nginx-h2', 'h2'),
  { name: 'grpc-direct', kind: 'grpc', start: async (ctx) => ({ port: ctx.grpcUpstream, pids: [], stop: async () => {} }) },
  weftRow('weft-grpc', 'grpc'),
  nginxRow('nginx-grpc', 'grpc'),
];

interface Result {
  row: string;
  kind: 'h2' | 'grpc';
  reqPerS: number;
  meanMs: number;
  failed: number;
  non2xx: number;
  cpuMsPer1k: number | null;
  rssMiB: number | null;
  proxyCoreBusy: number;
  loadCoreBusy: number;
  error?: string;
}

function h2load(port: number, kind: 'h2' | 'grpc', seconds: number, dataFile: string): Promise<string> {
  const args = ['-c', String(CONNECTIONS), '-m', String(STREAMS), '-t', '1', '-D', String(seconds), '-H', ':authority: upstream'];
  if (kind === 'grpc') args.push('-d', dataFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers');
  args.push(`http://127.0.0.1:${port}${kind === 'grpc' ? '/test.Echo/Unary' : '/'}`);
  return new Promise((resolve) => {
    const p = spawn('taskset', ['-c', String(LOAD_CORE), 'h2load', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), (seconds + 30) * 1000);
    p.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

async function measure(row: Row, ctx: Ctx, dataFile: string): Promise<Result> {
  const { port, pids, stop } = await row.start(ctx);
  try {
    return await measureOn(row, port, pids, dataFile);
  } finally {
    // Each proxy stops before the next row; the upstreams stay.
    await stop();
  }
}

async function measureOn(row: Row, port: number, pids: number[], dataFile: string): Promise<Result> {
  await new Promise((r) => setTimeout(r, 500));
  await h2load(port, row.kind, WARMUP_S, dataFile);
  const tree = pids.length === 0 ? [] : processTree(pids);
  const cpu0 = cpuMs(tree);
  const cores0 = coreTimes();
  const out = await h2load(port, row.kind, DURATION_S, dataFile);
  const cores1 = coreTimes();
  const cpu1 = cpuMs(tree);
  const rps = Number(/finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1] ?? '0';
  const meanMs = mean.endsWith('us') ? Number(mean.slice(0, -2)) / 1000 : mean.endsWith('ms') ? Number(mean.slice(0, -2)) : Number(mean.slice(0, -1)) * 1000;
  const r: Result = {
    row: row.name,
    kind: row.kind,
    reqPerS: rps,
    meanMs,
    failed: counts === null ? -1 : Number(counts[5]) + Number(counts[6]),
    non2xx: status === null ? -1 : Number(status[2]) + Number(status[3]) + Number(status[4]),
    cpuMsPer1k: pids.length === 0 || rps === 0 ? null : (cpu1 - cpu0) / DURATION_S / (rps / 1000),
    rssMiB: pids.length === 0 ? null : rssKiB(processTree(pids)) / 1024,
    proxyCoreBusy: coreBusyPercent(cores0, cores1, PROXY_CORE),
    loadCoreBusy: coreBusyPercent(cores0, cores1, LOAD_CORE),
  };
  if (rps === 0) r.error = out.slice(-400);
  return r;
}

async function main(): Promise<void> {
  const missing = ensureCommands(['nginx', 'h2load', 'taskset'], (l) => console.log(`[bench:h2] ${l}`));
  if (missing.length > 0) throw new Error(`missing: ${missing.join(', ')}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-h2-'));
  const dataFile = path.join(dir, 'grpc-request.bin');
  writeFileSync(dataFile, GRPC_REQUEST);
  const results: Result[] = [];
  const load0 = os.loadavg()[0]!;
  try {
    const [h1, h2, grpcPort] = [await freePort(), await freePort(), await freePort()];
    await startNginx(
      dir,
      'upstream',
      `  server { listen 127.0.0.1:${h1}; listen 127.0.0.1:${h2} http2; location / { return 200 "hello world\\n"; } }
  server { listen 127.0.0.1:${grpcPort} http2; location / { default_type application/grpc; add_trailer grpc-status 0 always; return 200 "hello world\\n"; } }`,
      LOAD_CORE,
    );
    const ctx: Ctx = { dir, upstreamH1: h1, upstreamH2: h2, grpcUpstream: grpcPort };
    for (const row of ROWS) {
      if (ONLY !== null && !ONLY.includes(row.name)) continue;
      console.log(`[bench:h2] ${row.name}: ${DURATION_S} s, h2load -c ${CONNECTIONS} -m ${STREAMS}`);
      try {
        const r = await measure(row, ctx, dataFile);
        results.push(r);
        console.log(`[bench:h2] ${row.name}: ${Math.round(r.reqPerS)} req/s, mean ${r.meanMs.toFixed(2)} ms, failed ${r.failed}, non-2xx ${r.non2xx}${r.error ? `\n${r.error}` : ''}`);
      } catch (err) {
        results.push({ row: row.name, kind: row.kind, reqPerS: 0, meanMs: 0, failed: -1, non2xx: -1, cpuMsPer1k: null, rssMiB: null, proxyCoreBusy: 0, loadCoreBusy: 0, error: (err as Error).message });
        console.log(`[bench:h2] ${row.name}: failed: ${(err as Error).message}`);
      }
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  const load1 = os.loadavg()[0]!;
  write(results, load0, load1);
}

function write(results: Result[], load0: number, load1: number): void {
  const nginxOf = (kind: 'h2' | 'grpc'): number => results.find((r) => r.row === `nginx-${kind}`)?.reqPerS ?? 0;
  const lines = [
    `# HTTP/2 and gRPC through one proxy (${new Date().toISOString()})`,
    '',
    `- Command: \`npm run bench:h2 -- ${process.argv.slice(2).join(' ')}\`; h2load -c ${CONNECTIONS} -m ${STREAMS} -t 1, ${DURATION_S} s per row after ${WARMUP_S} s warm-up`,
    `- Machine: ${JSON.stringify(machineInfo('nginx -v'))}`,
    `- Pinning: proxy on core ${PROXY_CORE}; h2load and upstreams on core ${LOAD_CORE}; load average ${load0.toFixed(2)} at start, ${load1.toFixed(2)} at end`,
    '',
    '| row | req/s | vs nginx | mean ms | CPU ms per 1k req/s | RSS MiB | failed | non-2xx | proxy core busy % | load core busy % |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) => {
      const n = nginxOf(r.kind);
      return `| ${r.row} | ${Math.round(r.reqPerS).toLocaleString('en-US')} | ${n > 0 ? (r.reqPerS / n).toFixed(2) + '×' : '—'} | ${r.meanMs.toFixed(2)} | ${r.cpuMsPer1k === null ? '—' : r.cpuMsPer1k.toFixed(1)} | ${r.rssMiB === null ? '—' : r.rssMiB.toFixed(1)} | ${r.failed} | ${r.non2xx} | ${r.proxyCoreBusy.toFixed(0)} | ${r.loadCoreBusy.toFixed(0)} |${r.error ? ` ${r.error.replace(/\n/g, ' ').slice(0, 200)}` : ''}`;
    }),
    '',
  ];
  mkdirSync(OUT, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const base = path.join(OUT, `h2-${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}-${stamp.slice(9)}`);
  writeFileSync(`${base}.md`, lines.join('\n'));
  writeFileSync(`${base}.json`, JSON.stringify({ durationS: DURATION_S, connections: CONNECTIONS, streams: STREAMS, load: [load0, load1], results }, null, 1) + '\n');
  console.log(lines.join('\n'));
  console.log(`results: ${base}.md and .json`);
}

main().catch(async (err) => {
  console.error(`[bench:h2] ${(err as Error).stack ?? err}`);
  await stopAll();
  process.exit(1);
});
