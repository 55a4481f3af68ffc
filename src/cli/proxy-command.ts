/** `weft proxy`: a sidecar for one workload, configured from a file or by a control plane. */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { configApplied, configRejected, configWarnings, proxyLifecycle, tcpConnectionFailed } from '../core/diagnostics.js';
import { callsEntryProblem } from '../model/scope.js';
import { normalizePin, pinProblem } from '../core/identity/pin.js';
import { WorkloadIdentity } from '../proxy/tls/workload-identity.js';
import { ControlPlaneClient } from '../proxy/config-client/control-plane-client.js';
import { StatsReporter } from '../proxy/telemetry/stats-reporter.js';
import { HealthReporter } from '../proxy/telemetry/health-reporter.js';
import { DETECT_WAIT_MS } from '../proxy/listener/detect.js';
import { Proxy, defaultProxyOptions, type TcpUpstream } from '../proxy/proxy.js';
import type { PeerTransport } from '../proxy/upstream/upstream-pool.js';
import { UsageError, duration, pairs, port, type Command } from './command.js';

/** `--peer-transport` when not given: the faster of the two in the bench (docs/performance.md). */
const DEFAULT_PEER_TRANSPORT: PeerTransport = 'h2';

/** After leaving the mesh, how long to keep serving while other proxies learn the endpoint is gone. */
const LEAVE_GRACE_MS = 250;

export const proxyCommand: Command = {
  summary: 'run a proxy (sidecar) for one workload',
  usage: 'weft proxy (--control-plane URL | --file mesh.yaml) --workload NAME [options]',
  options: {
    file: { type: 'string', short: 'f' },
    'control-plane': { type: 'string' },
    workload: { type: 'string', short: 'w' },
    namespace: { type: 'string', short: 'n', default: 'default' },
    'app-port': { type: 'string', multiple: true, default: [] },
    register: { type: 'boolean', default: false },
    label: { type: 'string', short: 'l', multiple: true, default: [] },
    'service-account': { type: 'string', default: 'default' },
    address: { type: 'string', default: '127.0.0.1' },
    calls: { type: 'string', multiple: true, default: [] },
    token: { type: 'string' },
    'token-file': { type: 'string' },
    'ca-cert-hash': { type: 'string', multiple: true, default: [] },
    'trust-domain': { type: 'string' },
    'outbound-port': { type: 'string', default: String(defaultProxyOptions.outboundPort) },
    'inbound-port': { type: 'string', default: String(defaultProxyOptions.inboundPort) },
    'admin-port': { type: 'string', default: String(defaultProxyOptions.adminPort) },
    upstream: { type: 'string', multiple: true, default: [] },
    bind: { type: 'string', default: defaultProxyOptions.bindAddress },
    'peer-transport': { type: 'string', default: DEFAULT_PEER_TRANSPORT },
    'request-header-timeout': { type: 'string', default: '10s' },
    'idle-timeout': { type: 'string', default: '5m' },
    'drain-timeout': { type: 'string', default: '30s' },
    'protocol-detection-wait': { type: 'string', default: `${DETECT_WAIT_MS}ms` },
    'no-watch': { type: 'boolean', default: false },
    quiet: { type: 'boolean', short: 'q', default: false },
  },
  help: `Configuration (one of):
      --control-plane URL       stream configuration from a control plane, e.g. http://127.0.0.1:15010 on this
                                host, https://cp.example:15010 from another (with --ca-cert-hash)
  -f, --file FILE               resources (multi-document YAML); watched, good edits apply live
Identity (with --control-plane):
      --token TOKEN             join token granting the workload identity (weft token create); also WEFT_TOKEN
      --token-file FILE         read the join token from a file
                                The proxy makes its own key, gets its certificate from the control plane, and
                                speaks mutual TLS to other proxies. Without a token it has no identity.
      --ca-cert-hash sha256:HEX the pin of the control plane's root (weft token create, weft ca pins); required
                                with an https:// URL: the join (and its token) goes only to a server whose
                                presented root matches (repeatable: any one matches); also WEFT_CA_CERT_HASH
      --trust-domain TD         with --ca-cert-hash: the control plane must be of this trust domain (when the
                                pinned root is shared by several meshes); default: the one it names
Workload:
  -w, --workload NAME           the Workload this proxy stands beside
  -n, --namespace NS            the workload's namespace (default: default)
      --app-port NAME=PORT      register the workload with the control plane, with this app port (repeatable);
                                it joins the endpoints once it accepts connections. Without it, the
                                Workload must be declared as a resource
      --register                register the workload even with no app port (e.g. a client-only job)
  -l, --label KEY=VALUE         a label of the registered workload (repeatable)
      --service-account NAME    service account of the registered workload (default: default)
      --address ADDRESS         address of the registered workload (default 127.0.0.1)
      --calls SVC[,SVC…]        the services the registered workload calls (name, ns/name, ns/*; repeatable);
                                its proxy then learns only those ('' for none). Default: every service
Listeners:
      --outbound-port PORT      outbound HTTP listener, HTTP_PROXY style or Host-routed (default 15001; "none" to disable)
      --inbound-port PORT       inbound listener forwarding to the app (default 15006; "none" to disable)
      --admin-port PORT         admin on 127.0.0.1: /ready /live /metrics /config_dump /clusters, POST /drain (default 15000)
      --upstream SVC:PORT=LOCAL a local port forwarding to a TCP service, e.g. db:5432=15432 (repeatable)
      --bind ADDRESS            address the listeners bind (default 127.0.0.1)
Mesh transport:
      --peer-transport h2|http1 how HTTP/1.1 requests and TCP tunnels go to other proxies over mTLS: h2 = one
                                multiplexed HTTP/2 session per endpoint (requests as streams, tunnels as CONNECT
                                streams; upgrades stay HTTP/1.1), http1 = pooled HTTP/1.1 connections, one
                                request or tunnel each (default ${DEFAULT_PEER_TRANSPORT})
Limits:
      --request-header-timeout  time to receive a request head (default 10s)
      --idle-timeout            keep-alive idle time of client connections (default 5m)
      --drain-timeout           longest wait for requests in flight on SIGTERM (default 30s)
      --protocol-detection-wait how long an --upstream port of a Service port that declares no protocol
                                waits for the client's first bytes before it is opaque TCP (default ${DETECT_WAIT_MS}ms)
      --no-watch                do not watch the file
  -q, --quiet                   log only problems (refused configurations, lost control plane), not every change
Ports of 0 are chosen by the OS; the chosen ports are printed on start as one JSON line.`,
  run: runProxy,
};

