/**
 * The config server: one stream per proxy, over an HTTP Upgrade on the API port, carrying
 * newline-delimited JSON. A proxy says hello (its workload, a registration if it has one, and what it
 * already holds); the server pushes each config type when its version changes — clusters, endpoints,
 * workload, routes, in that order, so nothing arrives before what it refers to — and waits for the
 * proxy's ACK or NACK of a type before sending that type again, so a slow proxy gets the latest
 * state rather than a backlog. Endpoints go as deltas of the clusters that changed.
 *
 * The server keeps each proxy's sync state (what it was sent, what it acknowledged, what it refused
 * and why) for `weft proxy-status` and `weft check`, also while the proxy is disconnected.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import {
  CONFIG_TYPES,
  STREAM_PROTOCOL,
  assembleSnapshot,
  endpointsVersion,
  type ConfigParts,
  type ConfigType,
  type ControlMessage,
  type Endpoint,
  type HelloMessage,
  type ProxyMessage,
  type ProxySnapshot,
  type Mesh,
  type RegisteredWorkload,
  parseDuration,
} from '../../model/index.js';
import type { TLSSocket } from 'node:tls';
import { CONTROL_NAMESPACE, parseSpiffeId } from '../../core/identity/spiffe.js';
import { bundleHash, uriSans } from '../../core/identity/x509.js';
import type { CertificateAuthority, IssuedCertificate } from '../ca/certificate-authority.js';
import { TokenError, type JoinToken, type JoinTokens } from '../ca/join-tokens.js';
import type { ResourceIndex } from '../resource-index.js';
import type { WorkloadRegistry } from '../sources/workload-registry.js';
import { MeshView } from './mesh-view.js';
import type { StatsReport, TapEvent } from '../../model/golden-signals.js';
import type { EndpointHealthReport } from '../../model/endpoint-health.js';

const MAX_LINE = 1 << 20;
const PUSH_END = '{"t":"push-end"}\n';
/** A type sent but not acknowledged for this long is STALE rather than in flight. */
const STALE_AFTER_MS = 5_000;

export type SyncState = 'SYNCED' | 'STALE' | 'NACKED';

/** Sync state of one config type of one proxy. */
export interface TypeSync {
  state: SyncState;
  /** The version the control plane wants the proxy to have. */
  latest: string | null;
  sent: string | null;
  acked: string | null;
  /** The proxy's reason, when it refused `latest`. */
  error: string | null;
  /** When the last update of this type was sent, and acknowledged (ms since the epoch). */
  sentAt: number | null;
  ackedAt: number | null;
}

/** One proxy as the control plane sees it. */
export interface ProxyStatus {
  id: string;
  workload: string;
  namespace: string;
  connected: boolean;
  peer: string | null;
  connectedAt: number | null;
  lastSeenAt: number;
  registered: boolean;
  leaseExpiresAt: number | null;
  /** Why the proxy has no configuration, when it has none (e.g. its workload does not exist). */
  notice: string | null;
  types: Record<ConfigType, TypeSync>;
  /** The certificate the control plane last issued to it, and whether the proxy installed it. */
  certificate: (IssuedCertificate & { installed: boolean; bundleSynced: boolean }) | null;
  /** Why it has no certificate, when it asked for one and was refused. */
  identityError: string | null;
  /** How its stream is carried (`mtls` once it holds a certificate), and what proved its identity. */
  transport: 'mtls' | 'tls' | 'plaintext' | null;
  authenticatedBy: 'certificate' | 'token' | null;
}

/** Whether a config stream must carry a credential (a valid join token, or a certificate this CA issued) to get configuration. */
export type StreamAuthMode = 'required' | 'optional';
export const STREAM_AUTH_MODES: readonly StreamAuthMode[] = ['required', 'optional'];

/** Why a stream was refused under `--stream-auth required`: the `reason` label of `weft_control_streams_refused_total`. */
export const STREAM_REFUSAL_REASONS = ['no_credential', 'bad_token', 'expired_token', 'revoked', 'bad_certificate', 'identity_mismatch'] as const;
export type StreamRefusalReason = (typeof STREAM_REFUSAL_REASONS)[number];

/** The identity granted on a stream (by its join token or its certificate), and the id of the token it descends from. */
type Grant = { namespace: string; serviceAccount: string; tokenId: string; by: 'certificate' | 'token' };

/** What a hello's credential proved: an identity, or why it proved none. */
type StreamAuth = { grant: Grant } | { refused: StreamRefusalReason; why: string };

const NO_CREDENTIAL = 'no credential: neither a join token nor a client certificate; start the proxy with --token (weft token create)';

/** A refused stream, kept (bounded) so `weft proxy-status` can say why a proxy has no configuration. */
interface RefusedStream {
  id: string;
  workload: string;
  namespace: string;
  peer: string;
  at: number;
  notice: string;
  why: string;
}
/** At most this many refused proxies are remembered (the oldest is forgotten first): a stranger cannot grow it without bound. */
const MAX_REFUSED = 256;

/** What the TLS side of the API port learnt of a stream's peer: its verified SPIFFE ID and serial, or why there is none. */
type PeerCertificate = { spiffeId: string; serial: string } | { error: string } | null;

interface Inflight {
  version: string;
  sentAt: number;
  /** When the change it carries happened (or the proxy connected, if later): push latency runs from here to the ACK. */
  since: number;
  /** For endpoints: the per-cluster versions the proxy will hold once it applies the update. */
  clusters?: Map<string, string>;
}

