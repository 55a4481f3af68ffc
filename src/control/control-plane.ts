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
import { ConfigServer } from './serve/config-server.js';
import { ConfigDirSource } from './sources/config-dir.js';
import { WorkloadRegistry } from './sources/workload-registry.js';
import { FileStore } from './store/file-store.js';

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
    });
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
      tls: new ControlPlaneCertificate(this.ca, () => this.config.trustDomain(), () => this.config.certificateLifetimeMs()),
    });
    this.api = api;
    return api.port;
  }

  private metrics(): string {
    const s = this.config.stats;
    const kinds = new Map<string, number>();
    for (const r of this.index.all()) kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
    return [
      '# HELP weft_control_proxies_connected Proxies with an open config stream.',
      '# TYPE weft_control_proxies_connected gauge',
      `weft_control_proxies_connected ${this.config.connected}`,
      '# HELP weft_control_config_updates_total Config updates sent to proxies.',
      '# TYPE weft_control_config_updates_total counter',
      `weft_control_config_updates_total ${s.updatesSent}`,
      '# HELP weft_control_config_sent_bytes_total Bytes of config updates sent to proxies.',
      '# TYPE weft_control_config_sent_bytes_total counter',
      `weft_control_config_sent_bytes_total ${s.bytesSent}`,
      '# HELP weft_control_config_responses_total Proxy answers to config updates.',
      '# TYPE weft_control_config_responses_total counter',
      `weft_control_config_responses_total{result="ack"} ${s.acks}`,
      `weft_control_config_responses_total{result="nack"} ${s.nacks}`,
      '# HELP weft_control_resources Resources in force, by kind.',
      '# TYPE weft_control_resources gauge',
      ...[...kinds].sort().map(([k, n]) => `weft_control_resources{kind="${k}"} ${n}`),
      '',
    ].join('\n');
  }

  async stop(): Promise<void> {
    this.dir?.close();
    this.config.close();
    this.registry.close();
    await this.api?.close();
    this.store.close();
  }
}
