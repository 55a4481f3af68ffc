/**
 * The control plane as one process: store → sources → compiler → config server, behind the API.
 */
import { join } from 'node:path';
import { AdminToken } from './api/admin-token.js';
import { startApi, type RunningApi } from './api/api-server.js';
import { CertificateAuthority } from './ca/certificate-authority.js';
import { ControlPlaneCertificate } from './ca/control-plane-certificate.js';
import { JoinTokens } from './ca/join-tokens.js';
import { ResourceIndex } from './resource-index.js';
import { ConfigServer, PUSH_LATENCY_BUCKETS, STREAM_REFUSAL_REASONS, type StreamAuthMode } from './serve/config-server.js';
import { ConfigDirSource } from './sources/config-dir.js';
import { WorkloadRegistry } from './sources/workload-registry.js';
import { FileStore } from './store/file-store.js';
import { TraceStore } from './telemetry/trace-store.js';
import { StatsStore } from './telemetry/stats-store.js';
import { TapHub } from './telemetry/tap-hub.js';
import { EndpointHealthStore } from './telemetry/endpoint-health-store.js';

export interface ControlPlaneOptions {
  dataDir: string;
  apiHost: string;
  /** 0 = chosen by the OS. */
  apiPort: number;
  configDir: string | null;
  leaseTtlMs: number;
  version: string;
  /** A user-provided signing CA (PEM files); null: the control plane makes its own root in the data dir. */
  ca?: { certFile: string; keyFile: string; bundleFile: string | null } | null;
  /** `required`: config streams without a valid join token or certificate are refused; default `optional`. */
  streamAuth?: StreamAuthMode;
  log: (msg: string) => void;
}

export class ControlPlane {
  readonly store: FileStore;
  readonly index: ResourceIndex;
  readonly registry: WorkloadRegistry;
  readonly config: ConfigServer;
  readonly ca: CertificateAuthority;
  readonly tokens: JoinTokens;
  /** The API's admin token (made on first start). */
  readonly adminToken: AdminToken;
  /** Recent spans from the proxies (OTLP), for `weft trace` and the dashboard. */
  readonly traces = new TraceStore();
  /** Golden signals: the proxies' request statistics over the last 10 minutes (`weft stat`, `weft edges`). */
  readonly stats = new StatsStore();
  /** Live taps (`weft tap`, `weft top`). */
  readonly taps: TapHub;
  /** Endpoint health as each connected proxy reports it (`GET /api/v1/endpoints`, the dashboard's service page). */
  readonly endpointHealth = new EndpointHealthStore();
  private readonly dir: ConfigDirSource | null;
  private readonly opts: ControlPlaneOptions;
  private api: RunningApi | null = null;

  constructor(opts: ControlPlaneOptions) {
    this.opts = opts;
    this.store = FileStore.open(opts.dataDir);
    this.index = new ResourceIndex(this.store);
    this.registry = new WorkloadRegistry(this.index, opts.leaseTtlMs, (key) => opts.log(`lease of ${key} lapsed; its endpoints are withdrawn`));
    this.ca = new CertificateAuthority({ dir: join(opts.dataDir, 'ca'), trustDomain: 'cluster.local', provided: opts.ca ?? null });
    this.tokens = new JoinTokens(this.store);
    this.adminToken = AdminToken.loadOrCreate(opts.dataDir);
    this.config = new ConfigServer(this.index, this.registry, {
      heartbeatMs: Math.max(100, Math.floor(opts.leaseTtlMs / 3)),
      log: opts.log,
      identity: { ca: this.ca, tokens: this.tokens },
      streamAuth: opts.streamAuth ?? 'optional',
    });
    this.taps = new TapHub({ proxiesOf: (ns, name) => this.config.proxiesOf(ns, name), sendTaps: (id, taps) => this.config.sendTo(id, { t: 'tap', taps }) });
    this.config.telemetry = {
      stats: (id, report) => void this.stats.ingest(id, report),
      tapEvents: (id, events) => this.taps.events(id, events),
      connected: (id) => {
        this.taps.connected(id);
        this.endpointHealth.drop(id);
      },
      endpointHealth: (id, report) => void this.endpointHealth.ingest(id, report),
      disconnected: (id) => this.endpointHealth.drop(id),
    };
    this.dir = opts.configDir === null ? null : new ConfigDirSource(opts.configDir, this.index, (m) => opts.log(`config-dir: ${m}`));
  }

  /** Reads the config dir, opens the API; resolves with the API port. */
  async start(): Promise<number> {
    this.dir?.start();
    const api = await startApi(this.opts.apiHost, this.opts.apiPort, {
      index: this.index,
      config: this.config,
      version: this.opts.version,
      fileProblems: () => this.dir?.fileProblems() ?? [],
      ca: this.ca,
      tokens: this.tokens,
      metrics: () => this.metrics(),
      adminToken: this.adminToken,
      traces: this.traces,
      stats: this.stats,
      taps: this.taps,
      endpointHealth: this.endpointHealth,
      tls: new ControlPlaneCertificate(this.ca, () => this.config.trustDomain(), () => this.config.certificateLifetimeMs()),
    });
    this.api = api;
    return api.port;
  }

