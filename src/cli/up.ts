/**
 * `weft up -f mesh.yaml`: a whole mesh on one machine. Starts a control plane in this process, applies
 * the file's resources, then for each App its sidecar and, once the sidecar is ready, the app itself
 * with `PORT` and `HTTP_PROXY` in its environment. Apps that crash are restarted with backoff; a
 * one-shot job (`restart: Never`) takes its sidecar with it when it ends. Every line a process prints
 * is prefixed with its name. Ctrl-C stops the apps, then the sidecars, then the control plane.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { saveAdminToken } from './credentials.js';
import { ControlPlane } from '../control/control-plane.js';
import { resourceKey } from '../control/resource-index.js';
import { formatResourceError, loadResources } from '../model/index.js';
import type { App } from '../model/resources.js';
import { UsageError, duration, port, version, type Command } from './command.js';
import { DEFAULT_API_PORT } from './control-command.js';
import { inboundSample, renderSignals, signals } from './up-stats.js';

const weftBin = fileURLToPath(new URL('../../../bin/weft.js', import.meta.url));
const STOP_GRACE_MS = 5000;

export const upCommand: Command = {
  summary: 'run a whole mesh here: control plane, a sidecar per app, the apps',
  usage: 'weft up -f mesh.yaml [--api-port PORT] [--data-dir DIR] [--stats]',
  options: {
    file: { type: 'string', short: 'f' },
    'api-port': { type: 'string', default: String(DEFAULT_API_PORT) },
    'data-dir': { type: 'string' },
    stats: { type: 'boolean', default: false },
    'stats-interval': { type: 'string', default: '2s' },
    'stats-note': { type: 'string' },
  },
  help: `The file holds the mesh's resources (Services, routes, policies) and an App per process to run:

  apiVersion: weft.dev/v1alpha1
  kind: App
  metadata: { name: reviews-v2, labels: { app: reviews, version: v2 } }
  spec:
    command: [node, apps/reviews.mjs]   # run from the file's folder
    env: { VERSION: v2 }
    ports: { http: 0 }                  # the default; 0 = a free port, given to the app as PORT
    restart: Always                     # or OnFailure, or Never for a one-shot job

Each app gets PORT (and PORT_<NAME> per port) and HTTP_PROXY pointing at its sidecar.
Options:
  -f, --file FILE        the mesh file
      --api-port PORT    control plane API (default ${DEFAULT_API_PORT}; 0 = chosen by the OS)
      --data-dir DIR     keep the control plane's store here (default: a temporary folder, removed on exit)
      --stats            print requests/s, success rate and p99 per app every --stats-interval (default 2s)
      --stats-note TEXT  a line to print under each stats table
Ctrl-C stops everything; a second Ctrl-C kills at once.`,
  run: runUp,
};

/** Ports this run handed out: never twice, even when the OS would give one again. */
const handedOut = new Set<number>();

/**
 * A port free on 127.0.0.1 for a sidecar or an app to bind a moment later. It is picked below the
 * kernel's ephemeral range when there is room, so ports the OS assigns meanwhile (the sidecars'
 * admin servers on port 0, outgoing connections) cannot take it before its owner binds it.
 */
async function freePort(): Promise<number> {
  const low = ephemeralLow();
  const floor = 10_000;
  for (let i = 0; i < 64 && low - floor >= 1000; i++) {
    const p = floor + Math.floor(Math.random() * (low - floor));
    if (!handedOut.has(p) && (await bindable(p)) !== null) return take(p);
  }
  for (let i = 0; i < 64; i++) {
    const p = await bindable(0);
    if (p !== null && !handedOut.has(p)) return take(p);
  }
  throw new Error('no free port found on 127.0.0.1');
}

function take(p: number): number {
  handedOut.add(p);
  return p;
}

/** Binds `port` (0: any) on 127.0.0.1 and lets go: the port bound, or null when it was taken. */
function bindable(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** The lowest port of the kernel's ephemeral range (Linux's default 32768 when it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

const COLORS = [36, 33, 35, 32, 34, 91, 96, 93, 95, 92];

/** Prefixes every line of a stream with a name. */
class Logs {
  private width = 8;
  private readonly tty = process.stdout.isTTY === true;
  private next = 0;
  private readonly colors = new Map<string, number>();

  widen(name: string): void {
    this.width = Math.max(this.width, name.length);
  }

  line(name: string, text: string): void {
    let color = this.colors.get(name.replace(/\.proxy$/, ''));
    if (color === undefined) {
      color = COLORS[this.next++ % COLORS.length]!;
      this.colors.set(name.replace(/\.proxy$/, ''), color);
    }
    const tag = name.padEnd(this.width);
    process.stdout.write(this.tty ? `\x1b[${color}m${tag} |\x1b[0m ${text}\n` : `${tag} | ${text}\n`);
  }

  follow(name: string, stream: NodeJS.ReadableStream | null): void {
    if (stream === null) return;
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      rest += chunk;
      const lines = rest.split('\n');
      rest = lines.pop()!;
      for (const l of lines) this.line(name, l);
    });
    stream.on('end', () => {
      if (rest !== '') this.line(name, rest);
    });
  }
}

