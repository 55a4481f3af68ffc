/**
 * Two Weft proxies with mutual TLS between them — the mesh's real request path:
 *
 *   load → client proxy (outbound port, `Host: upstream`)
 *        → mTLS (TLS 1.3, SPIFFE X.509-SVIDs from the control plane's CA, pooled connections)
 *        → server proxy (inbound port) → upstream nginx
 *
 * Both proxies are "the proxy" of this row: pinned to the proxy core, their CPU and RSS summed. The
 * control plane (`weft control`, which issues the certificates) runs on the load core, is idle
 * during the measurement, and is not counted; its CPU and RSS are reported in the row's notes.
 * Compare this row with `weft` (one proxy, plaintext) and `direct`: it is two proxy hops.
 *
 * Setup, as a user would do it: `weft control --data-dir <tmp> --api-port 0`; one join token per
 * identity (`POST /api/v1/tokens`); the `upstream` Service applied (`POST /api/v1/apply`); the
 * server proxy registers its workload with `--app-port http=<upstream>` and `--label app=upstream`,
 * the client proxy with `--register`. Every API call sends `authorization: Bearer <token>` when
 * `<data-dir>/admin-token` exists (the API may require an admin token). The row fails unless the
 * server proxy counted mTLS inbound connections and no plaintext ones.
 *
 * Variants by the client proxy's `--peer-transport` (how it reaches the server proxy):
 * `weft-mtls` with the proxy's default, `weft-mtls-h2` (one multiplexed HTTP/2 session: the server
 * proxy must accept at most one more mTLS connection during the measurements, whatever the load's
 * 50 connections) and `weft-mtls-http1` (pooled HTTP/1.1 connections).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { oneLine, waitUntilServing } from '../lib/http-probe.js';
import { cpuMs, processTree, rssKiB } from '../lib/proc.js';
import { launch, type Launched } from '../lib/processes.js';
import type { BenchRow, RunningRow } from './types.js';

const SERVICE_YAML = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: upstream }
spec: { selector: { app: upstream }, ports: [{ name: http, port: 80, protocol: HTTP }] }
`;

/** Resolves with the first stdout line of `proc` that is JSON with `"event":"listening"` (bounded). */
function listeningLine<T>(proc: Launched, timeoutMs = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err: Error | null, value?: T): void => {
      clearTimeout(timer);
      proc.child.stdout!.off('data', onData);
      if (err) reject(err);
      else resolve(value!);
    };
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('utf8');
      for (const line of buf.split('\n')) {
        if (!line.includes('"listening"')) continue;
        try {
          return done(null, JSON.parse(line) as T);
        } catch {
          /* a partial line: wait for the rest */
        }
      }
    };
    const timer = setTimeout(() => done(new Error(`${proc.name} printed no "listening" line within ${timeoutMs / 1000} s: ${oneLine(proc.outputTail())}`)), timeoutMs);
    proc.child.stdout!.on('data', onData);
    void proc.exited.then((code) => done(new Error(`${proc.name} exited (${code}) before listening: ${oneLine(proc.outputTail())}`)));
  });
}

/** The control plane's API, with the admin token when the control plane wrote one. */
class Api {
  constructor(
    private readonly base: string,
    private readonly dataDir: string,
  ) {}

  private headers(extra: Record<string, string>): Record<string, string> {
    const file = path.join(this.dataDir, 'admin-token');
    // Read at every call: the token may be written after the listening line, or be rotated.
    if (!existsSync(file)) return extra;
    return { ...extra, authorization: `Bearer ${readFileSync(file, 'utf8').trim()}` };
  }

