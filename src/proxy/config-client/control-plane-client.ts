/**
 * The proxy's end of the config stream (`weft proxy --control-plane URL`). It holds one stream,
 * applies each update it gets and answers ACK or NACK with the reason; a configuration that cannot
 * be applied is refused and the last good one keeps serving. When the control plane is gone the
 * proxy keeps its configuration and reconnects with exponential backoff and full jitter, telling
 * what it holds so the resync sends only what changed meanwhile.
 *
 * A proxy with an identity joins once with its token over the URL it was given, then talks to the
 * control plane over mutual TLS on the same port: its certificate proves who it is (an expired or
 * revoked token no longer matters for reconnects) and it checks the server is the control plane.
 * Given an `https:` URL, the join itself goes over TLS to a server whose root matches a pin the proxy
 * was given (root-pin.ts); the token never goes to a server that did not prove it is the control plane.
 */
import type { Socket } from 'node:net';
import { configApplied, configRejected } from '../../core/diagnostics.js';
// From the module itself, not model/index.js: that one also loads the YAML parser and the compiler.
import { CONFIG_TYPES, STREAM_PROTOCOL, assembleSnapshot, endpointsVersion } from '../../model/config-parts.js';
import type {
  ConfigParts,
  ConfigType,
  ControlMessage,
  Endpoint,
  ProxyMessage,
  ProxySnapshot,
  RegisteredWorkload,
  UpdateMessage,
} from '../../model/index.js';
import { controlPlaneId, parseSpiffeId } from '../../core/identity/spiffe.js';
import { expectSpiffeId } from '../tls/peer-identity.js';
import { HttpClientError, upgradeRequest, type ClientTls } from '../http1/simple-client.js';
import { isLoopbackHost, pinnedJoinTls } from './root-pin.js';
import type { WorkloadIdentity } from '../tls/workload-identity.js';
import type { TapSpec } from '../../model/golden-signals.js';

/** A stream with more than this waiting to be written takes no telemetry (stats, tap events) until it drains. */
const MAX_TELEMETRY_BACKLOG = 1 << 20;
/** Connecting, the TLS handshake and the answer to the Upgrade request must all fit in this. */
const CONNECT_TIMEOUT_MS = 5000;


export interface ControlPlaneClientOptions {
  /** e.g. `http://127.0.0.1:15010`, or `https://cp.example:15010` with `pins` */
  url: string;
  /** For an `https:` URL: the pins (`sha256:<hex>` of the SubjectPublicKeyInfo) one of which the server's root must match before the token is sent. */
  pins?: readonly string[];
  /** The control plane's trust domain when it must be this one (a pinned root shared by several meshes); null: the one its certificate names. */
  trustDomain?: string | null;
  workload: string;
  namespace: string;
  /** The workload to register, read at each connect (ports are known only once listening); null if declared. */
  registration: () => RegisteredWorkload | null;
  /** `host:port` of this proxy's admin listener, told in the hello so the control plane can list it for Prometheus. */
  adminAddress?: string;
  /** Swaps in a snapshot; throws when the proxy cannot apply it (the reason goes back as a NACK). */
  apply: (s: ProxySnapshot) => void;
  log: (msg: string) => void;
  /** The proxy's identity and the join token that grants it; null: no certificate is asked for. */
  identity?: { holder: WorkloadIdentity; token: string } | null;
  /** The open taps that concern this proxy, each time the control plane sends them; [] when the stream closes. */
  onTap?: (taps: TapSpec[]) => void;
  /** A stream opened and the control plane welcomed this proxy (e.g. to send it what it must know afresh, like endpoint health). */
  onConnected?: () => void;
  /** Reconnect backoff: first ceiling and cap (ms). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

type Held = { [T in ConfigType]?: ConfigParts[T] };

export class ControlPlaneClient {
  private readonly opts: ControlPlaneClientOptions;
  private readonly held: Held = {};
  private readonly versions: Partial<Record<ConfigType, string>> = {};
  private clusterVersions = new Map<string, string>();
  private socket: Socket | null = null;
  private closed = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private lastHeard = 0;
  /** Kept under a third of the lease TTL once known, so a reconnect never outwaits this workload's lease. */
  private backoffCap: number;
  private configured = false;
  /** Whether the open stream is mutual TLS. */
  private secure = false;
  /** Set to reconnect at once (to move the stream onto mTLS). */
  private reconnectNow = false;
  /** Whether the open stream was welcomed; a notice before that is why the control plane refuses it. */
  private welcomed = false;
  /** The control plane's reason for refusing the open stream, told with the retry (so at the retry log's pace). */
  private refusal: string | null = null;