/** One app and its sidecar, supervised. */
/** weft up's join tokens outlive any session; they are revoked when it stops. */
const UP_TOKEN_TTL_MS = 365 * 24 * 3600_000;

class Unit {
  readonly app: App;
  readonly name: string;
  readonly ports: Record<string, number> = {};
  outbound = 0;
  inbound = 0;
  admin = 0;
  sidecar: ChildProcess | null = null;
  proc: ChildProcess | null = null;
  restarts = 0;
  startedAt = 0;
  finished = false;
  timer: NodeJS.Timeout | null = null;

  constructor(app: App) {
    this.app = app;
    this.name = app.metadata.namespace === 'default' ? app.metadata.name : `${app.metadata.namespace}/${app.metadata.name}`;
  }
}

function exited(p: ChildProcess | null): Promise<void> {
  if (p === null || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => p.once('exit', () => r()));
}

/** Signals a child's whole process group (it was started detached, as its own group). */
function signal(p: ChildProcess | null, sig: NodeJS.Signals): void {
  if (p === null || p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, sig);
  } catch {
    try {
      p.kill(sig);
    } catch {
      // already gone
    }
  }
}

async function stopProcess(p: ChildProcess | null): Promise<void> {
  if (p === null) return;
  signal(p, 'SIGTERM');
  const kill = setTimeout(() => signal(p, 'SIGKILL'), STOP_GRACE_MS);
  await exited(p);
  clearTimeout(kill);
}