/** A proxy's record; it outlives the connection so a reconnect resumes where it left off. */
class ProxyRecord {
  readonly id: string;
  readonly workload: string;
  readonly namespace: string;
  socket: Duplex | null = null;
  peer: string | null = null;
  connectedAt: number | null = null;
  lastSeenAt = Date.now();
  registrationKey: string | null = null;
  notice: string | null = null;
  readonly acked: Record<ConfigType, string | null> = { clusters: null, endpoints: null, workload: null, routes: null };
  readonly ackedAt: Record<ConfigType, number | null> = { clusters: null, endpoints: null, workload: null, routes: null };
  ackedClusters = new Map<string, string>();
  readonly inflight: Partial<Record<ConfigType, Inflight>> = {};
  readonly sent: Partial<Record<ConfigType, { version: string; at: number }>> = {};
  readonly nacked: Partial<Record<ConfigType, { version: string; error: string }>> = {};
  dropTimer: NodeJS.Timeout | null = null;
  /** Set while the socket cannot take more; the push resumes on drain. */
  blocked = false;
  /** Updates were written since the last `push-end`. */
  openPush = false;
  /** Set while its registration is being written: nothing to push before the workload exists. */
  registering = false;
  /** The identity granted on this stream (by its join token or its certificate), and the id of the token it descends from. */
  grant: Grant | null = null;
  /** It was said (logged) that this proxy got configuration without a credential. */
  warnedNoCredential = false;
  transport: 'mtls' | 'tls' | 'plaintext' | null = null;
  cert: IssuedCertificate | null = null;
  chain: string | null = null;
  /** Serial of the root that signed `cert`. */
  signedBy: string | null = null;
  certAcked: string | null = null;
  bundleAcked: string | null = null;
  identityError: string | null = null;
  /** `host:port` of its admin listener (metrics), as its hello said; null when it did not say. */
  admin: string | null = null;

  constructor(id: string, workload: string, namespace: string) {
    this.id = id;
    this.workload = workload;
    this.namespace = namespace;
  }
}

export interface ConfigServerOptions {
  heartbeatMs: number;
  log: (msg: string) => void;
  /** The CA and the join tokens; null: proxies get configuration but no certificates. */
  identity: { ca: CertificateAuthority; tokens: JoinTokens } | null;
  /** `required`: a stream without a valid credential gets no configuration and no registration; default `optional`. */
  streamAuth?: StreamAuthMode;
}

const DAY_MS = 24 * 3600_000;

/** Bucket bounds (seconds) of the config push latency histogram. */
export const PUSH_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Counters for the control plane's metrics. */
export interface ConfigServerStats {
  updatesSent: number;
  bytesSent: number;
  acks: number;
  nacks: number;
  /** By config type: updates sent, ACKs, NACKs. */
  byType: Record<ConfigType, { sent: number; acks: number; nacks: number }>;
  /** Change (or connect) to ACK, all types: per-bucket counts (not cumulative), sum and count. */
  pushLatency: { buckets: number[]; sum: number; count: number };
  /** Certificates signed for proxies. */
  certificatesIssued: number;
  /** Streams refused for their credential (`--stream-auth required`), by reason. */
  streamsRefused: Record<StreamRefusalReason, number>;
}

/** Where the telemetry proxies send on their stream goes (golden signals and tap: control/telemetry/). */
export interface StreamTelemetry {
  stats(proxyId: string, report: StatsReport): void;
  tapEvents(proxyId: string, events: Array<{ taps: string[]; event: TapEvent }>): void;
  /** A proxy's stream opened (it holds no taps yet, and has reported no endpoint health on it). */
  connected(proxyId: string): void;
  /** A proxy's whole view of endpoint health (sent on connect and after changes). */
  endpointHealth?(proxyId: string, report: EndpointHealthReport): void;
  /** A proxy's stream closed: what it reported on it is no longer current. */
  disconnected?(proxyId: string): void;
}

/** One scrape target for Prometheus HTTP service discovery (`http_sd_configs`). */
export interface ScrapeTarget {
  targets: string[];
  labels: Record<string, string>;
}

export class ConfigServer {
  private readonly index: ResourceIndex;
  private readonly registry: WorkloadRegistry;
  private readonly opts: ConfigServerOptions;
  private readonly records = new Map<string, ProxyRecord>();
  private current: MeshView | null = null;
  private scheduled = false;
  private readonly encoded = new Map<string, string>();
  private readonly pinger: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  readonly stats: ConfigServerStats = {
    updatesSent: 0,
    bytesSent: 0,
    acks: 0,
    nacks: 0,
    byType: { clusters: { sent: 0, acks: 0, nacks: 0 }, endpoints: { sent: 0, acks: 0, nacks: 0 }, workload: { sent: 0, acks: 0, nacks: 0 }, routes: { sent: 0, acks: 0, nacks: 0 } },
    pushLatency: { buckets: PUSH_LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 },
    certificatesIssued: 0,
    streamsRefused: Object.fromEntries(STREAM_REFUSAL_REASONS.map((r) => [r, 0])) as Record<StreamRefusalReason, number>,
  };
  /** Whether streams must carry a credential. */
  readonly streamAuth: StreamAuthMode;
  /** Recently refused proxies that have no record, by id (insertion order: oldest first). */
  private readonly refused = new Map<string, RefusedStream>();
  /** When the resources last changed (ms since the epoch). */
  private changedAt = Date.now();
  /** Takes the stats reports and tap events proxies send; null: they are ignored. */
  telemetry: StreamTelemetry | null = null;

  constructor(index: ResourceIndex, registry: WorkloadRegistry, opts: ConfigServerOptions) {
    this.index = index;
    this.registry = registry;
    this.opts = opts;
    this.streamAuth = opts.streamAuth ?? 'optional';
    if (this.streamAuth === 'required' && opts.identity === null) throw new Error('streamAuth: required needs the CA and join tokens that prove identities');
    this.unsubscribe = index.onChange(() => {
      this.changedAt = Date.now();
      this.schedule();
    });
    this.pinger = setInterval(() => this.heartbeat(), opts.heartbeatMs);
    this.pinger.unref();
  }