  async call(method: string, pathname: string, body: string, contentType: string): Promise<unknown> {
    const res = await fetch(`${this.base}${pathname}`, { method, body, headers: this.headers({ 'content-type': contentType }), signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${pathname}: HTTP ${res.status} ${oneLine(text)}`);
    return text === '' ? null : JSON.parse(text);
  }

  async token(serviceAccount: string): Promise<string> {
    const r = (await this.call('POST', '/api/v1/tokens', JSON.stringify({ namespace: 'default', serviceAccount, ttl: '1h' }), 'application/json')) as { token?: unknown };
    if (typeof r?.token !== 'string') throw new Error(`POST /api/v1/tokens answered no token: ${oneLine(JSON.stringify(r))}`);
    return r.token;
  }
}

/** `weft_inbound_connections_total{security="…"}` summed over its other labels, from /metrics. */
async function inboundConnections(adminPort: number): Promise<{ mtls: number; plaintext: number; refused: number }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  const out = { mtls: 0, plaintext: 0, refused: 0 };
  for (const m of text.matchAll(/^weft_inbound_connections_total\{([^}]*)\}\s+([0-9.e+]+)/gm)) {
    const security = /security="([^"]*)"/.exec(m[1]!)?.[1];
    if (security === 'mtls' || security === 'plaintext' || security === 'refused') out[security] += Number(m[2]);
  }
  return out;
}

type ProxyPorts = { outbound: number | null; inbound: number | null; admin: number };

/**
 * The Mesh of the `weft-mtls-telemetry` row: every request traced (both proxies' spans exported to
 * the control plane) and access-logged to a file. Metrics are always on.
 */
const telemetryMesh = (logDir: string, t: TelemetryLevel): string => `apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: mesh }
spec:
  tracing: { sampling: ${t.sampling} }
${t.accessLog ? `  accessLog: { mode: On, path: ${JSON.stringify(path.join(logDir, 'access-{workload}.log'))} }\n` : ''}`;

/** What a telemetry row turns on: tracing at `sampling` percent, and access logs or not. */
interface TelemetryLevel {
  sampling: number;
  accessLog: boolean;
}

/** Sum of `weft_trace_spans_total{target="control-plane",result="exported"}` on a proxy's /metrics. */
async function spansExported(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  let n = 0;
  for (const m of text.matchAll(/^weft_trace_spans_total\{([^}]*)\}\s+([0-9.e+]+)/gm)) if (/result="exported"/.test(m[1]!)) n += Number(m[2]);
  return n;
}

/**
 * The two-proxy mTLS row, with the client proxy's `--peer-transport` (null: the proxy's default);
 * `telemetry`: tracing at 100 % and access logs on (the cost of telemetry is this row ÷ `weft-mtls`).
 */
function weftMtls(name: string, peerTransport: 'h2' | 'http1' | null, telemetry: TelemetryLevel | null = null): BenchRow {
  const how = peerTransport === 'h2'
    ? ' With `--peer-transport h2`: every request an HTTP/2 stream of ONE multiplexed mTLS connection between the proxies.'
    : peerTransport === 'http1'
      ? ' With `--peer-transport http1`: pooled HTTP/1.1 mTLS connections, one request in flight on each.'
      : ' The client proxy\'s default --peer-transport.';
  return {
    name,
    description:
      'TWO Weft proxies, mutual TLS between them: load → client proxy outbound → mTLS (TLS 1.3, SPIFFE SVIDs from `weft control`) → server proxy inbound → upstream. ' +
      'CPU and RSS are the sum of both proxies (both on the proxy core); compare with `weft` (one proxy, plaintext) and `direct`. The control plane runs on the load core, idle, not counted.' + how +
      (telemetry === null
        ? ''
        : ` Telemetry on: tracing at ${telemetry.sampling} % (spans exported to the control plane)${telemetry.accessLog ? ' and every request access-logged to a file' : ''}; compare with \`weft-mtls\` for its cost.`),
    requires: [],
    start: async (ctx): Promise<RunningRow> => {
      const main = path.join(ctx.repoRoot, 'dist', 'src', 'cli', 'main.js');
      if (!existsSync(main)) throw new Error('dist/src/cli/main.js not found (Weft CLI not built yet)');
      const bin = path.join(ctx.repoRoot, 'bin', 'weft.js');
      const cli = existsSync(bin) ? bin : main;
      // The control plane is not the proxy: keep it off the proxy core (on the other core when pinning).
      const cpCore = ctx.proxyCore === null ? null : ctx.proxyCore === 0 ? 1 : 0;
      const dataDir = path.join(ctx.tmpDir, 'control');
      mkdirSync(dataDir);
      const started: Launched[] = [];
      const stop = async (): Promise<void> => {
        // Proxies first (they leave the mesh), then the control plane.
        await Promise.all(started.slice(1).map((p) => p.stop()));
        await started[0]?.stop();
      };
      try {
        const control = launch('weft control', process.execPath, [cli, 'control', '--data-dir', dataDir, '--api-port', '0'], { core: cpCore, cwd: ctx.repoRoot });
        started.push(control);
        const { apiPort } = await listeningLine<{ apiPort: number }>(control);
        const url = `http://127.0.0.1:${apiPort}`;
        const api = new Api(url, dataDir);
        await api.call('POST', '/api/v1/apply', SERVICE_YAML, 'application/yaml');
        if (telemetry !== null) await api.call('POST', '/api/v1/apply', telemetryMesh(ctx.tmpDir, telemetry), 'application/yaml');
        const [serverToken, clientToken] = await Promise.all([api.token('upstream'), api.token('client')]);

        const proxyArgs = (workload: string, sa: string, extra: string[]): string[] => [
          cli, 'proxy', '--control-plane', url, '--workload', workload, '--service-account', sa,
          '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--quiet', ...extra,
        ];
        // Tokens go through WEFT_TOKEN, not argv (as `weft up` does).
        const server = launch('weft proxy (server)', process.execPath, proxyArgs('upstream-1', 'upstream', ['--app-port', `http=${ctx.upstreamPort}`, '--label', 'app=upstream']), {
          core: ctx.proxyCore,
          cwd: ctx.repoRoot,
          env: { ...process.env, WEFT_TOKEN: serverToken },
        });
        started.push(server);
        const transport = peerTransport === null ? [] : ['--peer-transport', peerTransport];
        const client = launch('weft proxy (client)', process.execPath, proxyArgs('client-1', 'client', ['--register', '--label', 'app=client', '--calls', 'upstream', ...transport]), {
          core: ctx.proxyCore,
          cwd: ctx.repoRoot,
          env: { ...process.env, WEFT_TOKEN: clientToken },
        });
        started.push(client);
        const [serverPorts, clientPorts] = await Promise.all([
          listeningLine<{ ports: ProxyPorts }>(server).then((l) => l.ports),
          listeningLine<{ ports: ProxyPorts }>(client).then((l) => l.ports),
        ]);
        if (clientPorts.outbound === null || serverPorts.inbound === null) throw new Error(`a proxy has no listener: ${JSON.stringify({ serverPorts, clientPorts })}`);
        const outbound = clientPorts.outbound;

        // Certificates issued, the server's endpoint registered and pushed to the client: traffic flows.
        await waitUntilServing({ port: outbound, hostHeader: 'upstream', process: client, timeoutMs: 30_000 });
        const seen = await inboundConnections(serverPorts.admin);
        if (seen.mtls < 1 || seen.plaintext > 0)
          throw new Error(`not mTLS: the server proxy counted ${seen.mtls} mTLS and ${seen.plaintext} plaintext inbound connections`);
        const multiplexed = peerTransport === 'h2';

        const cpCpu0 = cpuMs(processTree([control.pid]));
        return {
          port: outbound,
          pids: [server.pid, client.pid],
          stop,
          notes: ['two proxies (client → mTLS → server): CPU and RSS are their sum'],
          finalCheck: async () => {
            const notes: string[] = [];
            let failure: string | undefined;
            const after = await inboundConnections(serverPorts.admin).catch(() => null);
            if (after === null) failure = 'the server proxy\'s /metrics did not answer at the end: mTLS not confirmed';
            else if (after.plaintext > 0) failure = `not mTLS: the server proxy counted ${after.plaintext} plaintext inbound connections`;
            // A connection drained at start (the certificate installed again on the control plane's mTLS
            // reconnect) is replaced once; the 50 load connections must not become 50 mTLS ones.
            else if (multiplexed && after.mtls - seen.mtls > 1) failure = `not multiplexed: the server proxy accepted ${after.mtls - seen.mtls} mTLS connections during the measurements`;
            else notes.push(`${after.mtls} mTLS connection${after.mtls === 1 ? '' : 's'} accepted by the server proxy, 0 plaintext`);
            if (telemetry !== null && failure === undefined) {
              const spans = (await spansExported(serverPorts.admin).catch(() => 0)) + (await spansExported(clientPorts.admin).catch(() => 0));
              const logs = ['upstream-1', 'client-1'].map((w) => path.join(ctx.tmpDir, `access-${w}.log`)).filter((f) => existsSync(f));
              const lines = logs.reduce((n, f) => n + readFileSync(f, 'utf8').split('\n').length - 1, 0);
              if (spans === 0 || (telemetry.accessLog && lines === 0)) failure = `telemetry not on: ${spans} spans exported, ${lines} access-log lines`;
              else notes.push(`telemetry on: ${spans} spans exported to the control plane, ${lines} access-log lines`);
            }
            const cpPids = processTree([control.pid]);
            notes.push(
              `control plane (not counted, core ${cpCore ?? 'any'}): ${Math.round(cpuMs(cpPids) - cpCpu0)} ms CPU during the row, RSS ${(rssKiB(cpPids) / 1024).toFixed(1)} MiB`,
            );
            return failure === undefined ? { notes } : { notes, failure };
          },
        };
      } catch (err) {
        await stop();
        throw err;
      }
    },
  };
}

export const weftMtlsRow: BenchRow = weftMtls('weft-mtls', null);
export const weftMtlsH2Row: BenchRow = weftMtls('weft-mtls-h2', 'h2');
export const weftMtlsHttp1Row: BenchRow = weftMtls('weft-mtls-http1', 'http1');
/** Everything on: every request traced and logged (the worst case). */
export const weftMtlsTelemetryRow: BenchRow = weftMtls('weft-mtls-telemetry', null, { sampling: 100, accessLog: true });
/** Istio's default: tracing at 1 %, no access logs. */
export const weftMtlsTracing1Row: BenchRow = weftMtls('weft-mtls-tracing-1pct', null, { sampling: 1, accessLog: false });
/** The same with a chosen `--peer-transport` (`npm run bench:targets -- --peer-transport h2`). */
export function weftMtlsTracing1With(peerTransport: 'h2' | 'http1'): BenchRow {
  return weftMtls(`weft-mtls-tracing-1pct-${peerTransport}`, peerTransport, { sampling: 1, accessLog: false });
}
