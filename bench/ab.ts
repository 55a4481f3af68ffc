/**
 * Interleaved A/B through one proxy (HTTP/1.1, plaintext, small answers, the `weft` row's setup):
 * one upstream nginx, both sides started and idle, then wrk alternates short closed-loop runs on
 * each (A B, B A, …). Each pair is measured within seconds, so the VM's slow spells (which move a
 * lone row by ±40 % here) hit both sides of a pair alike. It runs two rounds with fresh processes,
 * started in both orders (the side started second reads 1-2 % fast); the verdict is the geometric
 * mean of the two rounds' medians of the per-pair ratios, for req/s and for CPU per request.
 *
 *   npm run bench:ab -- <A> <B> [--row weft] [--pairs 10] [--seconds 2] [--connections 50] [--rate N [--together]]
 *
 * A side is a built Weft tree (its `bin/weft.js` and `dist/`, e.g. a `git worktree` of an older
 * commit after `npm run build`; `.` is this one), run as the `weft` row (or the Weft row `--row`
 * names, e.g. `weft-mtls`: two proxies with mutual TLS between them), or the name of another
 * row of `npm run bench` (`nginx`, `haproxy`, `node+undici`), `nginx-mtls` (two nginx proxies with
 * mTLS between them, the `bench:targets` peer) or `node-relay-mtls` (two Node processes that only
 * relay bytes over mTLS: the floor of any Node proxy pair): `npm run bench:ab -- nginx .` is
 * issue 8's HTTP/1.1 line measured pair by pair. Sides are pinned to core 0, wrk and the upstream
 * to core 1.
 *
 * `--rate N` measures at a fixed load instead of the most each side can carry: each run is the
 * open-loop generator (`open-loop.ts`, as `bench:targets` runs it) at N req/s for `--seconds` (5 by
 * default here) after a 1 s warm-up, and the ratios are CPU per request (the side's CPU over the
 * whole run ÷ the requests sent) and p50 latency. `npm run bench:ab -- A B --row
 * weft-mtls-tracing-1pct --rate 1000` is issue 8's CPU line pair by pair: a lone `bench:targets`
 * run moves by ±30 % with the VM's state, which swamps a change of 10 %. `--together` loads both
 * sides at the same time, each at the rate (both on the same cores, so each sees the same state
 * of the VM; each side's CPU is its own processes').
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cpuMs, processTree } from './lib/proc.js';
import { runOpenLoop } from './lib/open-loop-process.js';
import { startNginxMtlsPair } from './peers/nginx-mtls-pair.js';
import { startNodeRelayPair } from './peers/node-relay-pair.js';
import { runBench } from './lib/processes.js';
import type { OpenLoopResult } from './open-loop.js';
import { ROWS } from './rows/index.js';
import type { BenchRow, RunningRow } from './rows/types.js';
import { weftRow } from './rows/weft.js';
import { startUpstream } from './upstream.js';
import { runWrk } from './wrk.js';

const log = (line: string): void => console.error(`[ab] ${line}`);

/** A side to measure: a row of the bench, and the tree it runs from (Weft's rows: the tree under test). */
interface Side {
  label: string;
  row: BenchRow;
  tree: string;
}

/** The Weft rows a tree can run as (`--row`): they start the tree's own `bin/weft.js`. */
const WEFT_ROWS = ROWS.filter((r) => r.name === 'weft' || r.name.startsWith('weft-'));

/**
 * `nginx-mtls`: the peer of `bench:targets`, two nginx proxies with mutual TLS between them
 * (bench/peers/nginx-mtls-pair.ts); against `--row weft-mtls-tracing-1pct --rate 1000 --together` it
 * is issue 8's CPU line as a same-time ratio. Not a row of `npm run bench`.
 */
const nginxMtlsRow: BenchRow = {
  name: 'nginx-mtls',
  description: 'two nginx proxies, mutual TLS between them (the bench:targets peer)',
  requires: ['nginx', 'openssl'],
  start: (ctx) => startNginxMtlsPair(ctx.tmpDir, ctx.upstreamPort, ctx.proxyCore),
};

/**
 * `node-relay-mtls`: two Node processes that only relay bytes over mutual TLS (bench/peers/node-relay-pair.ts),
 * the floor of any Node 20 proxy pair. Not a row of `npm run bench`.
 */
const nodeRelayRow: BenchRow = {
  name: 'node-relay-mtls',
  description: 'two Node byte relays, mutual TLS between them (the floor of a Node proxy pair)',
  requires: ['openssl'],
  start: (ctx) => startNodeRelayPair(ctx.tmpDir, ctx.repoRoot, ctx.upstreamPort, ctx.proxyCore),
};

