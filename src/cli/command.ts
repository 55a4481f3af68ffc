/** What every `weft` command is, and the small parsers their flags share. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ParseArgsConfig } from 'node:util';
import { parseDuration } from '../model/duration.js';

export const version = (JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }).version;

/** One `weft <command>`. */
export interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** Whether the command takes positional arguments. */
  positionals?: boolean;
  help: string;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number> | number;
}

/** Wrong usage: thrown by a command, printed with its usage, exit code 2. */
export class UsageError extends Error {}

/** A port flag: 0-65535, or `none` (null). */
export function port(value: unknown, flag: string): number | null {
  if (value === 'none') return null;
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || n > 65535) throw new UsageError(`--${flag}: "${String(value)}" is not a port (0-65535, or none)`);
  return n;
}

/** A duration flag like `500ms`, `10s`, `5m`, in milliseconds. */
export function duration(value: unknown, flag: string): number {
  try {
    return parseDuration(String(value));
  } catch {
    throw new UsageError(`--${flag}: "${String(value)}" is not a duration like 500ms, 10s, 5m`);
  }
}

/** `key=value` flags (repeatable) as a record. */
export function pairs(values: string[], flag: string, check: (k: string, v: string) => string | null = () => null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of values) {
    const i = s.indexOf('=');
    if (i <= 0) throw new UsageError(`--${flag}: "${s}" is not KEY=VALUE`);
    const k = s.slice(0, i);
    const v = s.slice(i + 1);
    const problem = check(k, v);
    if (problem !== null) throw new UsageError(`--${flag}: "${s}": ${problem}`);
    out[k] = v;
  }
  return out;
}