/**
 * The pins of `--ca-cert-hash` (or WEFT_CA_CERT_HASH, comma-separated). An https:// control plane
 * needs one: the proxy learns the root from the server, and believes it only through a pin (no trust
 * on first use). A pin with http:// would protect nothing, so it is refused rather than ignored.
 */
function caCertHashes(flags: string[], cp: string | undefined): string[] {
  const env = flags.length === 0 ? (process.env.WEFT_CA_CERT_HASH ?? '') : '';
  const from = flags.length > 0 ? '--ca-cert-hash' : 'WEFT_CA_CERT_HASH';
  const pins = [...flags, ...env.split(',')].map((p) => p.trim()).filter((p) => p !== '');
  for (const p of pins) {
    const problem = pinProblem(p);
    if (problem !== null) throw new UsageError(`${from}: ${problem}`);
  }
  const https = cp?.startsWith('https://') === true;
  if (https && pins.length === 0) {
    throw new UsageError(
      `--control-plane ${cp}: give the control plane's root pin with --ca-cert-hash sha256:<hex> (printed by "weft token create" and "weft ca pins"); ` +
        'a server is never trusted on first use',
    );
  }
  if (!https && flags.length > 0) throw new UsageError('--ca-cert-hash needs an https:// --control-plane (over http:// it would check nothing)');
  return https ? pins.map(normalizePin) : [];
}

function parseUpstream(spec: string, namespace: string): TcpUpstream {
  const m = /^([a-z0-9-]+)(?:\.([a-z0-9-]+))?:(\d+)=(\d+)$/.exec(spec);
  if (m === null) throw new UsageError(`--upstream: "${spec}" is not SERVICE[.NAMESPACE]:PORT=LOCAL_PORT`);
  return { service: m[1]!, namespace: m[2] ?? namespace, port: Number(m[3]), localPort: Number(m[4]) };
}

