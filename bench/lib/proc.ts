/**
 * Reading CPU time and memory of processes from /proc (Linux only).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clockTicks: number | null = null;

/** Kernel clock ticks per second (USER_HZ), the unit of utime/stime in /proc/<pid>/stat. */
export function clockTicksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Fields of /proc/<pid>/stat after "pid (comm) ", which may itself contain spaces or parens. */
function statFields(pid: number): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** `root` and every live descendant, found through the ppid field of /proc/<pid>/stat. */
export function processTree(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const fields = statFields(pid);
    if (!fields) continue;
    const ppid = Number(fields[1]);
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const out: number[] = [];
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (out.includes(pid) || statFields(pid) === null) continue;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU time (user + system, all threads) in milliseconds, summed over the processes. */
export function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const fields = statFields(pid);
    if (!fields) continue;
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
  }
  return (ticks * 1000) / clockTicksPerSecond();
}

/** Resident set size in KiB (VmRSS), summed over the processes. */
export function rssKiB(pids: readonly number[]): number {
  let kib = 0;
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kib += Number(m[1]);
    } catch {
      /* exited */
    }
  }
  return kib;
}

/** Busy and total jiffies per CPU core, from /proc/stat. */
export type CoreTimes = Map<number, { busy: number; total: number }>;

export function coreTimes(): CoreTimes {
  const out: CoreTimes = new Map();
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2]!.trim().split(/\s+/).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // up to steal; guest is inside user
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    out.set(Number(m[1]), { busy: total - idle, total });
  }
  return out;
}

/** Percentage of time the core was busy between two samples. */
export function coreBusyPercent(before: CoreTimes, after: CoreTimes, core: number): number {
  const a = before.get(core);
  const b = after.get(core);
  if (!a || !b || b.total === a.total) return Number.NaN;
  return (100 * (b.busy - a.busy)) / (b.total - a.total);
}