  constructor(opts: ControlPlaneClientOptions) {
    this.opts = opts;
    this.backoffCap = opts.backoffMaxMs ?? 5000;
  }

  /** How the open stream is carried: `mtls`, `tls` (the join to a pinned root), `plaintext`, or null when there is none. */
  get transport(): 'mtls' | 'tls' | 'plaintext' | null {
    return this.socket === null ? null : this.secure ? 'mtls' : this.joinOverTls ? 'tls' : 'plaintext';
  }

  /** Whether the join (the connect with the token) goes over TLS to a pinned root. */
  private get joinOverTls(): boolean {
    return new URL(this.opts.url).protocol === 'https:';
  }

  /** True while a stream is open. */
  get connected(): boolean {
    return this.socket !== null;
  }

  start(): void {
    // The token would cross the network in the clear on the first connect: say so once, and how to avoid it.
    const url = new URL(this.opts.url);
    if (url.protocol === 'http:' && this.opts.identity != null && !isLoopbackHost(url)) {
      this.opts.log(
        `warning: ${this.opts.url} is plaintext HTTP to another host: the join token crosses the network in the clear on the first connect. ` +
          `Use --control-plane https://${url.host} --ca-cert-hash sha256:<hex> (printed by "weft token create" and "weft ca pins")`,
      );
    }
    this.connect();
  }

