/**
 * The open-loop generator (`bench/open-loop.ts`) as its own process, as `bench:targets` and
 * `bench:ab --rate` run it: `node --no-opt` (see open-loop.ts), pinned to `core`, niced; stopped if
 * it outlives its run by 15 s. Resolves with its JSON result; rejects if it exits without one.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OpenLoopResult } from '../open-loop.js';
import { oneLine } from './http-probe.js';
import { launch } from './processes.js';

const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'); // dist/bench

export interface OpenLoopRun {
  port: number;
  rate: number;
  durationSec: number;
  connections: number;
  hostHeader: string;
  path: string;
  warmupSec: number;
  drainSec: number;
  core: number | null;
}

export async function runOpenLoop(o: OpenLoopRun): Promise<OpenLoopResult> {
  const gen = launch(
    'open-loop',
    process.execPath,
    [
      '--no-opt',
      path.join(BENCH_DIR, 'open-loop.js'),
      '--port', String(o.port),
      '--rate', String(o.rate),
      '--duration', String(o.durationSec),
      '--connections', String(o.connections),
      '--host-header', o.hostHeader,
      '--path', o.path,
      '--drain', String(o.drainSec),
      '--warmup', String(o.warmupSec),
    ],
    { core: o.core, nice: 19 },
  );
  const timer = setTimeout(() => void gen.stop(), (o.warmupSec + o.durationSec + o.drainSec + 15) * 1000);
  const code = await gen.exited;
  clearTimeout(timer);
  await gen.stop();
  const out = gen.outputTail();
  const json = out.split('\n').reverse().find((l) => l.startsWith('{'));
  if (code !== 0 || !json) throw new Error(`open-loop generator exited (${code}): ${oneLine(out)}`);
  return JSON.parse(json) as OpenLoopResult;
}