/** Rows a side may name instead of a tree. */
const OTHER_ROWS = [...ROWS.filter((r) => !WEFT_ROWS.includes(r)), nginxMtlsRow, nodeRelayRow];

function side(arg: string, treeRow: BenchRow): Side {
  const row = OTHER_ROWS.find((r) => r.name === arg);
  if (row !== undefined) return { label: arg, row, tree: process.cwd() };
  const tree = path.resolve(arg);
  if (!existsSync(path.join(tree, 'bin', 'weft.js')) || !existsSync(path.join(tree, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error(`${arg}: neither a row (${OTHER_ROWS.map((r) => r.name).join(', ')}) nor a built Weft tree (bin/weft.js and dist/ expected)`);
  }
  return { label: tree, row: treeRow, tree };
}

interface Options {
  a: Side;
  b: Side;
  pairs: number;
  seconds: number;
  connections: number;
  /** Open-loop rate (req/s), or 0: wrk's closed loop, as fast as the side goes. */
  rate: number;
  /** With a rate: load both sides at once (each at the rate) instead of one after the other. */
  together: boolean;
}

function options(argv: string[]): Options {
  const trees: string[] = [];
  const o = { pairs: 10, seconds: 0, connections: 50, rate: 0 };
  let treeRow: BenchRow = weftRow;
  let together = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--row') {
      const name = argv[++i];
      const row = WEFT_ROWS.find((r) => r.name === name);
      if (row === undefined) throw new Error(`--row needs one of ${WEFT_ROWS.map((r) => r.name).join(', ')}, not ${JSON.stringify(name)}`);
      treeRow = row;
    } else if (arg === '--pairs' || arg === '--seconds' || arg === '--connections' || arg === '--rate') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${arg} needs a positive integer, not ${JSON.stringify(argv[i])}`);
      o[arg.slice(2) as keyof typeof o] = n;
    } else if (arg === '--together') {
      together = true;
    } else if (arg.startsWith('--')) {
      throw new Error(`unknown option ${arg}`);
    } else {
      trees.push(arg);
    }
  }
  if (trees.length !== 2) throw new Error('usage: npm run bench:ab -- <A> <B> [--row weft] [--pairs 10] [--seconds 2] [--connections 50] [--rate N [--together]] (a side: a built Weft tree, or a row such as nginx)');
  if (o.seconds === 0) o.seconds = o.rate > 0 ? 5 : 2;
  if (together && o.rate === 0) throw new Error('--together needs --rate: at full speed the two sides would take each other\'s CPU');
  return { a: side(trees[0]!, treeRow), b: side(trees[1]!, treeRow), ...o, together };
}

const WARMUP_SEC = 1;

/** One open-loop run at `o.rate` through `port`, the generator on core 1. */
function openLoop(port: number, o: Options): Promise<OpenLoopResult> {
  return runOpenLoop({ port, rate: o.rate, durationSec: o.seconds, connections: o.connections, hostHeader: 'upstream', path: '/', warmupSec: WARMUP_SEC, drainSec: 2, core: 1 });
}

/** One run of one side: req/s (the rate reached, at a fixed rate), p50 (fixed rate only), CPU-ms per 1,000 requests. */
interface Run {
  rps: number;
  p50Ms: number;
  cpuPer1k: number;
  /** Fixed rate only: how late the generator sent, p99 (ms); latency counts from the intended time. */
  lagP99Ms: number;
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

let tmp = '';
runBench(
  async () => {
    const o = options(process.argv.slice(2));
    tmp = mkdtempSync(path.join(tmpdir(), 'weft-ab-'));
    const upstream = await startUpstream(tmp, 1);
    const start = async (x: Side, name: string): Promise<RunningRow> => {
      const dir = path.join(tmp, name);
      mkdirSync(dir, { recursive: true });
      return x.row.start({ upstreamPort: upstream.port, tmpDir: dir, proxyCore: 0, repoRoot: x.tree });
    };
    const rps: number[] = [];
    const cpu: number[] = [];
    const first = o.rate > 0 ? `p50 at ${o.rate} req/s` : 'req/s';
    const roundMedians: string[] = [];
    // Two rounds with fresh processes, started A then B, then B then A: whichever side starts
    // second reads 1-2 % fast here (an A/A run of one build against itself: +1.2 %, +2.0 %), so each
    // round's median carries that bias one way and their geometric mean cancels it.
    for (let round = 0; round < 2; round++) {
      const sides = {} as Record<'A' | 'B', RunningRow>;
      for (const which of round === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)) sides[which] = await start(which === 'A' ? o.a : o.b, `${which}${round}`);
      const run = async (name: 'A' | 'B'): Promise<Run> => {
        const { port } = sides[name];
        // The whole tree (nginx's workers are children of its master).
        const pids = processTree(sides[name].pids);
        const c0 = cpuMs(pids);
        if (o.rate > 0) {
          const r = await openLoop(port, o);
          if (r.errors + r.unfinished > 0 || r.non2xx > 0) throw new Error(`${name}: ${r.errors + r.unfinished} failed, ${r.non2xx} non-2xx of ${r.intended}`);
          // Every request sent, the warm-up's too, over the CPU of the whole run.
          const sent = r.intended + Math.round(o.rate * WARMUP_SEC);
          return { rps: r.achievedRate, p50Ms: r.latency.p50Ms, cpuPer1k: (cpuMs(pids) - c0) / (sent / 1000), lagP99Ms: r.sendLag.p99Ms };
        }
        const r = await runWrk({ port, connections: o.connections, threads: 1, hostHeader: 'upstream', core: 1, durationSec: o.seconds });
        // A side answering errors fast would look fast: every answer must be a 2xx on a kept connection.
        if (r.non2xx > 0 || r.socketErrors > 0) throw new Error(`${name}: ${r.non2xx} non-2xx answers, ${r.socketErrors} socket errors`);
        return { rps: r.requestsPerSec, p50Ms: 0, cpuPer1k: (cpuMs(pids) - c0) / (r.requests / 1000), lagP99Ms: 0 };
      };
      await run('A');
      await run('B');
      const roundRps: number[] = [];
      const roundCpu: number[] = [];
      const pairs = Math.ceil(o.pairs / 2);
      for (let i = 0; i < pairs; i++) {
        const order = i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const);
        const got: Record<string, Run> = {};
        if (o.together) [got.A, got.B] = await Promise.all([run('A'), run('B')]);
        else for (const which of order) got[which] = await run(which);
        const a = got.A!;
        const b = got.B!;
        // At a fixed rate the first ratio is p50 latency (lower is better), else req/s.
        roundRps.push(o.rate > 0 ? b.p50Ms / a.p50Ms : b.rps / a.rps);
        roundCpu.push(b.cpuPer1k / a.cpuPer1k);
        // At a fixed rate the generator's own send lag is shown: with --together two generators share
        // the load core, and lag they add to both sides pulls the p50 ratio toward 1.
        const show = (x: Run): string =>
          (o.rate > 0 ? `p50 ${x.p50Ms.toFixed(3)} ms (send lag p99 ${x.lagP99Ms.toFixed(2)})` : `${Math.round(x.rps)} req/s`) + `, ${x.cpuPer1k.toFixed(1)} CPU-ms per 1k`;
        console.log(`round ${round + 1} pair ${i + 1}: A ${show(a)} | B ${show(b)} | B/A ${roundRps[roundRps.length - 1]!.toFixed(3)}, CPU ${(b.cpuPer1k / a.cpuPer1k).toFixed(3)}`);
      }
      rps.push(median(roundRps));
      cpu.push(median(roundCpu));
      const faster = o.rate > 0 ? roundCpu.filter((r) => r < 1).length : roundRps.filter((r) => r > 1).length;
      roundMedians.push(`round ${round + 1} (${round === 0 ? 'A' : 'B'} started first): ${first} ${median(roundRps).toFixed(3)}, CPU ${median(roundCpu).toFixed(3)}, B ${o.rate > 0 ? 'cheaper' : 'faster'} in ${faster} of ${roundRps.length}`);
      // A row that turned out not to measure what it claims (e.g. no mTLS connection, no span
      // exported) fails the run.
      for (const which of ['A', 'B'] as const) {
        const check = await sides[which].finalCheck?.();
        if (check?.failure !== undefined) throw new Error(`${which}: ${check.failure}`);
      }
      await Promise.all([sides.A.stop(), sides.B.stop()]);
    }
    for (const line of roundMedians) console.log(line);
    const geo = (xs: number[]): number => Math.sqrt(xs[0]! * xs[1]!);
    console.log(`B/A (geometric mean of the two rounds' medians): ${first} ${geo(rps).toFixed(3)}, CPU per request ${geo(cpu).toFixed(3)}`);
    console.log(`A = ${o.a.label}\nB = ${o.b.label}`);
    await upstream.stop();
    rmSync(tmp, { recursive: true, force: true });
  },
  log,
  () => () => {
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  },
);