  private connect(): void {
    if (this.closed) return;
    const mtls = this.mtlsOptions();
    const url = new URL('/api/v1/stream', this.opts.url);
    if (mtls !== null) url.protocol = 'https:';
    let upgraded = false;
    const retry = (why: string): void => {
      if (this.closed) return;
      // While the certificate is valid a failed mTLS stream is retried as mTLS, never with the token
      // in plaintext: whoever made it fail (a server that is not the control plane) must not get the token.
      if (mtls !== null && !upgraded) why = `the mTLS stream failed (${why})`;
      if (this.reconnectNow) {
        this.reconnectNow = false;
        this.retryTimer = setTimeout(() => this.connect(), 0);
        return;
      }
      const ceiling = Math.min(this.backoffCap, (this.opts.backoffBaseMs ?? 100) * 2 ** this.attempt);
      const delay = Math.max(20, Math.random() * ceiling);
      this.attempt = Math.min(this.attempt + 1, 20);
      // The first failure and every fifth after it: enough to see, not a flood during an outage.
      if (this.attempt === 1 || this.attempt % 5 === 0) this.opts.log(`control plane ${this.opts.url}: ${why}; retrying in ${Math.round(delay)} ms${this.configured ? ' (serving the last configuration meanwhile)' : ''}`);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
    const onUpgrade = (socket: Socket, head: Buffer): void => {
      upgraded = true;
      this.socket = socket;
      this.welcomed = false;
      this.refusal = null;
      this.secure = mtls !== null;
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 10_000);
      this.lastHeard = Date.now();
      let buffered = head.toString('utf8');
      socket.setEncoding('utf8');
      // Updates of one push arrive together or in pieces; they are applied together at its `push-end`.
      let updates: UpdateMessage[] = [];
      const drainLines = (): void => {
        let nl: number;
        while ((nl = buffered.indexOf('\n')) !== -1) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.length === 0) continue;
          let msg: ControlMessage;
          try {
            msg = JSON.parse(line) as ControlMessage;
          } catch {
            this.opts.log('control plane sent a line that is not JSON; reconnecting');
            socket.destroy();
            return;
          }
          if (msg.t === 'update') {
            updates.push(msg);
          } else if (msg.t === 'push-end') {
            // A proxy never serves a half-applied push, such as routes pointing at a cluster whose
            // removal came first, or endpoints withdrawn from a cluster the routes in force still use.
            const batch = updates;
            updates = [];
            if (batch.length > 0) this.onUpdates(batch);
          } else {
            this.onControl(msg);
          }
        }
      };
      socket.on('data', (chunk: string) => {
        this.lastHeard = Date.now();
        buffered += chunk;
        drainLines();
      });
      socket.on('error', () => {});
      socket.on('end', () => socket.destroy());
      socket.on('close', () => {
        if (this.heartbeat !== null) clearInterval(this.heartbeat);
        this.heartbeat = null;
        if (this.socket === socket) {
          this.socket = null;
          this.secure = false;
          // Taps belong to the stream: the control plane tells them again on the next one.
          this.opts.onTap?.([]);
        }
        retry(this.refusal !== null && !this.welcomed ? this.refusal : 'stream closed');
      });
      this.send({
        t: 'hello',
        workload: this.opts.workload,
        namespace: this.opts.namespace,
        register: this.opts.registration(),
        have: { ...this.versions },
        haveEndpoints: Object.fromEntries(this.clusterVersions),
        ...(this.opts.adminAddress !== undefined ? { admin: this.opts.adminAddress } : {}),
        // Every connect asks for a fresh certificate for a fresh key: after an outage the proxy is
        // certain to hold one from the root that signs now. Over mTLS the certificate is the credential.
        ...(this.opts.identity != null ? { ...(mtls === null ? { token: this.opts.identity.token } : {}), csr: this.opts.identity.holder.newCsr(null) } : {}),
      });
      drainLines();
      socket.resume();
    };
    const failed = (err: Error): void => retry(err instanceof HttpClientError ? err.message : ((err as NodeJS.ErrnoException).code ?? err.message));
    const open = (tls: ClientTls | null): void => {
      if (this.closed) return;
      upgradeRequest({ url, method: 'GET', timeoutMs: CONNECT_TIMEOUT_MS, tls }, STREAM_PROTOCOL).then(
        (res) => {
          if (!('socket' in res)) retry(`refused the stream with HTTP ${res.status}`);
          else if (this.closed) res.socket.destroy();
          else onUpgrade(res.socket, res.rest);
        },
        failed,
      );
    };
    if (mtls !== null || url.protocol !== 'https:') open(mtls);
    else {
      // The join over TLS: the server's root must match a pin first (checked on every attempt, so a rotation is followed).
      pinnedJoinTls(url, this.opts.pins ?? [], this.opts.trustDomain ?? null, CONNECT_TIMEOUT_MS).then(
        (p) => open(p.tls),
        (err: Error) => failed(err.name === 'PinMismatchError' ? new Error(`refused the server${this.opts.identity != null ? ', the join token was not sent' : ''}: ${err.message}`) : err),
      );
    }
  }

  /**
   * TLS settings for the stream over mutual TLS, when this proxy holds a certificate that has not expired;
   * null otherwise (then the token opens a plaintext stream). The server must prove the control plane's identity
   * in this proxy's trust domain, with a chain to a root of the proxy's bundle.
   */
  private mtlsOptions(): ClientTls | null {
    const holder = this.opts.identity?.holder;
    const tls = holder?.tlsOptions() ?? null;
    const id = holder?.spiffeId === null || holder?.spiffeId === undefined ? null : parseSpiffeId(holder.spiffeId);
    if (holder === undefined || tls === null || id === null || (holder.secondsLeft() ?? 0) <= 0) return null;
    return { ...tls, minVersion: 'TLSv1.3', checkServerIdentity: expectSpiffeId(controlPlaneId(id.trustDomain)) };
  }

  private send(msg: ProxyMessage): void {
    this.socket?.write(JSON.stringify(msg) + '\n');
  }

  /** Sends telemetry (a stats report, tap events, endpoint health) on the stream; false when there is none or it is backed up. */
  sendTelemetry(msg: Extract<ProxyMessage, { t: 'stats' | 'tap-events' | 'endpoint-health' }>): boolean {
    const s = this.socket;
    if (s === null || s.destroyed || s.writableLength > MAX_TELEMETRY_BACKLOG) return false;
    s.write(JSON.stringify(msg) + '\n');
    return true;
  }

  private onControl(msg: Exclude<ControlMessage, UpdateMessage>): void {
    switch (msg.t) {
      case 'welcome': {
        this.welcomed = true;
        this.attempt = 0;
        this.backoffCap = Math.min(this.opts.backoffMaxMs ?? 5000, Math.max(100, msg.leaseTtlMs / 3));
        if (this.heartbeat !== null) clearInterval(this.heartbeat);
        const every = Math.max(50, msg.heartbeatMs);
        this.heartbeat = setInterval(() => {
          // A link that went silent (no ping for three intervals) is dead even if it never closed.
          if (Date.now() - this.lastHeard > 3 * every) this.socket?.destroy();
          else this.send({ t: 'heartbeat' });
        }, every);
        this.heartbeat.unref();
        this.opts.log(`connected to control plane ${this.opts.url} as ${msg.proxyId}`);
        this.opts.onConnected?.();
        return;
      }
      case 'notice':
        // Before the welcome a notice says why the stream is refused: it is logged with the retry, not on every attempt.
        if (!this.welcomed) this.refusal = msg.message;
        else this.opts.log(`control plane: ${msg.message}`);
        return;
      case 'identity':
        this.onIdentity(msg.chain, msg.bundle);
        return;
      case 'identity-error':
        this.opts.log(`control plane refused a certificate: ${msg.error}`);
        return;
      case 'renew':
        this.renewNow();
        return;
      case 'tap':
        this.opts.onTap?.(Array.isArray(msg.taps) ? msg.taps : []);
        return;
      default:
        return;
    }
  }

  private onUpdates(updates: UpdateMessage[]): void {
    const next = { held: { ...this.held }, versions: { ...this.versions }, clusters: this.clusterVersions };
    const problems = new Map<UpdateMessage, string>();
    for (const u of updates) {
      const p = this.stage(next, u);
      if (p !== null) problems.set(u, p);
    }
    const good = updates.filter((u) => !problems.has(u));
    const error = good.length === 0 ? null : this.tryApply(next);
    if (error === null) {
      this.commit(next);
      for (const u of good) this.send({ t: 'ack', type: u.type, version: u.version });
    } else {
      // A push is refused as a whole: applying part of it could leave routes without their clusters.
      for (const u of good) problems.set(u, error);
    }
    for (const [u, why] of problems) {
      this.send({ t: 'nack', type: u.type, version: u.version, error: why });
      configRejected.publish({ source: this.opts.url, errors: [`${u.type} ${u.version}: ${why}`] });
    }
  }

  /** Puts an update into a staged state; returns why it cannot be, or null. */
  private stage(next: { held: Held; versions: Partial<Record<ConfigType, string>>; clusters: Map<string, string> }, u: UpdateMessage): string | null {
    if (typeof u.version !== 'string') return 'update without a version';
    switch (u.type) {
      case 'endpoints': {
        const have = next.versions.endpoints ?? null;
        if (u.base !== null && u.base !== have) return `base mismatch: the delta applies to ${u.base}, this proxy holds ${have ?? 'none'}`;
        const endpoints: Record<string, Endpoint[]> = u.base === null ? {} : { ...next.held.endpoints };
        const clusters = u.base === null ? new Map<string, string>() : new Map(next.clusters);
        for (const [name, c] of Object.entries(u.set ?? {})) {
          if (!Array.isArray(c?.endpoints)) return `endpoints of ${name}: not a list`;
          endpoints[name] = c.endpoints;
          clusters.set(name, c.version);
        }
        for (const name of u.removed ?? []) {
          delete endpoints[name];
          clusters.delete(name);
        }
        if (endpointsVersion(clusters) !== u.version) return `base mismatch: the endpoints after this delta are not version ${u.version}`;
        next.held.endpoints = endpoints;
        next.clusters = clusters;
        break;
      }
      case 'workload':
      case 'routes':
      case 'clusters':
        if (typeof u.value !== 'object' || u.value === null) return `${u.type}: no value`;
        (next.held as Record<string, unknown>)[u.type] = u.value;
        break;
      default:
        return `unknown config type ${JSON.stringify((u as { type: unknown }).type)}`;
    }
    next.versions[u.type] = u.version;
    return null;
  }

  /** Applies a staged state if it is complete; returns why the proxy refused it, or null. */
  private tryApply(next: { held: Held; versions: Partial<Record<ConfigType, string>> }): string | null {
    if (!CONFIG_TYPES.every((t) => next.held[t] !== undefined && next.versions[t] !== undefined)) return null; // not complete yet
    let snapshot: ProxySnapshot;
    try {
      snapshot = assembleSnapshot(next.held as ConfigParts, next.versions as Record<ConfigType, string>);
      this.opts.apply(snapshot);
    } catch (err) {
      return (err as Error).message;
    }
    configApplied.publish({ source: this.opts.url, version: snapshot.version });
    this.configured = true;
    return null;
  }

  private commit(next: { held: Held; versions: Partial<Record<ConfigType, string>>; clusters: Map<string, string> }): void {
    Object.assign(this.held, next.held);
    Object.assign(this.versions, next.versions);
    this.clusterVersions = next.clusters;
  }

  /** Closes the stream; with `bye`, first tells the control plane to release this workload's lease now. */
  private renewTimer: NodeJS.Timeout | null = null;

  private onIdentity(chain: string, bundle: string[]): void {
    const holder = this.opts.identity?.holder;
    if (holder === undefined) return;
    let serial: string;
    try {
      serial = holder.install(chain, bundle);
    } catch (err) {
      this.opts.log((err as Error).message);
      return;
    }
    this.send({ t: 'identity-ack', serial, bundle: holder.bundleVersion });
    if (!this.secure && this.socket !== null) {
      // Joined with the token: from now on the certificate carries the stream.
      this.opts.log('joined with the token; moving the config stream to mTLS');
      this.reconnectNow = true;
      this.socket.end();
    }
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    const at = holder.renewAt();
    if (at !== null) {
      this.renewTimer = setTimeout(() => this.renewNow(), Math.max(100, at - Date.now()));
      this.renewTimer.unref();
    }
  }

  /** Asks for a new certificate for a new key (the stream is what authenticates the request). */
  private renewNow(): void {
    const holder = this.opts.identity?.holder;
    if (holder === undefined || this.socket === null) return;
    this.send({ t: 'csr', csr: holder.newCsr(holder.spiffeId) });
  }

  /** Sends the registration again (it changed, e.g. the app's ports are now listening); the next connect's hello carries it anyway. */
  reregister(): void {
    const register = this.opts.registration();
    if (register !== null) this.send({ t: 'register', register });
  }

  async close(bye: boolean): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    const s = this.socket;
    if (s === null) return;
    if (bye) {
      this.send({ t: 'bye' });
      await new Promise<void>((r) => {
        s.end(r);
        setTimeout(r, 500).unref();
      });
    }
    s.destroy();
  }
}