  /** The control plane's own metrics (docs/metrics.md). */
  private metrics(): string {
    const s = this.config.stats;
    const kinds = new Map<string, number>();
    for (const r of this.index.all()) kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
    const byTransport = this.config.connectedByTransport();
    const types = Object.entries(s.byType).sort(([a], [b]) => (a < b ? -1 : 1));
    const out = [
      '# HELP weft_control_proxies_connected Proxies with an open config stream, by how it is carried.',
      '# TYPE weft_control_proxies_connected gauge',
      ...Object.entries(byTransport).map(([t, n]) => `weft_control_proxies_connected{transport="${t}"} ${n}`),
      '# HELP weft_control_config_updates_total Config updates pushed to proxies, by config type.',
      '# TYPE weft_control_config_updates_total counter',
      ...types.map(([t, c]) => `weft_control_config_updates_total{type="${t}"} ${c.sent}`),
      '# HELP weft_control_config_sent_bytes_total Bytes of config updates pushed to proxies.',
      '# TYPE weft_control_config_sent_bytes_total counter',
      `weft_control_config_sent_bytes_total ${s.bytesSent}`,
      '# HELP weft_control_config_responses_total Proxy answers to config updates: ack (applied) or nack (refused), by config type.',
      '# TYPE weft_control_config_responses_total counter',
      ...types.flatMap(([t, c]) => [`weft_control_config_responses_total{type="${t}",result="ack"} ${c.acks}`, `weft_control_config_responses_total{type="${t}",result="nack"} ${c.nacks}`]),
      '# HELP weft_control_config_push_duration_seconds Time from a resource change (or the proxy connecting, if later) to the proxy acknowledging the update.',
      '# TYPE weft_control_config_push_duration_seconds histogram',
    ];
    let cum = 0;
    PUSH_LATENCY_BUCKETS.forEach((b, i) => {
      cum += s.pushLatency.buckets[i]!;
      out.push(`weft_control_config_push_duration_seconds_bucket{le="${b}"} ${cum}`);
    });
    out.push(
      `weft_control_config_push_duration_seconds_bucket{le="+Inf"} ${s.pushLatency.count}`,
      `weft_control_config_push_duration_seconds_sum ${s.pushLatency.sum}`,
      `weft_control_config_push_duration_seconds_count ${s.pushLatency.count}`,
      '# HELP weft_control_certificates_issued_total Workload certificates signed for proxies.',
      '# TYPE weft_control_certificates_issued_total counter',
      `weft_control_certificates_issued_total ${s.certificatesIssued}`,
      '# HELP weft_control_streams_refused_total Config streams refused for their credential (--stream-auth required), by reason.',
      '# TYPE weft_control_streams_refused_total counter',
      ...STREAM_REFUSAL_REASONS.map((r) => `weft_control_streams_refused_total{reason="${r}"} ${s.streamsRefused[r]}`),
      '# HELP weft_control_stats_series Request series in the golden-signals window.',
      '# TYPE weft_control_stats_series gauge',
      `weft_control_stats_series ${this.stats.size}`,
      '# HELP weft_control_stats_reports_total Request statistics reports received from proxies.',
      '# TYPE weft_control_stats_reports_total counter',
      `weft_control_stats_reports_total ${this.stats.counters.reports}`,
      '# HELP weft_control_stats_series_dropped_total Series of reports not kept, by kind (request or tcp) and reason (limit: the window holds its maximum of series of that kind; malformed).',
      '# TYPE weft_control_stats_series_dropped_total counter',
      `weft_control_stats_series_dropped_total{kind="request",reason="limit"} ${this.stats.counters.seriesDropped}`,
      `weft_control_stats_series_dropped_total{kind="tcp",reason="limit"} ${this.stats.counters.tcpSeriesDropped}`,
      `weft_control_stats_series_dropped_total{kind="request",reason="malformed"} ${this.stats.counters.malformed}`,
      `weft_control_stats_series_dropped_total{kind="tcp",reason="malformed"} ${this.stats.counters.tcpMalformed}`,
      '# HELP weft_control_taps_open Taps open now.',
      '# TYPE weft_control_taps_open gauge',
      `weft_control_taps_open ${this.taps.open}`,
      '# HELP weft_control_endpoint_health_reports_total Endpoint health reports received from proxies, by result (accepted, malformed).',
      '# TYPE weft_control_endpoint_health_reports_total counter',
      `weft_control_endpoint_health_reports_total{result="accepted"} ${this.endpointHealth.counters.reports}`,
      `weft_control_endpoint_health_reports_total{result="malformed"} ${this.endpointHealth.counters.malformed}`,
      '# HELP weft_control_endpoint_health_proxies Proxies whose endpoint health view the control plane holds now.',
      '# TYPE weft_control_endpoint_health_proxies gauge',
      `weft_control_endpoint_health_proxies ${this.endpointHealth.size}`,
      '# HELP weft_control_tap_events_total Tap events received from proxies, and delivered to open taps.',
      '# TYPE weft_control_tap_events_total counter',
      `weft_control_tap_events_total{result="received"} ${this.taps.counters.received}`,
      `weft_control_tap_events_total{result="delivered"} ${this.taps.counters.delivered}`,
      '# HELP weft_control_resources Resources in force, by kind.',
      '# TYPE weft_control_resources gauge',
      ...[...kinds].sort().map(([k, n]) => `weft_control_resources{kind="${k}"} ${n}`),
      '',
    );
    return out.join('\n');
  }

  async stop(): Promise<void> {
    this.dir?.close();
    this.config.close();
    this.registry.close();
    await this.api?.close();
    this.store.close();
  }
}
