/**
 * Interleaved A/B of two builds of Weft through one proxy (HTTP/1.1, plaintext, the `weft` row's
 * setup): one upstream nginx, proxy A and proxy B both started and idle, then wrk alternates
 * short closed-loop runs on each (A B, B A, …). Each pair is measured within seconds, so the VM's
 * slow spells (which move a lone row by ±40 % here) hit both sides of a pair alike; the verdict is
 * the median of the per-pair ratios, for req/s and for CPU per request.
 *
 *   npm run bench:ab -- <treeA> <treeB> [--pairs 10] [--seconds 2] [--connections 50]
 *
 * A tree is a built checkout (its `bin/weft.js` and `dist/`), e.g. a `git worktree` of an older
 * commit after `npm run build`. The proxies are pinned to core 0, wrk and the upstream to core 1.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { waitUntilServing } from './lib/http-probe.js';
import { freePorts } from './lib/ports.js';
import { cpuMs } from './lib/proc.js';
import { launch, runBench, type Launched } from './lib/processes.js';
import { meshYaml } from './rows/weft.js';
import { startUpstream } from './upstream.js';
import { runWrk } from './wrk.js';

const log = (line: string): void => console.error(`[ab] ${line}`);

function options(argv: string[]): { a: string; b: string; pairs: number; seconds: number; connections: number } {
  const trees: string[] = [];
  const o = { pairs: 10, seconds: 2, connections: 50 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--pairs' || arg === '--seconds' || arg === '--connections') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${arg} needs a positive integer, not ${JSON.stringify(argv[i])}`);
      o[arg.slice(2) as keyof typeof o] = n;
    } else if (arg.startsWith('--')) {
      throw new Error(`unknown option ${arg}`);
    } else {
      trees.push(path.resolve(arg));
    }
  }
  if (trees.length !== 2) throw new Error('usage: npm run bench:ab -- <treeA> <treeB> [--pairs 10] [--seconds 2] [--connections 50]');
  for (const t of trees) if (!existsSync(path.join(t, 'bin', 'weft.js')) || !existsSync(path.join(t, 'dist', 'src', 'cli', 'main.js'))) throw new Error(`${t}: not a built Weft tree (bin/weft.js and dist/ expected)`);
  return { a: trees[0]!, b: trees[1]!, ...o };
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

let tmp = '';
runBench(
  async () => {
    const o = options(process.argv.slice(2));
    tmp = mkdtempSync(path.join(tmpdir(), 'weft-ab-'));
    const upstream = await startUpstream(tmp, 1);
    const mesh = path.join(tmp, 'mesh.yaml');
    writeFileSync(mesh, meshYaml(upstream.port));
    const start = async (tree: string): Promise<{ port: number; proc: Launched }> => {
      const [outbound, inbound, admin] = (await freePorts(3)) as [number, number, number];
      const args = [path.join(tree, 'bin', 'weft.js'), 'proxy', '--file', mesh, '--workload', 'client-1', '--outbound-port', String(outbound), '--inbound-port', String(inbound), '--admin-port', String(admin)];
      const proc = launch(`weft ${path.basename(tree)}`, process.execPath, args, { core: 0, cwd: tree });
      await waitUntilServing({ port: outbound, hostHeader: 'upstream', process: proc });
      return { port: outbound, proc };
    };
    const sides = { A: await start(o.a), B: await start(o.b) };
    const run = async (side: 'A' | 'B'): Promise<{ rps: number; cpuPer1k: number }> => {
      const { port, proc } = sides[side];
      const c0 = cpuMs([proc.pid]);
      const r = await runWrk({ port, connections: o.connections, threads: 1, hostHeader: 'upstream', core: 1, durationSec: o.seconds });
      // A proxy answering errors fast would look fast: every answer must be a 2xx on a kept connection.
      if (r.non2xx > 0 || r.socketErrors > 0) throw new Error(`${side}: ${r.non2xx} non-2xx answers, ${r.socketErrors} socket errors`);
      return { rps: r.requestsPerSec, cpuPer1k: (cpuMs([proc.pid]) - c0) / (r.requests / 1000) };
    };
    await run('A');
    await run('B');
    const rps: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < o.pairs; i++) {
      const order = i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const);
      const got: Record<string, { rps: number; cpuPer1k: number }> = {};
      for (const side of order) got[side] = await run(side);
      const a = got.A!;
      const b = got.B!;
      rps.push(b.rps / a.rps);
      cpu.push(b.cpuPer1k / a.cpuPer1k);
      console.log(`pair ${i + 1}: A ${Math.round(a.rps)} req/s, ${a.cpuPer1k.toFixed(1)} CPU-ms per 1k | B ${Math.round(b.rps)} req/s, ${b.cpuPer1k.toFixed(1)} CPU-ms per 1k | B/A ${(b.rps / a.rps).toFixed(3)}`);
    }
    const better = rps.filter((r) => r > 1).length;
    console.log(`median B/A: req/s ${median(rps).toFixed(3)}, CPU per request ${median(cpu).toFixed(3)} (B faster in ${better} of ${rps.length} pairs)`);
    console.log(`A = ${o.a}\nB = ${o.b}`);
    await Promise.all([sides.A.proc.stop(), sides.B.proc.stop(), upstream.stop()]);
    rmSync(tmp, { recursive: true, force: true });
  },
  log,
  () => () => {
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  },
);
