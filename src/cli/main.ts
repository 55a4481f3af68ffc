/**
 * The `weft` command: the composition root, the only place that wires parts together.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ApiError } from './api-client.js';
import { UsageError, version, type Command } from './command.js';
import { applyProxyHeapFlags } from './heap-flags.js';

/**
 * Each command's module, loaded only when that command runs: `weft proxy` must not pay (in memory
 * and start-up) for the control plane, the YAML parser and the dashboard it never uses.
 */
const commands: Record<string, () => Promise<Command>> = {
  up: async () => (await import('./up.js')).upCommand,
  control: async () => (await import('./control-command.js')).controlCommand,
  proxy: async () => (await import('./proxy-command.js')).proxyCommand,
  apply: async () => (await import('./resource-commands.js')).applyCommand,
  get: async () => (await import('./resource-commands.js')).getCommand,
  delete: async () => (await import('./resource-commands.js')).deleteCommand,
  'proxy-status': async () => (await import('./resource-commands.js')).proxyStatusCommand,
  'proxy-config': async () => (await import('./resource-commands.js')).proxyConfigCommand,
  check: async () => (await import('./resource-commands.js')).checkCommand,
  token: async () => (await import('./identity-commands.js')).tokenCommand,
  trace: async () => (await import('./trace-command.js')).traceCommand,
  stat: async () => (await import('./stats-commands.js')).statCommand,
  edges: async () => (await import('./stats-commands.js')).edgesCommand,
  tap: async () => (await import('./stats-commands.js')).tapCommand,
  top: async () => (await import('./stats-commands.js')).topCommand,
  dashboard: async () => (await import('./dashboard-command.js')).dashboardCommand,
  ca: async () => (await import('./identity-commands.js')).caCommand,
  validate: async () => validateCommand,
  version: async () => versionCommand,
};

const validateCommand: Command = {
  summary: 'check resource files and print every error',
  usage: 'weft validate -f FILE [-f FILE …]',
  options: { file: { type: 'string', short: 'f', multiple: true, default: [] } },
  help: 'Exits 0 when every file is valid, 1 otherwise. Errors name file, line, resource and field.',
  run: async (values) => {
    const files = values.file as string[];
    if (files.length === 0) throw new UsageError('give at least one -f FILE');
    const { formatResourceError, loadResources } = await import('../model/index.js');
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
};

const versionCommand: Command = {
  summary: 'print the version',
  usage: 'weft version',
  options: {},
  help: '',
  run: () => {
    console.log(`weft ${version}`);
    return 0;
  },
};

function usageError(cmd: string, usage: string, message: string): number {
  console.error(`weft ${cmd}: ${message}\nusage: ${usage}\nsee: weft ${cmd} --help`);
  return 2;
}

/** Loads every command (for their summaries): help is the one place that needs them all. */
async function mainHelp(): Promise<string> {
  const loaded = await Promise.all(Object.entries(commands).map(async ([n, load]) => [n, await load()] as const));
  const lines = loaded.map(([n, c]) => `  ${n.padEnd(13)} ${c.summary}`);
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
    console.log(await mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    console.log(`weft ${version}`);
    return 0;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (load === undefined) {
    console.error(`weft: unknown command "${name}"\n\n${await mainHelp()}`);
    return 2;
  }
  // Before the proxy's modules load and allocate: V8 reads these when it sizes the young generation.
  if (name === 'proxy') applyProxyHeapFlags();
  const cmd = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`Usage: ${cmd.usage}\n\n${cmd.summary}\n\n${cmd.help}`);
    return 0;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: cmd.positionals === true, strict: true });
  } catch (err) {
    return usageError(name, cmd.usage, (err as Error).message);
  }
  try {
    return await cmd.run(parsed.values as Record<string, unknown>, parsed.positionals);
  } catch (err) {
    if (err instanceof UsageError) return usageError(name, cmd.usage, err.message);
    console.error(`weft ${name}: ${(err as Error).message}`);
    return err instanceof ApiError && err.status === 0 ? 3 : 1;
  }
}
