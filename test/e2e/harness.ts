// Shared pieces of the end-to-end tests: real upstream servers and real `weft` processes on
// loopback, every port chosen by the OS, every process stopped at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const weftBin = join(root, 'bin', 'weft.js');

// The admin tokens `weft control` saves for the CLI go to a folder of this test run, not the user's home.
process.env.XDG_CONFIG_HOME = mkdtempSync(join(tmpdir(), 'weft-e2e-config-'));
delete process.env.WEFT_ADMIN_TOKEN;

/** What an echo upstream saw of one request. */
export interface Seen {
  name: string;
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** An HTTP upstream that answers with what it received. `/slow?ms=N` waits first; `/chunked` streams; `/reset` drops the connection. */
export async function startEcho(name: string): Promise<{ port: number; server: Server; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const s: Seen = { name, method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(parts).toString() };
      seen.push(s);
      const url = new URL(req.url!, 'http://x');
      if (url.pathname === '/reset') {
        req.socket.destroy();
        return;
      }
      const reply = (): void => {
        if (url.pathname === '/chunked') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('one,');
          setTimeout(() => res.end('two'), 20);
          return;
        }
        const json = JSON.stringify(s);
        res.writeHead(200, {
          'content-type': 'application/json', 'content-length': Buffer.byteLength(json), 'x-upstream': name, connection: 'x-private', 'x-private': 'hop',
        });
        res.end(json);
      };
      const ms = Number(url.searchParams.get('ms') ?? 0);
      if (url.pathname === '/slow') setTimeout(reply, ms);
      else reply();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A TCP echo server. */
export async function startTcpEcho(): Promise<{ port: number; close(): void }> {
  const server = createTcpServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

/** A free port: bound by the OS, then released (for a workload that must not answer). */
export async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The example mesh with the given app ports, plus optional extra documents. */
export function meshYaml(p: { v1: number; v2: number; tcp: number }, routeRules?: string, extra = ''): string {
  const rules =
    routeRules ??
    `  - matches: [{ headers: [{ name: x-canary, value: "1" }] }]
    backendRefs: [{ name: echo-v2, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /slow } }]
    timeouts: { request: 300ms }
    backendRefs: [{ name: echo-v1, port: 80 }]
  - backendRefs: [{ name: echo-v1, port: 80, weight: 90 }, { name: echo-v2, port: 80, weight: 10 }]`;
  return `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec:
  selector: { app: echo }
  ports: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo-v1 }
spec: { selector: { app: echo, version: v1 }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo-v2 }
spec: { selector: { app: echo, version: v2 }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: tcp-echo }
spec: { selector: { app: tcp-echo }, ports: [{ name: tcp, port: 9000, protocol: TCP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: echo-1, labels: { app: echo, version: v1 } }
spec: { address: 127.0.0.1, ports: { http: ${p.v1} }, serviceAccount: echo }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: echo-2, labels: { app: echo, version: v2 } }
spec: { address: 127.0.0.1, ports: { http: ${p.v2} }, serviceAccount: echo }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: tcp-echo-1, labels: { app: tcp-echo } }
spec: { address: 127.0.0.1, ports: { tcp: ${p.tcp} } }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: ${p.v1} } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo }
spec:
  parentRefs: [{ kind: Service, name: echo, port: 80 }]
  rules:
${rules}
${extra}`;
}

/** Writes a file in a fresh temporary folder and returns its path. */
export function tempFile(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'weft-e2e-')), name);
  writeFileSync(file, text);
  return file;
}

/** A running `weft proxy` process. */
export interface RunningProxy {
  proc: ChildProcess;
  outbound: number;
  inbound: number;
  admin: number;
  upstreams: Record<string, number>;
  stderr(): string;
  /** SIGTERM, then resolves with the exit code (SIGKILL after 10 s). */
  stop(): Promise<number | null>;
}

/** A running `weft` process that printed its `{"event":"listening",…}` line. */
export interface RunningWeft<T> {
  proc: ChildProcess;
  listening: T;
  stderr(): string;
  /** SIGTERM, then resolves with the exit code (SIGKILL after 10 s). */
  stop(): Promise<number | null>;
}

/**
 * Every `weft` process a test started and that has not exited. A test file that ends without
 * stopping them (a hook cancelled by the runner's timeout, an exception in an `after`) still takes
 * them down when its process exits or is told to stop: no proxy or control plane outlives its test.
 */
const live = new Set<ChildProcess>();
function killLive(): void {
  for (const p of live) p.kill('SIGKILL');
  live.clear();
}
process.once('exit', killLive);
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    killLive();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