  /** The compiled mesh for the resources in force. */
  view(): MeshView {
    if (this.current === null || this.current.generation !== this.index.generation) {
      this.current = new MeshView(this.index.all(), this.index.generation, this.current);
      this.encoded.clear();
    }
    return this.current;
  }

  /** Takes over a socket after the API server accepted an Upgrade to the config stream. */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${STREAM_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
    const peer = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const cert = peerCertificate(req.socket as TLSSocket);
    const transport = (req.socket as TLSSocket).encrypted !== true ? 'plaintext' : cert !== null && 'spiffeId' in cert ? 'mtls' : 'tls';
    let record: ProxyRecord | null = null;
    let buffered = head.length > 0 ? head.toString('utf8') : '';
    /** Set once the stream is being closed: what follows in the buffer is not read. */
    let closing = false;
    const fail = (why: string): void => {
      closing = true;
      this.send(socket, { t: 'notice', message: why });
      socket.end();
    };
    const onLine = (line: string): void => {
      if (closing) return;
      let msg: ProxyMessage;
      try {
        msg = JSON.parse(line) as ProxyMessage;
      } catch {
        return fail('config stream: a line is not JSON');
      }
      if (record === null) {
        if (msg.t !== 'hello') return fail('config stream: the first message must be hello');
        const problem = helloProblem(msg);
        if (problem !== null) return fail(`config stream: hello: ${problem}`);
        // Authenticated before anything else: a refused stream must not displace the stream of the proxy it claims to be.
        const auth = this.authenticate(msg, cert);
        if ('refused' in auth && this.streamAuth === 'required') {
          closing = true;
          return this.refuseStream(msg, socket, peer, transport, auth);
        }
        record = this.attach(msg, socket, peer, transport, auth);
        return;
      }
      if (record.socket !== socket) return; // replaced by a newer stream of the same proxy
      record.lastSeenAt = Date.now();
      if (record.registrationKey !== null) this.registry.renew(record.registrationKey);
      this.onMessage(record, msg);
    };
    // The HTTP server forbids setEncoding on its sockets, even upgraded ones.
    const decoder = new StringDecoder('utf8');
    const readLines = (): void => {
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.length > 0) onLine(line);
        if (socket.destroyed) return;
      }
      if (buffered.length > MAX_LINE) fail('config stream: message too large');
    };
    socket.on('data', (chunk: Buffer) => {
      buffered += decoder.write(chunk);
      readLines();
    });
    readLines(); // bytes that came with the upgrade request
    socket.on('error', () => {});
    // The HTTP server's sockets allow half-open; a proxy that closed (or died) is gone, so close too.
    socket.on('end', () => socket.destroy());
    socket.on('close', () => {
      if (record !== null && record.socket === socket) this.detach(record);
    });
  }

  private attach(hello: HelloMessage, socket: Duplex, peer: string, transport: ProxyRecord['transport'], auth: StreamAuth): ProxyRecord {
    const id = `${hello.namespace}/${hello.workload}`;
    let r = this.records.get(id);
    if (r === undefined) {
      r = new ProxyRecord(id, hello.workload, hello.namespace);
      this.records.set(id, r);
    }
    this.refused.delete(id);
    if (r.dropTimer !== null) clearTimeout(r.dropTimer);
    r.dropTimer = null;
    const old = r.socket;
    r.socket = socket;
    if (old !== null) old.destroy();
    r.peer = peer;
    r.admin = typeof hello.admin === 'string' && ADMIN_ADDRESS.test(hello.admin) ? hello.admin : null;
    r.connectedAt = Date.now();
    r.lastSeenAt = Date.now();
    r.blocked = false;
    r.openPush = false;
    // The proxy knows what it holds better than our memory of an earlier connection does.
    for (const t of CONFIG_TYPES) {
      r.acked[t] = hello.have[t] ?? null;
      delete r.inflight[t];
    }
    r.ackedClusters = new Map(Object.entries(hello.haveEndpoints));
    socket.on('drain', () => {
      if (r.socket === socket && r.blocked) {
        r.blocked = false;
        this.push(r);
      }
    });
    this.send(socket, { t: 'welcome', proxyId: id, leaseTtlMs: this.registry.ttlMs, heartbeatMs: this.opts.heartbeatMs });
    this.opts.log(`proxy ${id} connected from ${peer} (${transport})`);
    this.telemetry?.connected(id);
    r.grant = 'grant' in auth ? auth.grant : null;
    r.identityError = null;
    r.transport = transport;
    if ('refused' in auth && auth.refused !== 'no_credential') this.refuseIdentity(r, auth.why);
    else if ('refused' in auth && this.opts.identity !== null && !r.warnedNoCredential) {
      r.warnedNoCredential = true;
      this.opts.log(`proxy ${id} connected from ${peer} without a credential (no join token, no certificate) and gets configuration: --stream-auth optional`);
    }
    if (typeof hello.csr === 'string') this.sign(r, hello.csr);
    if (hello.register === null) {
      this.push(r);
    } else {
      const rec = r;
      rec.registering = true;
      this.registry.register(hello.workload, hello.namespace, hello.register).then(
        (key) => {
          rec.registering = false;
          rec.registrationKey = key;
          this.push(rec);
        },
        (err: Error) => {
          rec.registering = false;
          this.send(socket, { t: 'notice', message: `registration refused: ${err.message}` });
          this.push(rec);
        },
      );
    }
    return r;
  }

  private detach(r: ProxyRecord): void {
    r.socket = null;
    r.transport = null;
    r.connectedAt = null;
    for (const t of CONFIG_TYPES) delete r.inflight[t];
    this.opts.log(`proxy ${r.id} disconnected`);
    this.telemetry?.disconnected?.(r.id);
    // Kept for the lease TTL so proxy-status shows it as disconnected, then forgotten.
    r.dropTimer = setTimeout(() => {
      if (r.socket === null) this.records.delete(r.id);
    }, this.registry.ttlMs);
    r.dropTimer.unref();
  }

  private onMessage(r: ProxyRecord, msg: ProxyMessage): void {
    switch (msg.t) {
      case 'heartbeat':
        return;
      case 'stats':
        this.telemetry?.stats(r.id, msg.report);
        return;
      case 'tap-events':
        if (Array.isArray(msg.events)) this.telemetry?.tapEvents(r.id, msg.events);
        return;
      case 'endpoint-health':
        this.telemetry?.endpointHealth?.(r.id, msg.report);
        return;
      case 'csr':
        this.sign(r, String(msg.csr));
        return;
      case 'identity-ack':
        r.certAcked = String(msg.serial);
        r.bundleAcked = String(msg.bundle);
        return;
      case 'register': {
        const problem = registrationProblem(msg.register) ?? this.registrationIdentityProblem(r, msg.register);
        if (problem !== null) {
          this.send(r.socket!, { t: 'notice', message: `registration refused: ${problem}` });
          return;
        }
        this.registry.register(r.workload, r.namespace, msg.register).then(
          (key) => {
            r.registrationKey = key;
          },
          (err: Error) => {
            if (r.socket !== null) this.send(r.socket, { t: 'notice', message: `registration refused: ${err.message}` });
          },
        );
        return;
      }
      case 'bye':
        if (r.registrationKey !== null) void this.registry.release(r.registrationKey);
        r.registrationKey = null;
        return;
      case 'ack': {
        const f = r.inflight[msg.type];
        if (f === undefined || f.version !== msg.version) return;
        delete r.inflight[msg.type];
        delete r.nacked[msg.type];
        r.acked[msg.type] = msg.version;
        r.ackedAt[msg.type] = Date.now();
        if (f.clusters !== undefined) r.ackedClusters = f.clusters;
        this.stats.acks++;
        this.stats.byType[msg.type].acks++;
        this.observePush((Date.now() - f.since) / 1000);
        this.push(r);
        return;
      }
      case 'nack': {
        const f = r.inflight[msg.type];
        if (f === undefined || f.version !== msg.version) return;
        delete r.inflight[msg.type];
        this.stats.nacks++;
        this.stats.byType[msg.type].nacks++;
        if (msg.type === 'endpoints' && msg.error.startsWith('base ')) {
          // The proxy's endpoints are not what we thought: resend them whole.
          r.ackedClusters = new Map();
          r.acked.endpoints = null;
        } else {
          r.nacked[msg.type] = { version: msg.version, error: String(msg.error).slice(0, 2000) };
          this.opts.log(`proxy ${r.id} refused ${msg.type} ${msg.version}: ${msg.error}`);
        }
        this.push(r);
        return;
      }
      default:
        return;
    }
  }

  /**
   * What proves the identity a hello claims: the certificate the stream was opened with (a reconnect),
   * else its join token (the first connect); or why nothing does. Either must be for the namespace the
   * proxy claims and the service account it registers.
   */
  private authenticate(hello: HelloMessage, cert: PeerCertificate): StreamAuth {
    const id = this.opts.identity;
    if (id === null) return { refused: 'no_credential', why: 'this control plane issues no identities' };
    if (cert !== null && 'spiffeId' in cert) return this.authenticateCertificate(hello, cert, id.tokens);
    if (typeof hello.token === 'string') return this.authenticateToken(hello, id.tokens);
    if (cert !== null) return { refused: 'bad_certificate', why: cert.error };
    return { refused: 'no_credential', why: NO_CREDENTIAL };
  }

  /** A join token must be valid now (known, not revoked, not expired) and grant the namespace and service account the proxy claims. */
  private authenticateToken(hello: HelloMessage, tokens: JoinTokens): StreamAuth {
    let t: JoinToken;
    try {
      t = tokens.check(String(hello.token));
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      const reason = err.reason === 'revoked' ? 'revoked' : err.reason === 'expired' ? 'expired_token' : 'bad_token';
      return { refused: reason, why: err.message };
    }
    if (t.namespace !== hello.namespace) return { refused: 'identity_mismatch', why: `token ${t.id} is for namespace ${t.namespace}, not ${hello.namespace}` };
    if (hello.register !== null && hello.register.serviceAccount !== t.serviceAccount) {
      return { refused: 'identity_mismatch', why: `token ${t.id} is for service account ${t.serviceAccount}, but the proxy registers ${hello.register.serviceAccount}` };
    }
    return { grant: { namespace: t.namespace, serviceAccount: t.serviceAccount, tokenId: t.id, by: 'token' } };
  }

  /**
   * The identity of the certificate the stream was opened with (the TLS layer already checked that it
   * chains to a trusted root and is valid now). It must be for the namespace and service account the
   * proxy claims, and descend from a token that was not revoked.
   */
  private authenticateCertificate(hello: HelloMessage, cert: { spiffeId: string; serial: string }, tokens: JoinTokens): StreamAuth {
    const id = parseSpiffeId(cert.spiffeId);
    if (id === null) return { refused: 'bad_certificate', why: `certificate ${cert.serial}: ${cert.spiffeId} is not a workload identity` };
    if (id.trustDomain !== this.trustDomain()) return { refused: 'bad_certificate', why: `certificate ${cert.serial}: trust domain ${id.trustDomain}, not ${this.trustDomain()}` };
    if (id.namespace === CONTROL_NAMESPACE) return { refused: 'bad_certificate', why: `certificate ${cert.serial}: namespace ${CONTROL_NAMESPACE} is reserved` };
    if (id.namespace !== hello.namespace) return { refused: 'identity_mismatch', why: `certificate ${cert.serial} is for namespace ${id.namespace}, not ${hello.namespace}` };
    if (hello.register !== null && hello.register.serviceAccount !== id.serviceAccount) {
      return { refused: 'identity_mismatch', why: `certificate ${cert.serial} is for service account ${id.serviceAccount}, but the proxy registers ${hello.register.serviceAccount}` };
    }
    const tokenId = tokens.tokenOf(cert.serial);
    if (tokenId === null) return { refused: 'bad_certificate', why: `certificate ${cert.serial}: this control plane has no record of issuing it; join again with a token` };
    if (tokens.revoked(tokenId)) return { refused: 'revoked', why: `token ${tokenId}: revoked` };
    return { grant: { namespace: id.namespace, serviceAccount: id.serviceAccount, tokenId, by: 'certificate' } };
  }

  /**
   * Answers a stream whose credential is missing or refused, under `--stream-auth required`: it is told
   * why and closed before it is welcomed, so it gets no configuration, registers nothing, and the proxy
   * retries with its backoff.
   */
  private refuseStream(hello: HelloMessage, socket: Duplex, peer: string, transport: ProxyRecord['transport'], auth: { refused: StreamRefusalReason; why: string }): void {
    this.stats.streamsRefused[auth.refused]++;
    const id = `${hello.namespace}/${hello.workload}`;
    this.opts.log(`proxy ${id} from ${peer} (${transport}): stream refused (${auth.refused}): ${auth.why}`);
    const notice = `config stream refused: ${auth.why} (this control plane requires a credential: --stream-auth required)`;
    this.send(socket, { t: 'notice', message: notice });
    socket.end();
    // A peer that never closes its side does not hold the socket.
    setTimeout(() => socket.destroy(), 1000).unref();
    const r = this.records.get(id);
    if (r !== undefined) {
      // The proxy's own record (it was connected before): shown as refused while it is disconnected,
      // never disturbed while another stream of it is open.
      if (r.socket === null) {
        r.notice = notice;
        r.identityError = auth.why;
        r.peer = peer;
      }
      return;
    }
    this.refused.delete(id);
    this.refused.set(id, { id, workload: hello.workload, namespace: hello.namespace, peer, at: Date.now(), notice, why: auth.why });
    if (this.refused.size > MAX_REFUSED) this.refused.delete(this.refused.keys().next().value!);
  }

  /** Why a registration on a live stream is not for the identity granted on it (or, under `--stream-auth required`, there is none); null when it may go. */
  private registrationIdentityProblem(r: ProxyRecord, reg: RegisteredWorkload): string | null {
    // A stream with an identity registers only that identity, in either mode; one without, only when optional.
    if (r.grant === null) return this.streamAuth === 'required' ? 'register: this stream has no credential' : null;
    if (reg.serviceAccount !== r.grant.serviceAccount) return `register.serviceAccount: the stream's identity is service account ${r.grant.serviceAccount} (by ${r.grant.by}), not ${reg.serviceAccount}`;
    return null;
  }

  private refuseIdentity(r: ProxyRecord, why: string): void {
    r.identityError = why;
    this.opts.log(`proxy ${r.id}: no certificate: ${why}`);
    if (r.socket !== null) this.send(r.socket, { t: 'identity-error', error: why });
  }

  /** Signs a CSR for the identity granted on this stream and sends the chain with the bundle. */
  private sign(r: ProxyRecord, csr: string): void {
    const id = this.opts.identity;
    if (id === null) return this.refuseIdentity(r, 'this control plane issues no certificates');
    if (r.grant === null) {
      if (r.identityError === null) this.refuseIdentity(r, 'no join token on this stream: start the proxy with --token (weft token create)');
      return;
    }
    // A renewal on a stream the token opened needs the token not revoked; its expiry only bounds joining.
    if (id.tokens.revoked(r.grant.tokenId)) return this.refuseIdentity(r, `token ${r.grant.tokenId}: revoked`);
    try {
      const issued = id.ca.issue(csr, this.trustDomain(), r.grant.namespace, r.grant.serviceAccount, this.certificateLifetimeMs());
      this.stats.certificatesIssued++;
      const signedBy = id.ca.signingRoot().serialNumber;
      // Recorded before it is handed out, so a reconnect with it is always recognised.
      id.tokens.recordIssued(issued.cert.serial, r.grant.tokenId, issued.cert.notAfter).then(
        () => {
          r.cert = issued.cert;
          r.chain = issued.chain;
          r.signedBy = signedBy;
          r.identityError = null;
          this.sendIdentity(r);
        },
        (err: Error) => this.refuseIdentity(r, `recording certificate ${issued.cert.serial}: ${err.message}`),
      );
    } catch (err) {
      this.refuseIdentity(r, (err as Error).message);
    }
  }

  private sendIdentity(r: ProxyRecord): void {
    if (r.socket === null || r.cert === null || r.chain === null || this.opts.identity === null) return;
    this.send(r.socket, { t: 'identity', chain: r.chain, bundle: this.opts.identity.ca.bundle(), serial: r.cert.serial, notAfter: r.cert.notAfter });
  }

  private mesh(): Mesh | undefined {
    // The oldest Mesh applies, as the compiler decides (others are reported there).
    return this.index
      .all()
      .filter((x): x is Mesh => x.kind === 'Mesh')
      .sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') || a.metadata.name.localeCompare(b.metadata.name))[0];
  }

  /** Certificate lifetime from the Mesh resource (`certificateLifetime`), 24 h by default. */
  certificateLifetimeMs(): number {
    const text = this.mesh()?.spec.certificateLifetime;
    return text === undefined ? DAY_MS : parseDuration(text);
  }

  trustDomain(): string {
    return this.mesh()?.spec.trustDomain ?? 'cluster.local';
  }

  /**
   * Refuses further certificates to the proxies that joined with a token that was just revoked; under
   * `--stream-auth required` also withdraws their registrations and closes their streams (their
   * reconnects are refused, the certificate descending from a revoked token).
   */
  tokenRevoked(id: string): void {
    for (const r of this.records.values()) {
      if (r.grant?.tokenId === id && r.socket !== null) {
        this.refuseIdentity(r, `token ${id}: revoked`);
        r.grant = null;
        if (this.streamAuth !== 'required') continue;
        this.opts.log(`proxy ${r.id}: token ${id} revoked; closing its stream (--stream-auth required)`);
        this.send(r.socket, { t: 'notice', message: `config stream closed: token ${id}: revoked (this control plane requires a credential: --stream-auth required)` });
        if (r.registrationKey !== null) this.registry.release(r.registrationKey).catch((err: Error) => this.opts.log(`proxy ${r.id}: releasing its registration: ${err.message}`));
        r.registrationKey = null;
        const socket = r.socket;
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      }
    }
  }

  /**
   * Rotates the root under live traffic: the new root joins every proxy's bundle, then signs (every
   * proxy renews), then the old root leaves the bundle. Each step waits until every connected proxy
   * with an identity has caught up, so no handshake ever meets a root its peer does not trust.
   */
  async rotateRoot(log: (step: string) => void, stepTimeoutMs = 60_000): Promise<void> {
    const id = this.opts.identity;
    if (id === null) throw new Error('this control plane has no CA');
    const holders = (): ProxyRecord[] => [...this.records.values()].filter((r) => r.socket !== null && r.cert !== null);
    const until = async (what: string, done: (r: ProxyRecord) => boolean): Promise<void> => {
      const deadline = Date.now() + stepTimeoutMs;
      for (;;) {
        const behind = holders().filter((r) => !done(r));
        if (behind.length === 0) return;
        if (Date.now() > deadline) throw new Error(`${what}: ${behind.length} proxies did not catch up in ${stepTimeoutMs / 1000} s (${behind.slice(0, 5).map((r) => r.id).join(', ')})`);
        await new Promise((res) => setTimeout(res, 50));
      }
    };
    const bundleSynced = (r: ProxyRecord): boolean => r.bundleAcked === bundleHash(id.ca.bundle());
    const phase = id.ca.rotationPhase();
    if (phase === null) {
      id.ca.rotateStep();
      for (const r of holders()) this.sendIdentity(r);
      log(`new root added to the trust bundle of ${holders().length} proxies`);
    }
    await until('trusting the new root', bundleSynced);
    if (id.ca.rotationPhase() === 'added') id.ca.rotateStep();
    const signer = id.ca.signingRoot().serialNumber;
    for (const r of holders()) if (r.signedBy !== signer && r.socket !== null) this.send(r.socket, { t: 'renew' });
    log('the new root signs; proxies renew');
    await until('renewing from the new root', (r) => r.signedBy === signer && r.certAcked === r.cert!.serial);
    id.ca.rotateStep();
    for (const r of holders()) this.sendIdentity(r);
    log('old root retired from the trust bundle');
    await until('dropping the old root', bundleSynced);
  }

  /** Coalesces changes that arrive together into one push to every proxy. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (const r of this.records.values()) if (r.socket !== null) this.push(r);
    });
  }

  /** Sends a proxy every type whose version moved, unless that type is already in flight. */
  private push(r: ProxyRecord): void {
    const socket = r.socket;
    if (socket === null || r.blocked || r.registering || socket.writableEnded) return;
    const view = this.view();
    const wl = view.workload(r.namespace, r.workload);
    if (wl === null) {
      const notice = `workload ${r.id} does not exist yet; declare a Workload or start the proxy with its registration`;
      if (r.notice !== notice) this.send(socket, { t: 'notice', message: notice });
      r.notice = notice;
      return;
    }
    r.notice = null;
    const ns = view.scoped(r.namespace, view.scopeOf(r.namespace, r.workload));
    for (const type of CONFIG_TYPES) {
      if (r.inflight[type] !== undefined) continue;
      const target = type === 'workload' ? wl.version : type === 'endpoints' ? ns.endpoints.version : ns[type].version;
      if (r.acked[type] === target || r.nacked[type]?.version === target) continue;
      let line: string;
      let clusters: Map<string, string> | undefined;
      if (type === 'endpoints') {
        const base = r.acked.endpoints;
        line = this.encode(`endpoints:${base ?? ''}:${target}`, () => {
          const set: Record<string, { version: string; endpoints: Endpoint[] }> = {};
          for (const [name, e] of ns.endpoints.clusters) if (base === null || r.ackedClusters.get(name) !== e.version) set[name] = { version: e.version, endpoints: e.value };
          const removed = base === null ? [] : [...r.ackedClusters.keys()].filter((n) => !ns.endpoints.clusters.has(n));
          return { t: 'update', type, version: target, base, set, removed };
        });
        clusters = new Map([...ns.endpoints.clusters].map(([n, e]) => [n, e.version]));
      } else if (type === 'workload') {
        line = this.encode(`workload:${r.id}:${target}`, () => ({ t: 'update', type, version: target, value: wl.value }));
      } else if (type === 'routes') {
        line = this.encode(`routes:${r.namespace}:${target}`, () => ({ t: 'update', type, version: target, value: ns.routes.value }));
      } else {
        line = this.encode(`clusters:${r.namespace}:${target}`, () => ({ t: 'update', type, version: target, value: ns.clusters.value }));
      }
      const now = Date.now();
      r.inflight[type] = { version: target, sentAt: now, since: Math.max(this.changedAt, r.connectedAt ?? 0), ...(clusters !== undefined ? { clusters } : {}) };
      r.sent[type] = { version: target, at: now };
      this.stats.updatesSent++;
      this.stats.byType[type].sent++;
      this.stats.bytesSent += line.length;
      r.openPush = true;
      if (!socket.write(line)) {
        r.blocked = true;
        return;
      }
    }
    // Everything this push had to send is written: the proxy may apply it as one.
    if (r.openPush) {
      r.openPush = false;
      socket.write(PUSH_END);
    }
  }

  // Encoded updates are shared by every proxy in the same state, within one generation of the view.
  // The endpoints key holds the base version, which names the proxy's whole per-cluster state.
  private encode(key: string, build: () => ControlMessage): string {
    let line = this.encoded.get(key);
    if (line === undefined) {
      line = JSON.stringify(build()) + '\n';
      this.encoded.set(key, line);
    }
    return line;
  }

  private send(socket: Duplex, msg: ControlMessage): void {
    if (!socket.destroyed && !socket.writableEnded) socket.write(JSON.stringify(msg) + '\n');
  }

  private heartbeat(): void {
    const deadline = Date.now() - 3 * this.opts.heartbeatMs;
    for (const r of this.records.values()) {
      if (r.socket === null) continue;
      if (r.lastSeenAt < deadline) {
        this.opts.log(`proxy ${r.id} silent for ${3 * this.opts.heartbeatMs} ms; closing its stream`);
        r.socket.destroy();
        continue;
      }
      this.send(r.socket, { t: 'ping' });
    }
  }

  /** Every known proxy, connected or recently disconnected (or refused, within the lease TTL), in id order. */
  statuses(): ProxyStatus[] {
    const view = this.view();
    const now = Date.now();
    return [...this.records.values()]
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((r): ProxyStatus => {
        const wl = view.workload(r.namespace, r.workload);
        const ns = wl === null ? null : view.scoped(r.namespace, view.scopeOf(r.namespace, r.workload));
        const types = {} as Record<ConfigType, TypeSync>;
        for (const t of CONFIG_TYPES) {
          const latest = wl === null || ns === null ? null : t === 'workload' ? wl.version : t === 'endpoints' ? ns.endpoints.version : ns[t].version;
          const nack = r.nacked[t];
          const sent = r.sent[t];
          let state: SyncState = 'STALE';
          if (latest !== null && r.acked[t] === latest && r.socket !== null) state = 'SYNCED';
          else if (latest !== null && nack?.version === latest) state = 'NACKED';
          else if (r.socket !== null && r.inflight[t] !== undefined && now - r.inflight[t]!.sentAt < STALE_AFTER_MS) state = 'SYNCED';
          types[t] = {
            state,
            latest,
            sent: sent?.version ?? null,
            acked: r.acked[t],
            error: state === 'NACKED' ? nack!.error : null,
            sentAt: sent?.at ?? null,
            ackedAt: r.ackedAt[t],
          };
        }
        return {
          id: r.id,
          workload: r.workload,
          namespace: r.namespace,
          connected: r.socket !== null,
          peer: r.peer,
          connectedAt: r.connectedAt,
          lastSeenAt: r.lastSeenAt,
          registered: r.registrationKey !== null,
          leaseExpiresAt: r.registrationKey === null ? null : this.registry.expiry(r.registrationKey),
          notice: r.notice,
          types,
          certificate:
            r.cert === null
              ? null
              : { ...r.cert, installed: r.certAcked === r.cert.serial, bundleSynced: this.opts.identity !== null && r.bundleAcked === bundleHash(this.opts.identity.ca.bundle()) },
          identityError: r.identityError,
          transport: r.transport,
          authenticatedBy: r.grant?.by ?? null,
        };
      })
      .concat(this.refusedStatuses(now))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Proxies whose streams were refused (and that have no record), as `weft proxy-status` shows them; forgotten after the lease TTL. */
  private refusedStatuses(now: number): ProxyStatus[] {
    const out: ProxyStatus[] = [];
    for (const f of this.refused.values()) {
      if (now - f.at > this.registry.ttlMs) {
        this.refused.delete(f.id);
        continue;
      }
      const types = {} as Record<ConfigType, TypeSync>;
      for (const t of CONFIG_TYPES) types[t] = { state: 'STALE', latest: null, sent: null, acked: null, error: null, sentAt: null, ackedAt: null };
      out.push({
        id: f.id,
        workload: f.workload,
        namespace: f.namespace,
        connected: false,
        peer: f.peer,
        connectedAt: null,
        lastSeenAt: f.at,
        registered: false,
        leaseExpiresAt: null,
        notice: f.notice,
        types,
        certificate: null,
        identityError: f.why,
        transport: null,
        authenticatedBy: null,
      });
    }
    return out;
  }

  /** The configuration the control plane wants a proxy to have, as one snapshot; null when unknown. */
  proxyConfig(id: string): ProxySnapshot | null {
    const r = this.records.get(id);
    const [namespace, workload] = r !== undefined ? [r.namespace, r.workload] : id.split('/', 2);
    if (namespace === undefined || workload === undefined) return null;
    const view = this.view();
    const wl = view.workload(namespace, workload);
    if (wl === null) return null;
    const ns = view.scoped(namespace, view.scopeOf(namespace, workload));
    const parts: ConfigParts = {
      workload: wl.value,
      routes: ns.routes.value,
      clusters: ns.clusters.value,
      endpoints: Object.fromEntries([...ns.endpoints.clusters].map(([n, e]) => [n, e.value])),
    };
    return assembleSnapshot(parts, { workload: wl.version, routes: ns.routes.version, clusters: ns.clusters.version, endpoints: ns.endpoints.version });
  }

  /**
   * Connected proxies that serve the service `namespace/name` (their workload is an endpoint of one of
   * its clusters) or call it (one of its clusters is in their configuration).
   */
  proxiesOf(namespace: string, name: string): string[] {
    const view = this.view();
    const prefix = `${name}.${namespace}:`;
    const out = new Set<string>();
    for (const [cluster, e] of view.namespace(namespace).endpoints.clusters) {
      if (cluster.startsWith(prefix)) for (const ep of e.value) out.add(ep.workload);
    }
    for (const r of this.records.values()) {
      if (r.socket === null || out.has(r.id) || view.workload(r.namespace, r.workload) === null) continue;
      const clusters = view.scoped(r.namespace, view.scopeOf(r.namespace, r.workload)).clusters.value;
      if (clusters.some((c) => c.service === name && c.namespace === namespace)) out.add(r.id);
    }
    return [...out].filter((id) => this.records.get(id)?.socket != null).sort();
  }

  /** Sends a message to a connected proxy; false when it has no open stream. */
  sendTo(id: string, msg: ControlMessage): boolean {
    const r = this.records.get(id);
    if (r === undefined || r.socket === null) return false;
    this.send(r.socket, msg);
    return true;
  }

  /** Number of proxies with an open stream. */
  get connected(): number {
    let n = 0;
    for (const r of this.records.values()) if (r.socket !== null) n++;
    return n;
  }

  /** Proxies with an open stream, by how it is carried. */
  connectedByTransport(): Record<'mtls' | 'tls' | 'plaintext', number> {
    const out = { mtls: 0, tls: 0, plaintext: 0 };
    for (const r of this.records.values()) if (r.socket !== null && r.transport !== null) out[r.transport]++;
    return out;
  }

  /** The admin (metrics) address of every connected proxy that told it, for Prometheus HTTP service discovery. */
  scrapeTargets(): ScrapeTarget[] {
    const out: ScrapeTarget[] = [];
    for (const r of [...this.records.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      if (r.socket === null || r.admin === null) continue;
      out.push({ targets: [r.admin], labels: { job: 'weft-proxy', workload: r.workload, namespace: r.namespace } });
    }
    return out;
  }

  private observePush(seconds: number): void {
    const h = this.stats.pushLatency;
    h.count++;
    h.sum += seconds;
    const i = PUSH_LATENCY_BUCKETS.findIndex((b) => seconds <= b);
    if (i !== -1) h.buckets[i]!++;
  }

  close(): void {
    clearInterval(this.pinger);
    this.unsubscribe();
    for (const r of this.records.values()) {
      r.socket?.destroy();
      if (r.dropTimer !== null) clearTimeout(r.dropTimer);
    }
  }
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A proxy's admin address in its hello: `host:port` (an IPv6 host in brackets). */
const ADMIN_ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$/;

/** What is wrong with a hello, or null. */
function helloProblem(h: HelloMessage): string | null {
  if (typeof h.workload !== 'string' || !NAME.test(h.workload)) return `workload: ${JSON.stringify(h.workload)} is not a DNS label`;
  if (typeof h.namespace !== 'string' || !NAME.test(h.namespace)) return `namespace: ${JSON.stringify(h.namespace)} is not a DNS label`;
  if (typeof h.have !== 'object' || h.have === null) return 'have: must be an object';
  if (typeof h.haveEndpoints !== 'object' || h.haveEndpoints === null) return 'haveEndpoints: must be an object';
  if (h.register !== null) return registrationProblem(h.register);
  return null;
}

function registrationProblem(r: RegisteredWorkload): string | null {
  if (typeof r !== 'object' || r === null) return 'register: must be an object or null';
  if (typeof r.address !== 'string' || r.address === '') return 'register.address: must be a non-empty string';
  if (typeof r.ports !== 'object' || r.ports === null) return 'register.ports: must be an object';
  for (const [name, p] of Object.entries(r.ports)) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) return `register.ports.${name}: ${JSON.stringify(p)} is not a port`;
  }
  if (typeof r.labels !== 'object' || r.labels === null || Object.values(r.labels).some((v) => typeof v !== 'string')) return 'register.labels: must map names to strings';
  if (typeof r.serviceAccount !== 'string' || !NAME.test(r.serviceAccount)) return 'register.serviceAccount: must be a DNS label';
  if (r.calls !== undefined && r.calls !== null && !(Array.isArray(r.calls) && r.calls.every((c) => typeof c === 'string'))) return 'register.calls: must be a list of strings or null';
  if (r.inboundPort !== null && (!Number.isInteger(r.inboundPort) || r.inboundPort < 1 || r.inboundPort > 65535)) return 'register.inboundPort: must be a port or null';
  return null;
}

/** The verified SPIFFE ID and serial of a TLS stream's client certificate, why it is not usable, or null (plaintext, or no certificate). */
function peerCertificate(socket: TLSSocket): PeerCertificate {
  if (socket.encrypted !== true) return null;
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return null;
  if (!socket.authorized) return { error: `client certificate ${cert.serialNumber} refused: ${String(socket.authorizationError)}` };
  const ids = uriSans(cert);
  if (ids.length !== 1) return { error: `client certificate ${cert.serialNumber}: expected exactly one URI SAN, found ${ids.length}` };
  return { spiffeId: ids[0]!, serial: cert.serialNumber };
}
