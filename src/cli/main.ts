/**
 * The `weft` command: the composition root, the only place that wires parts together.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatResourceError, loadResources } from '../model/index.js';
import { ApiError } from './api-client.js';
import { UsageError, version, type Command } from './command.js';
import { controlCommand } from './control-command.js';
import { proxyCommand } from './proxy-command.js';
import { upCommand } from './up.js';
import { traceCommand } from './trace-command.js';
import { edgesCommand, statCommand, tapCommand, topCommand } from './stats-commands.js';
import { dashboardCommand } from './dashboard-command.js';
import { caCommand, tokenCommand } from './identity-commands.js';
import { applyCommand, checkCommand, deleteCommand, getCommand, proxyConfigCommand, proxyStatusCommand } from './resource-commands.js';

const commands: Record<string, Command> = {
  up: upCommand,
  control: controlCommand,
  proxy: proxyCommand,
  apply: applyCommand,
  get: getCommand,
  delete: deleteCommand,
  'proxy-status': proxyStatusCommand,
  'proxy-config': proxyConfigCommand,
  check: checkCommand,
  token: tokenCommand,
  trace: traceCommand,
  stat: statCommand,
  edges: edgesCommand,
  tap: tapCommand,
  top: topCommand,
  dashboard: dashboardCommand,
  ca: caCommand,
  validate: {
    summary: 'check resource files and print every error',
    usage: 'weft validate -f FILE [-f FILE …]',
    options: { file: { type: 'string', short: 'f', multiple: true, default: [] } },
    help: 'Exits 0 when every file is valid, 1 otherwise. Errors name file, line, resource and field.',
    run: (values) => {
      const files = values.file as string[];
      if (files.length === 0) throw new UsageError('give at least one -f FILE');
      let bad = 0;
      for (const f of files) {
        let text: string;
        try {
          text = readFileSync(f, 'utf8');
        } catch (err) {
          console.error(`${f}: ${(err as Error).message}`);
          bad++;
          continue;
        }
        const r = loadResources(text, f);
        for (const e of r.errors) console.error(formatResourceError(e));
        bad += r.errors.length;
        if (r.errors.length === 0) console.log(`${f}: ${r.resources.length} resources, valid`);
      }
      return bad === 0 ? 0 : 1;
    },
  },
  version: {
    summary: 'print the version',
    usage: 'weft version',
    options: {},
    help: '',
    run: () => {
      console.log(`weft ${version}`);
      return 0;
    },
  },
};

function usageError(cmd: string, message: string): number {
  console.error(`weft ${cmd}: ${message}\nusage: ${commands[cmd]!.usage}\nsee: weft ${cmd} --help`);
  return 2;
}

function mainHelp(): string {
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(13)} ${c.summary}`);
  return `weft ${version}: a service mesh for Node.js

Usage: weft <command> [options]

Commands:
${lines.join('\n')}

Run "weft <command> --help" for a command's options.`;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    console.log(mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    console.log(`weft ${version}`);
    return 0;
  }
  const cmd = commands[name];
  if (cmd === undefined) {
    console.error(`weft: unknown command "${name}"\n\n${mainHelp()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`Usage: ${cmd.usage}\n\n${cmd.summary}\n\n${cmd.help}`);
    return 0;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: cmd.positionals === true, strict: true });
  } catch (err) {
    return usageError(name, (err as Error).message);
  }
  try {
    return await cmd.run(parsed.values as Record<string, unknown>, parsed.positionals);
  } catch (err) {
    if (err instanceof UsageError) return usageError(name, err.message);
    console.error(`weft ${name}: ${(err as Error).message}`);
    return err instanceof ApiError && err.status === 0 ? 3 : 1;
  }
}