/** Spawns `weft <args>` and waits (up to 10 s) for the JSON line it prints once listening. */
export function startWeft<T>(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<RunningWeft<T>> {
  const proc = spawn(process.execPath, [weftBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  let err = '';
  let out = '';
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`weft ${args[0]} did not start within 10 s:\n${err}`));
    }, 10_000);
    const early = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`weft ${args[0]} exited with ${code} before listening:\n${err}`));
    };
    proc.once('exit', early);
    const onData = (c: Buffer): void => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (line === undefined) return;
      proc.stdout!.off('data', onData);
      proc.stdout!.resume();
      clearTimeout(timer);
      proc.off('exit', early);
      resolve({
        proc,
        listening: JSON.parse(line) as T,
        stderr: () => err,
        stop: async () => {
          if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
          proc.kill('SIGTERM');
          const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
          const code = await exited;
          clearTimeout(kill);
          return code;
        },
      });
    };
    proc.stdout!.on('data', onData);
  });
}

type ProxyPorts = { outbound: number; inbound: number; admin: number; upstreams: Record<string, number> };

/** Starts `weft proxy` with OS-chosen ports and waits until it reports them. */
export async function startProxy(file: string, workload: string, extra: string[] = []): Promise<RunningProxy> {
  return startProxyWith(['--file', file, '--workload', workload, ...extra]);
}

/** Starts `weft proxy <args>` with OS-chosen ports. */
export async function startProxyWith(args: string[]): Promise<RunningProxy> {
  const w = await startWeft<{ ports: ProxyPorts }>(['proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', ...args]);
  return { proc: w.proc, ...w.listening.ports, stderr: w.stderr, stop: w.stop };
}

/** A running `weft control`. */
export interface RunningControl extends RunningWeft<{ apiPort: number }> {
  url: string;
  dataDir: string;
  /** The API's admin token (from the data dir). */
  adminToken: string;
  /** `fetch` against the API with the admin token. */
  api(path: string, init?: RequestInit): Promise<Response>;
}

/** Starts `weft control` on an OS-chosen port with a fresh (or the given) data dir. */
export async function startControl(dataDir = mkdtempSync(join(tmpdir(), 'weft-cp-')), extra: string[] = []): Promise<RunningControl> {
  const w = await startWeft<{ apiPort: number }>(['control', '--data-dir', dataDir, '--api-port', '0', ...extra]);
  const url = `http://127.0.0.1:${w.listening.apiPort}`;
  const adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  adminTokens.set(url, adminToken);
  return { ...w, url, dataDir, adminToken, api: (path, init) => apiFetch(new URL(path, url).href, init) };
}

/** Admin tokens of the control planes this test process started, by URL. */
const adminTokens = new Map<string, string>();

/** `fetch` that sends the admin token when `url` is on a control plane this process started (any other URL goes as is). */
export function apiFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const token = adminTokens.get(new URL(url).origin);
  if (token === undefined) return fetch(url, init);
  return fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` } });
}

/** Runs a `weft` CLI verb to completion against `server`; resolves with its exit code and output. */
export function runWeft(args: string[], server: string, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [weftBin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, WEFT_SERVER: server } });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    proc.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, stdout, stderr });
    });
    proc.stdin.end(input ?? '');
  });
}

/** A join token for `sa` in the default namespace, made through the CLI. */
export async function joinToken(cp: RunningControl, sa: string, ttl = '24h'): Promise<string> {
  const r = await runWeft(['token', 'create', '--service-account', sa, '--ttl', ttl], cp.url);
  if (r.code !== 0) throw new Error(`weft token create failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

/** Applies YAML through the CLI; throws with its output unless every document applied. */
export async function applyYaml(cp: RunningControl, yaml: string): Promise<void> {
  const r = await runWeft(['apply', '-f', '-'], cp.url, yaml);
  if (r.code !== 0) throw new Error(`weft apply failed (${r.code}): ${r.stdout}${r.stderr}`);
}

/** A proxy's Prometheus text from its admin port. */
export async function proxyMetrics(p: { admin: number }): Promise<string> {
  return (await fetch(`http://127.0.0.1:${p.admin}/metrics`)).text();
}

/** A raw HTTP exchange on a fresh connection: writes `bytes`, reads until the peer closes or `ms` pass. */
export function rawExchange(port: number, bytes: string | Buffer, ms = 2000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text, closed: false });
    }, ms);
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    s.on('error', () => {});
    s.write(bytes);
  });
}

/** Polls `fn` until it returns true or `ms` pass. */
export async function eventually(fn: () => Promise<boolean> | boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} not reached within ${ms} ms`);
}

/** Whether a process with this pid still exists (signal 0 probes without signalling). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Listens on 127.0.0.1 at a port the OS picks; `close` drops open connections, then stops listening. */
export async function listenLocal(server: Server): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
