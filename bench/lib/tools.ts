/**
 * External tools: make sure they are installed (apt-get, as root) and report their versions.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';

/** Debian package that provides each command. */
const PACKAGE_OF: Record<string, string> = {
  nginx: 'nginx',
  haproxy: 'haproxy',
  wrk: 'wrk',
  taskset: 'util-linux',
};

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Install the missing commands with `apt-get install -y` (running `apt-get update` once if the
 * first attempt fails). Returns the commands that are still missing.
 */
export function ensureCommands(commands: readonly string[], log: (line: string) => void): string[] {
  const missing = commands.filter((c) => !hasCommand(c));
  if (missing.length === 0) return [];
  const packages = [...new Set(missing.map((c) => PACKAGE_OF[c] ?? c))];
  log(`installing missing tools: ${packages.join(' ')} (apt-get install -y)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env,
      timeout: 300_000,
    }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'], env, timeout: 300_000 });
    install();
  }
  return missing.filter((c) => !hasCommand(c));
}

function firstLine(cmd: string, args: string[]): string {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Facts about the machine and the tools, for the results file. */
export interface MachineInfo {
  date: string;
  command: string;
  nproc: number;
  cpuModel: string;
  kernel: string;
  node: string;
  nginx: string;
  haproxy: string;
  wrk: string;
  /** 1-minute load average when the run started: other work on the machine skews the tails. */
  loadAverage: number;
}

export function machineInfo(command: string): MachineInfo {
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim()) || nproc;
  } catch {
    /* keep Node's view */
  }
  return {
    date: new Date().toISOString(),
    command,
    nproc,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nginx: hasCommand('nginx') ? firstLine('nginx', ['-v']).replace(/^nginx version:\s*/, '') : 'not installed',
    haproxy: hasCommand('haproxy') ? firstLine('haproxy', ['-v']).replace(/\s*-\s*https?:.*$/, '') : 'not installed',
    wrk: hasCommand('wrk') ? firstLine('wrk', ['--version']).replace(/\s*Copyright.*$/, '') : 'not installed',
    loadAverage: os.loadavg()[0] ?? 0,
  };
}
