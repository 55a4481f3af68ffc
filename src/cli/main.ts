/**
 * The `weft` command: the composition root, the only place that wires parts together.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { configApplied, configRejected, configWarnings, proxyLifecycle } from '../core/diagnostics.js';
import { formatResourceError, loadResources, parseDuration } from '../model/index.js';
import { FileConfigSource } from '../proxy/config-client/file-source.js';
import { Proxy, defaultProxyOptions, type TcpUpstream } from '../proxy/proxy.js';

const version = (JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }).version;

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  help: string;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number> | number;
}

const commands: Record<string, Command> = {
  proxy: {
    summary: 'run a proxy (sidecar) for one workload',
    usage: 'weft proxy --file mesh.yaml --workload NAME [options]',
    options: {
      file: { type: 'string', short: 'f' },
      workload: { type: 'string', short: 'w' },
      namespace: { type: 'string', short: 'n', default: 'default' },
      'outbound-port': { type: 'string', default: String(defaultProxyOptions.outboundPort) },
      'inbound-port': { type: 'string', default: String(defaultProxyOptions.inboundPort) },
      'admin-port': { type: 'string', default: String(defaultProxyOptions.adminPort) },
      upstream: { type: 'string', multiple: true, default: [] },
      bind: { type: 'string', default: defaultProxyOptions.bindAddress },
      'request-header-timeout': { type: 'string', default: '10s' },
      'idle-timeout': { type: 'string', default: '5m' },
      'drain-timeout': { type: 'string', default: '30s' },
      'no-watch': { type: 'boolean', default: false },
    },
    help: `Options:
  -f, --file FILE               resources (multi-document YAML); watched, good edits apply live
  -w, --workload NAME           the Workload this proxy stands beside
  -n, --namespace NS            the workload's namespace (default: default)
      --outbound-port PORT      outbound HTTP listener, HTTP_PROXY style or Host-routed (default 15001; "none" to disable)
      --inbound-port PORT       inbound listener forwarding to the app (default 15006; "none" to disable)
      --admin-port PORT         admin on 127.0.0.1: /ready /live /metrics /config_dump /clusters, POST /drain (default 15000)
      --upstream SVC:PORT=LOCAL a local port forwarding to a TCP service, e.g. db:5432=15432 (repeatable)
      --bind ADDRESS            address the listeners bind (default 127.0.0.1)
      --request-header-timeout  time to receive a request head (default 10s)
      --idle-timeout            keep-alive idle time of client connections (default 5m)
      --drain-timeout           longest wait for requests in flight on SIGTERM (default 30s)
      --no-watch                do not watch the file
Ports of 0 are chosen by the OS; the chosen ports are printed on start.`,
    run: runProxy,
  },
  validate: {
    summary: 'check resource files and print every error',
    usage: 'weft validate -f FILE [-f FILE …]',
    options: { file: { type: 'string', short: 'f', multiple: true, default: [] } },
    help: 'Exits 0 when every file is valid, 1 otherwise. Errors name file, line, resource and field.',
    run: (values) => {
      const files = values.file as string[];
      if (files.length === 0) return usageError('validate', 'give at least one -f FILE');
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

function port(value: unknown, flag: string): number | null {
  if (value === 'none') return null;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--${flag}: "${String(value)}" is not a port (0-65535, or none)`);
  return n;
}

function duration(value: unknown, flag: string): number {
  try {
    return parseDuration(String(value));
  } catch {
    throw new Error(`--${flag}: "${String(value)}" is not a duration like 500ms, 10s, 5m`);
  }
}

function parseUpstream(spec: string): TcpUpstream {
  const m = /^([a-z0-9-]+)(?:\.([a-z0-9-]+))?:(\d+)=(\d+)$/.exec(spec);
  if (m === null) throw new Error(`--upstream: "${spec}" is not SERVICE[.NAMESPACE]:PORT=LOCAL_PORT`);
  return { service: m[1]!, namespace: m[2] ?? null, port: Number(m[3]), localPort: Number(m[4]) };
}

async function runProxy(v: Record<string, unknown>): Promise<number> {
  if (typeof v.file !== 'string') return usageError('proxy', '--file is required (a control plane connection arrives later)');
  if (typeof v.workload !== 'string') return usageError('proxy', '--workload is required');
  const proxy = new Proxy({
    ...defaultProxyOptions,
    bindAddress: v.bind as string,
    outboundPort: port(v['outbound-port'], 'outbound-port'),
    inboundPort: port(v['inbound-port'], 'inbound-port'),
    adminPort: port(v['admin-port'], 'admin-port') ?? 0,
    upstreams: (v.upstream as string[]).map(parseUpstream),
    requestHeaderTimeoutMs: duration(v['request-header-timeout'], 'request-header-timeout'),
    idleTimeoutMs: duration(v['idle-timeout'], 'idle-timeout'),
    drainTimeoutMs: duration(v['drain-timeout'], 'drain-timeout'),
  });
  const log = (msg: string): void => console.error(`weft proxy: ${msg}`);
  configApplied.subscribe((m) => {
    const e = m as { source: string; version: string };
    log(`configuration ${e.version} applied from ${e.source}`);
    proxy.metrics.count('weft_config_reloads_total{result="applied"}');
  });
  configRejected.subscribe((m) => {
    const e = m as { errors: string[] };
    log(`configuration refused, keeping the last good one:\n  ${e.errors.join('\n  ')}`);
    proxy.metrics.count('weft_config_reloads_total{result="rejected"}');
  });
  configWarnings.subscribe((m) => log(`configuration has problems (affected routes answer 500 INVALID_BACKEND):\n  ${(m as { warnings: string[] }).warnings.join('\n  ')}`));
  proxyLifecycle.subscribe((m) => {
    const e = m as { event: string; detail: unknown };
    if (e.event === 'listening') console.log(JSON.stringify({ event: 'listening', ports: e.detail }));
    else log(e.event);
  });
  const source = new FileConfigSource(v.file, v.workload, v.namespace as string, (s) => proxy.apply(s));
  try {
    source.load();
  } catch (err) {
    console.error((err as Error).message);
    return 1;
  }
  await proxy.start();
  if (v['no-watch'] !== true) source.watch();
  return new Promise((resolve) => {
    const stop = (): void => {
      source.close();
      void proxy.drain().then(() => resolve(0));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

function mainHelp(): string {
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
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
    parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: false, strict: true });
  } catch (err) {
    return usageError(name, (err as Error).message);
  }
  try {
    return await cmd.run(parsed.values as Record<string, unknown>, parsed.positionals);
  } catch (err) {
    console.error(`weft ${name}: ${(err as Error).message}`);
    return 1;
  }
}