async function runUp(v: Record<string, unknown>): Promise<number> {
  if (typeof v.file !== 'string') throw new UsageError('-f mesh.yaml is required');
  const file = resolve(v.file);
  const apiPort = port(v['api-port'], 'api-port');
  if (apiPort === null) throw new UsageError('--api-port: the control plane needs its API');
  const statsEvery = duration(v['stats-interval'], 'stats-interval');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    console.error(`${v.file}: ${(err as Error).message}`);
    return 1;
  }
  const loaded = loadResources(text, v.file);
  if (loaded.errors.length > 0) {
    for (const e of loaded.errors) console.error(formatResourceError(e));
    console.error(`weft up: ${v.file} has ${loaded.errors.length} error(s); nothing was started`);
    return 1;
  }
  const apps = loaded.resources.filter((r): r is App => r.kind === 'App');
  const resources = loaded.resources.filter((r) => r.kind !== 'App');
  const logs = new Logs();
  const say = (msg: string): void => logs.line('weft up', msg);
  for (const a of apps) logs.widen(`${a.metadata.name}.proxy`);

  const tempData = v['data-dir'] === undefined;
  const dataDir = tempData ? mkdtempSync(join(tmpdir(), 'weft-up-')) : (v['data-dir'] as string);
  // Every sidecar joins with a token made here, so a stream without one is never ours: refuse it.
  const cp = new ControlPlane({ dataDir, apiHost: '127.0.0.1', apiPort, configDir: null, leaseTtlMs: 10_000, version, streamAuth: 'required', log: (m) => logs.line('control', m) });
  let boundPort: number;
  try {
    boundPort = await cp.start();
  } catch (err) {
    console.error(`weft up: cannot start the control plane on port ${apiPort}: ${(err as Error).message}${apiPort !== 0 ? ' (is another "weft up" running? --api-port picks another port)' : ''}`);
    await cp.stop();
    if (tempData) rmSync(dataDir, { recursive: true, force: true });
    return 1;
  }
  const url = `http://127.0.0.1:${boundPort}`;
  for (const r of resources) await cp.index.apply(r);
  for (const [key, errs] of cp.config.view().errorsByResource()) for (const e of errs) say(`problem in ${key}: ${formatResourceError(e)}`);
  let saved = '';
  try {
    saved = `; its admin token is saved for the CLI in ${saveAdminToken(url, cp.adminToken.token)}`;
  } catch (err) {
    saved = `; the admin token could not be saved for the CLI (${(err as Error).message}): it is in ${cp.adminToken.file}`;
  }
  say(`control plane on ${url} (export WEFT_SERVER=${url} for the weft CLI${saved})`);

  const units = apps.map((a) => new Unit(a));
  const tokens = new Map<string, Promise<{ token: string; info: { id: string } }>>();
  const tokenFor = async (namespace: string, serviceAccount: string): Promise<string> => {
    const key = `${namespace}/${serviceAccount}`;
    if (!tokens.has(key)) tokens.set(key, cp.tokens.create(namespace, serviceAccount, UP_TOKEN_TTL_MS));
    return (await tokens.get(key)!).token;
  };
  let stopping = false;

  const startSidecar = async (u: Unit): Promise<void> => {
    const a = u.app;
    const args = [weftBin, 'proxy', '--quiet', '--control-plane', url, '--workload', a.metadata.name, '--namespace', a.metadata.namespace, '--register'];
    for (const [n, p] of Object.entries(u.ports)) args.push('--app-port', `${n}=${p}`);
    for (const [k, l] of Object.entries(a.metadata.labels)) args.push('--label', `${k}=${l}`);
    if (a.spec.calls !== undefined) args.push('--calls', a.spec.calls.length > 0 ? a.spec.calls.join(',') : '');
    args.push('--service-account', a.spec.serviceAccount ?? 'default', '--outbound-port', String(u.outbound), '--inbound-port', String(u.inbound), '--admin-port', '0');
    // Each sidecar joins with a token for its App's identity, made here: nobody handles a key or a token.
    const token = await tokenFor(a.metadata.namespace, a.spec.serviceAccount ?? 'default');
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, WEFT_TOKEN: token } });
    u.sidecar = p;
    logs.follow(`${u.name}.proxy`, p.stderr);
    const listening = await new Promise<number>((res, rej) => {
      let out = '';
      p.stdout!.setEncoding('utf8');
      p.stdout!.on('data', (c: string) => {
        out += c;
        const line = out.split('\n').find((l) => l.includes('"listening"'));
        if (line !== undefined) res((JSON.parse(line) as { ports: { admin: number } }).ports.admin);
      });
      p.once('exit', (code) => rej(new Error(`sidecar of ${u.name} exited with ${code} before listening`)));
    });
    u.admin = listening;
    p.once('exit', (code, sig) => {
      if (stopping || u.finished || u.sidecar !== p) return;
      say(`sidecar of ${u.name} exited (${sig ?? code}); restarting it`);
      setTimeout(() => void startSidecar(u).catch((e: Error) => say(e.message)), 500);
    });
    // Ready once it holds its configuration, so the app's first call already has a route.
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !stopping) {
      const ok = await fetch(`http://127.0.0.1:${u.admin}/ready`).then((r) => r.ok, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!stopping) say(`sidecar of ${u.name} not ready after 15 s; starting the app anyway`);
  };

  const startApp = (u: Unit): void => {
    if (stopping) return;
    const [cmd, ...rest] = u.app.spec.command;
    const env: NodeJS.ProcessEnv = { ...process.env, ...u.app.spec.env };
    const first = Object.values(u.ports)[0];
    if (first !== undefined) env.PORT = String(first);
    for (const [n, p] of Object.entries(u.ports)) env[`PORT_${n.toUpperCase().replace(/-/g, '_')}`] = String(p);
    env.HTTP_PROXY = env.http_proxy = `http://127.0.0.1:${u.outbound}`;
    env.NO_PROXY = env.no_proxy = 'localhost,127.0.0.1,::1';
    const p = spawn(cmd === 'node' ? process.execPath : cmd!, rest, { cwd: dirname(file), env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    u.proc = p;
    u.startedAt = Date.now();
    logs.follow(u.name, p.stdout);
    logs.follow(u.name, p.stderr);
    p.once('error', (err) => say(`${u.name}: cannot start ${cmd}: ${err.message}`));
    p.once('exit', (code, sig) => {
      if (stopping) return;
      const policy = u.app.spec.restart ?? 'Always';
      if (policy === 'Never' || (policy === 'OnFailure' && code === 0)) {
        u.finished = true;
        say(`${u.name} finished (${sig ?? `exit ${code}`}); stopping its sidecar`);
        void stopProcess(u.sidecar);
        return;
      }
      if (Date.now() - u.startedAt > 10_000) u.restarts = 0;
      const delay = Math.min(10_000, 250 * 2 ** u.restarts++);
      say(`${u.name} exited (${sig ?? `exit ${code}`}); restarting in ${(delay / 1000).toFixed(2)} s`);
      u.timer = setTimeout(() => startApp(u), delay);
    });
  };

  /** Waits (up to 30 s) until each server's sidecar has registered its app's ports, i.e. the app listens. */
  const serversJoined = async (servers: Unit[]): Promise<void> => {
    const joined = (u: Unit): boolean => {
      const e = cp.index.get(resourceKey({ kind: 'Workload', metadata: u.app.metadata }));
      return e !== undefined && e.resource.kind === 'Workload' && Object.keys(e.resource.spec.ports).length > 0;
    };
    const deadline = Date.now() + 30_000;
    while (!stopping && servers.some((u) => !joined(u))) {
      if (Date.now() > deadline) {
        say(`not listening after 30 s: ${servers.filter((u) => !joined(u)).map((u) => u.name).join(', ')}; starting the other apps anyway`);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  let statsTimer: NodeJS.Timeout | null = null;
  const shutdown = async (): Promise<void> => {
    stopping = true;
    if (statsTimer !== null) clearInterval(statsTimer);
    for (const u of units) if (u.timer !== null) clearTimeout(u.timer);
    say('stopping apps');
    await Promise.all(units.map((u) => stopProcess(u.proc)));
    say('stopping sidecars');
    await Promise.all(units.map((u) => stopProcess(u.sidecar)));
    // The tokens lived as long as this session (they matter only when --data-dir keeps the store).
    for (const t of tokens.values()) await cp.tokens.revoke((await t).info.id).catch(() => false);
    await cp.stop();
    if (tempData) rmSync(dataDir, { recursive: true, force: true });
    say('stopped');
  };
  const done = new Promise<number>((resolveDone) => {
    let signals = 0;
    const onSignal = (): void => {
      if (++signals > 1) {
        for (const u of units) {
          signal(u.proc, 'SIGKILL');
          signal(u.sidecar, 'SIGKILL');
        }
        return;
      }
      void shutdown().then(() => resolveDone(0));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });

  try {
    for (const u of units) {
      for (const [n, p] of Object.entries(u.app.spec.ports ?? { http: 0 })) u.ports[n] = p === 0 ? await freePort() : p;
      u.outbound = await freePort();
      u.inbound = await freePort();
    }
    // Sidecars first (in parallel), then each app that serves once its own sidecar is ready, then the
    // apps that only call others (no ports: clients, jobs) once every server is among the endpoints.
    const serves = (u: Unit): boolean => Object.keys(u.ports).length > 0;
    await Promise.all(units.map(async (u) => {
      // Ports were picked free but released for the sidecar to bind; if something took one meanwhile, pick again.
      for (let attempt = 1; ; attempt++) {
        try {
          await startSidecar(u);
          break;
        } catch (err) {
          if (attempt === 3 || stopping) throw err;
          say(`${(err as Error).message}; retrying with other ports`);
          u.outbound = await freePort();
          u.inbound = await freePort();
        }
      }
      if (serves(u)) startApp(u);
    }));
    await serversJoined(units.filter(serves));
    for (const u of units) if (!serves(u)) startApp(u);
  } catch (err) {
    say(`${(err as Error).message}; stopping`);
    await shutdown();
    return 1;
  }
  if (stopping) return done;
  console.log(
    JSON.stringify({
      event: 'listening',
      apiPort: boundPort,
      apps: Object.fromEntries(units.map((u) => [u.name, { ports: u.ports, outbound: u.outbound, inbound: u.inbound, admin: u.admin, pid: u.proc?.pid ?? null, sidecarPid: u.sidecar?.pid ?? null }])),
    }),
  );
  say(`${units.length} apps running; Ctrl-C stops everything`);

  if (v.stats === true) {
    const last = new Map<string, ReturnType<typeof inboundSample>>();
    statsTimer = setInterval(() => {
      void Promise.all(
        units
          .filter((u) => Object.keys(u.ports).length > 0 && !u.finished)
          .map(async (u) => {
            const text = await fetch(`http://127.0.0.1:${u.admin}/metrics`).then((r) => r.text(), () => null);
            if (text === null) return null;
            const now = inboundSample(text, Date.now());
            const before = last.get(u.name);
            last.set(u.name, now);
            return before === undefined ? null : signals(u.name, before, now);
          }),
      ).then((rows) => {
        const ready = rows.filter((r) => r !== null);
        const note = typeof v['stats-note'] === 'string' ? `${v['stats-note']}\n` : '';
        if (ready.length > 0 && !stopping) process.stdout.write(`\n${renderSignals(ready)}\n${note}\n`);
      });
    }, statsEvery);
  }
  return done;
}
