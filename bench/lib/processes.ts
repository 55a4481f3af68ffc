/**
 * Child processes of the benchmark: started pinned to a CPU core, each in its own process group,
 * and all stopped when the harness exits — normally, on an error, or on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** A process the harness started, with the tail of its output for error messages. */
export interface Launched {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  hasExited(): boolean;
  /** The last few lines of stdout+stderr, for "failed: …" messages. */
  outputTail(): string;
  /** SIGTERM the process group, SIGKILL it after a grace period; bounded in time. */
  stop(): Promise<void>;
}

const live = new Set<Launched>();
const TAIL_BYTES = 4096;

export interface LaunchOptions {
  /** CPU core to pin to with `taskset -c`; null for no pinning. */
  core: number | null;
  /** Niceness (`nice -n`), e.g. 19 so a busy-polling process yields to the upstream on its core. */
  nice?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export function launch(name: string, command: string, args: string[], opts: LaunchOptions): Launched {
  let argv = [command, ...args];
  if (opts.core !== null) argv = ['taskset', '-c', String(opts.core), ...argv];
  if (opts.nice !== undefined) argv = ['nice', '-n', String(opts.nice), ...argv];
  // nice and taskset exec the command, so the pid we get is the command's; detached puts it (and
  // its children, e.g. nginx workers) in a process group we can signal as a whole.
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exitedFlag = false;
  const exited = new Promise<number | string>((resolve) => {
    child.on('error', (err) => {
      keep(Buffer.from(`spawn error: ${err.message}\n`));
      exitedFlag = true;
      resolve('spawn-error');
    });
    child.on('exit', (code, signal) => {
      exitedFlag = true;
      resolve(code ?? signal ?? 'unknown');
    });
  });
  const launched: Launched = {
    name,
    pid: child.pid ?? -1,
    child,
    exited,
    hasExited: () => exitedFlag,
    outputTail: () => tail.trim(),
    stop: async () => {
      try {
        if (!exitedFlag && child.pid) {
          signalGroup(child.pid, 'SIGTERM');
          if (!(await within(exited, 3000))) {
            signalGroup(child.pid, 'SIGKILL');
            await within(exited, 2000);
          }
        }
        // The leader may be gone while members (workers) linger.
        if (child.pid) signalGroup(child.pid, 'SIGKILL');
      } finally {
        live.delete(launched);
      }
    },
  };
  live.add(launched);
  void exited.then(() => {
    if (!child.pid) live.delete(launched);
  });
  return launched;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Stop everything still running (used on the normal path and on errors). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

/** Last-resort synchronous kill, for process 'exit' and signals. */
export function killAllNow(): void {
  for (const p of live) if (p.pid > 0) signalGroup(p.pid, 'SIGKILL');
  live.clear();
}

let interrupted = false;

/** A stop signal arrived (runBench): a benchmark checks it between rows. */
export function wasInterrupted(): boolean {
  return interrupted;
}

/**
 * Runs a benchmark's `main` so that nothing it launched outlives it: on exit everything is killed;
 * SIGINT/SIGTERM/SIGHUP stop everything gracefully (SIGTERM first, so nginx/haproxy masters reap
 * their workers; bounded by stopAll) and a second signal kills at once; an error is logged, everything
 * stopped, and the exit code set to 1. `cleanup()` returns the current temp-file cleanup (the caller
 * may replace it as the run goes).
 */
export function runBench(main: () => Promise<void>, log: (line: string) => void, cleanup: () => () => void): void {
  process.on('exit', () => killAllNow());
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted) {
        killAllNow();
        cleanup()();
        process.exit(130);
      }
      interrupted = true;
      log(`${signal}: stopping everything (again to force)`);
      void stopAll().finally(() => {
        cleanup()();
        process.exit(130);
      });
    });
  }
  main().catch(async (err: unknown) => {
    log(`error: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll();
    cleanup()();
    process.exitCode = 1;
  });
}