async function runProxy(v: Record<string, unknown>): Promise<number> {
  const file = v.file as string | undefined;
  const cp = v['control-plane'] as string | undefined;
  if ((file === undefined) === (cp === undefined)) throw new UsageError('give exactly one of --control-plane URL or --file FILE');
  if (typeof v.workload !== 'string') throw new UsageError('--workload is required');
  if (cp !== undefined && !/^https?:\/\//.test(cp)) throw new UsageError(`--control-plane: "${cp}" is not an http:// or https:// URL`);
  const pins = caCertHashes(v['ca-cert-hash'] as string[], cp);
  const trustDomain = (v['trust-domain'] as string | undefined) ?? null;
  if (trustDomain !== null && !/^[a-z0-9._-]+$/.test(trustDomain)) throw new UsageError(`--trust-domain: "${trustDomain}" is not a trust domain (lowercase letters, digits, ".", "_", "-")`);
  if (trustDomain !== null && pins.length === 0) throw new UsageError('--trust-domain goes with --ca-cert-hash and an https:// --control-plane');
  const workload = v.workload;
  const namespace = v.namespace as string;
  const appPorts = pairs(v['app-port'] as string[], 'app-port', (_k, p) => (/^\d+$/.test(p) && Number(p) > 0 && Number(p) < 65536 ? null : 'not a port'));
  const labels = pairs(v.label as string[], 'label');
  // `--calls ''` declares that the workload calls nothing.
  const calls = (v.calls as string[]).flatMap((c) => c.split(',')).map((c) => c.trim()).filter((c) => c !== '');
  for (const c of calls) {
    const problem = callsEntryProblem(c);
    if (problem !== null) throw new UsageError(`--calls: ${JSON.stringify(c)} ${problem}`);
  }
  const tokenFile = v['token-file'] as string | undefined;
  const token = (v.token as string | undefined) ?? (tokenFile !== undefined ? readFileSync(tokenFile, 'utf8').trim() : undefined) ?? (cp !== undefined ? process.env.WEFT_TOKEN : undefined);
  if (token !== undefined && cp === undefined) throw new UsageError('--token needs --control-plane (certificates come from the control plane)');
  const identity = token !== undefined && token !== '' ? new WorkloadIdentity() : null;
  const peerTransport = v['peer-transport'] as string;
  if (peerTransport !== 'h2' && peerTransport !== 'http1') throw new UsageError(`--peer-transport: "${peerTransport}" is not h2 or http1`);
  const proxy = new Proxy({
    ...defaultProxyOptions,
    identity,
    bindAddress: v.bind as string,
    outboundPort: port(v['outbound-port'], 'outbound-port'),
    inboundPort: port(v['inbound-port'], 'inbound-port'),
    adminPort: port(v['admin-port'], 'admin-port') ?? 0,
    upstreams: (v.upstream as string[]).map((s) => parseUpstream(s, namespace)),
    requestHeaderTimeoutMs: duration(v['request-header-timeout'], 'request-header-timeout'),
    idleTimeoutMs: duration(v['idle-timeout'], 'idle-timeout'),
    drainTimeoutMs: duration(v['drain-timeout'], 'drain-timeout'),
    protocolDetectionMs: duration(v['protocol-detection-wait'], 'protocol-detection-wait'),
    peerTransport,
  });
  const log = (msg: string): void => console.error(`weft proxy: ${msg}`);
  const info = v.quiet === true ? (): void => {} : log;
  configApplied.subscribe((m) => {
    const e = m as { source: string; version: string };
    info(`configuration ${e.version} applied from ${e.source}`);
    proxy.metrics.count('weft_config_reloads_total{result="applied"}');
  });
  configRejected.subscribe((m) => {
    const e = m as { errors: string[] };
    log(`configuration refused, keeping the last good one:\n  ${e.errors.join('\n  ')}`);
    proxy.metrics.count('weft_config_reloads_total{result="rejected"}');
  });
  configWarnings.subscribe((m) => log(`configuration has problems (affected routes answer 500 INVALID_BACKEND):\n  ${(m as { warnings: string[] }).warnings.join('\n  ')}`));
  tcpConnectionFailed.subscribe((m) => {
    const e = m as { service: string; endpoint: string; code: string; message: string };
    info(`TCP connection to ${e.service}${e.endpoint !== '' ? ` (${e.endpoint})` : ''} failed: ${e.code}: ${e.message}`);
  });
  proxyLifecycle.subscribe((m) => {
    const e = m as { event: string; detail: unknown };
    if (e.event === 'listening') console.log(JSON.stringify({ event: 'listening', ports: e.detail }));
    else info(e.event);
  });

  let stopSource: (leaving: boolean) => Promise<void>;
  if (file !== undefined) {
    // Loaded only here: it brings the YAML parser and the compiler, which a proxy fed by a control plane never uses.
    const { FileConfigSource } = await import('../proxy/config-client/file-source.js');
    const source = new FileConfigSource(file, workload, namespace, (s) => proxy.apply(s));
    try {
      source.load();
    } catch (err) {
      console.error((err as Error).message);
      return 1;
    }
    await proxy.start();
    if (v['no-watch'] !== true) source.watch();
    stopSource = async () => source.close();
  } else {
    const ports = await proxy.start();
    const register = v.register === true || Object.keys(appPorts).length > 0;
    const appPortList = Object.fromEntries(Object.entries(appPorts).map(([k, p]) => [k, Number(p)]));
    // Like a pod's readiness: the app's ports join the mesh's endpoints once they accept connections,
    // so nobody is sent to an app that is still starting. Until then the workload is registered without ports.
    let appListening = Object.keys(appPortList).length === 0;
    // Endpoint health of the clusters with outlier detection or health checks, on the config stream (whole on connect, then on change).
    const healthReports = new HealthReporter(
      () => proxy.health.snapshot(),
      (report) => client.sendTelemetry({ t: 'endpoint-health', report }),
    );
    proxy.health.onChange = () => healthReports.changed();
    const client = new ControlPlaneClient({
      url: cp!,
      pins,
      trustDomain,
      workload,
      namespace,
      registration: () =>
        register
          ? {
              address: v.address as string,
              ports: appListening ? appPortList : {},
              labels,
              serviceAccount: v['service-account'] as string,
              inboundPort: ports.inbound,
              calls: (v.calls as string[]).length > 0 ? calls : null,
            }
          : null,
      apply: (s) => proxy.apply(s),
      // The admin listener is on loopback: Prometheus on this host scrapes it (docs/metrics.md).
      adminAddress: `127.0.0.1:${ports.admin}`,
      log: (m) => (m.startsWith('connected') ? info(m) : log(m)),
      identity: identity === null ? null : { holder: identity, token: token! },
      onTap: (taps) => proxy.tap.set(taps),
      onConnected: () => healthReports.connected(),
    });
    client.start();
    // Golden signals: request statistics every 2 s, and tap events while a tap is open, on the config stream.
    const stats = new StatsReporter(
      proxy.metrics,
      (report) => client.sendTelemetry({ t: 'stats', report }),
      (n) => proxy.metrics.count('weft_stats_dropped_requests_total', n),
    );
    stats.start();
    proxy.tapSink = (events) => client.sendTelemetry({ t: 'tap-events', events });
    // Spans go to the control plane too (its trace store), over mTLS with this proxy's certificate.
    if (identity !== null) proxy.telemetry.exportToControlPlane(cp!, identity);
    const probe = appListening
      ? null
      : waitForPorts(v.address as string, Object.values(appPortList), () => {
          appListening = true;
          info(`app accepts connections on ${Object.entries(appPortList).map(([n, p]) => `${n}=${p}`).join(', ')}; joining the endpoints`);
          client.reregister();
        });
    stopSource = (leaving) => {
      probe?.cancel();
      stats.tick();
      stats.stop();
      healthReports.stop();
      return client.close(leaving);
    };
  }
  return new Promise((resolve) => {
    const stop = (): void => {
      // Leave the mesh first, so other proxies stop sending here while the requests in flight finish.
      void stopSource(true)
        .then(() => (cp !== undefined ? new Promise((r) => setTimeout(r, LEAVE_GRACE_MS)) : undefined))
        .then(() => proxy.drain())
        .then(() => resolve(0));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

/** Calls `ready` once every port accepts a TCP connection; tries every 100 ms, then up to every second. */
function waitForPorts(host: string, ports: number[], ready: () => void): { cancel(): void } {
  let timer: NodeJS.Timeout | null = null;
  let cancelled = false;
  let delay = 100;
  const accepts = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = connect({ host, port });
      s.setTimeout(1000, () => s.destroy());
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('close', () => resolve(false));
      s.once('error', () => {});
    });
  const attempt = async (): Promise<void> => {
    const all = (await Promise.all(ports.map(accepts))).every(Boolean);
    if (cancelled) return;
    if (all) return ready();
    delay = Math.min(1000, delay * 1.5);
    timer = setTimeout(() => void attempt(), delay);
  };
  void attempt();
  return {
    cancel: () => {
      cancelled = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
