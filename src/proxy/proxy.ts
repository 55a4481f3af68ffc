/**
 * A proxy: its listeners (outbound HTTP, inbound HTTP, one per TCP upstream), the runtime built
 * from the configuration in force, the admin server, and drain on shutdown.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { adoptWithSharedReads } from './http1/shared-read.js';
import type { AddressInfo } from 'node:net';
import { proxyLifecycle, tcpConnectionFailed } from '../core/diagnostics.js';
import { TLS_HANDSHAKE, isH2Preface, onFirstByte, peekBytes } from '../core/first-byte.js';
import type { Http2Downstream, Http2ConnectTunnel } from './http2/server.js';
import { WeftHttp2Downstream, type WeftConnectTunnel } from './http2/downstream.js';
import { HTTP2_ENGINE } from './http2/upstream.js';
import type { ProxySnapshot } from '../model/snapshot.js';
import { startAdmin, type AdminServer } from './admin/admin-server.js';
import { ProxyMetrics, type OpenTcp } from './admin/metrics.js';
import { canonicalService } from './admin/peer-labels.js';
import { Http1ServerConnection, type ConnectTunnel, type Http1ServerOptions } from './http1/server.js';
import { defaultHeadLimits, type HeadLimits } from './http1/parse.js';
import type { Handler, ProxyRequest, RequestContext } from './message.js';
import { MeshError } from '../core/errors.js';
import { Runtime } from './runtime.js';
import { Telemetry } from './telemetry/telemetry.js';
import { TapRecorder } from './telemetry/tap.js';
import type { TapEvent } from '../model/golden-signals.js';
import { forwardTcp, type TcpForwarding } from './tcp/tcp-proxy.js';
import { InboundTunnels, acceptH2Tunnel, acceptTunnel, type TunnelOutcome } from './tcp/inbound-tunnel.js';
import { TunnelDialer } from './tcp/tunnel-client.js';
import { connectOutbound } from './tcp/outbound-connect.js';
import { DETECT_WAIT_MS, detectProtocol } from './listener/detect.js';
import { buildAuthorizer } from './authz/authorize.js';
import { meshErrorWire } from './local-reply.js';
import { PoolRegistry } from './upstream/pools.js';
import { HealthRegistry } from './upstream/health-registry.js';
import { RateLimitRegistry } from './ratelimit/inbound-limiter.js';
import type { PeerTransport } from './upstream/upstream-pool.js';
import type { ClusterEndpoint } from './upstream/cluster.js';
import type { WorkloadIdentity } from './tls/workload-identity.js';
import { uriSans } from '../core/identity/x509.js';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';

/** A local port that forwards to one TCP service: `--upstream <service>[.<ns>]:<port>=<localPort>`. */
export interface TcpUpstream {
  service: string;
  namespace: string;
  port: number;
  localPort: number;
}

/** How a proxy listens. Ports of 0 are chosen by the OS; null means no such listener. */
export interface ProxyOptions {
  bindAddress: string;
  outboundPort: number | null;
  inboundPort: number | null;
  adminPort: number;
  upstreams: TcpUpstream[];
  limits: HeadLimits;
  requestHeaderTimeoutMs: number;
  idleTimeoutMs: number;
  drainTimeoutMs: number;
  /** This proxy's certificate and trust bundle (from the control plane); null: no mTLS at all. */
  identity?: WorkloadIdentity | null;
  /** How HTTP/1.1 requests and TCP tunnels go to other proxies over mTLS (`--peer-transport`); default h2. */
  peerTransport?: PeerTransport;
  /** How long an `--upstream` port of an undeclared Service port waits for the client's first bytes (DETECT_WAIT_MS by default). */
  protocolDetectionMs?: number;
}

export const defaultProxyOptions: ProxyOptions = {
  bindAddress: '127.0.0.1',
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15000,
  upstreams: [],
  limits: defaultHeadLimits,
  requestHeaderTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  drainTimeoutMs: 30_000,
};

/** The ports a started proxy listens on. */
export interface ProxyPorts {
  outbound: number | null;
  inbound: number | null;
  admin: number;
  upstreams: Record<string, number>;
}

/**
 * Downstream HTTP/2 on node:http2 (`WEFT_HTTP2_ENGINE=node`) rather than Weft's own engine
 * (http2/downstream.ts), on every listener; node:http2 is loaded only then.
 */
const NODE_HTTP2_DOWNSTREAM = HTTP2_ENGINE === 'node';
const NodeHttp2Downstream = NODE_HTTP2_DOWNSTREAM ? (await import('./http2/server.js')).Http2Downstream : null;

/** The HTTP/2 side of a listener, either engine. */
type H2Downstream = Http2Downstream | WeftHttp2Downstream;

function tcpName(u: TcpUpstream): string {
  return `${u.service}.${u.namespace}:${u.port}`;
}

function notConfigured(req: ProxyRequest): Promise<never> {
  req.body?.abort(new Error('no configuration'));
  return Promise.reject(new MeshError('NO_CONFIGURATION', 'this proxy has not received its configuration yet'));
}

/** One proxy process's data plane. */
export class Proxy {
  private readonly opts: ProxyOptions;
  private runtime: Runtime | null = null;
  /** Where inbound TCP tunnels may go and who may open them, built with the runtime. */
  private tunnels: InboundTunnels | null = null;
  private readonly pools = new PoolRegistry();
  readonly metrics = new ProxyMetrics();
  /** Tracing and access logs (Mesh `spec.tracing`, `spec.accessLog`): `weft_trace_spans_total`, `weft_access_log_dropped_total`. */
  readonly telemetry = new Telemetry({
    spans: (target, result, n) => this.metrics.count(`weft_trace_spans_total{target="${target}",result="${result}"}`, n),
    accessLogDropped: () => this.metrics.count('weft_access_log_dropped_total'),
  });
  /** Where tap events go (the config stream, set by whoever connects it); false: they could not be sent. */
  tapSink: (events: Array<{ taps: string[]; event: TapEvent }>) => boolean = () => false;
  /** Tap (`weft tap`): the open taps the control plane told of; `weft_tap_events_total`. */
  readonly tap = new TapRecorder(
    (events) => this.tapSink(events),
    (result, n) => this.metrics.count(`weft_tap_events_total{result="${result}"}`, n),
  );
  private readonly servers: Server[] = [];
  private admin: AdminServer | null = null;
  /** Downstream HTTP connections (HTTP/1.1) and sessions (HTTP/2). */
  private readonly httpConns = new Set<{ drain(): void }>();
  private readonly tcpConns = new Set<Socket>();
  private draining = false;
  private listening = false;
  private appliedAt = '';
  private tlsServer: { generation: number; server: TlsServer } | null = null;
  /** Inbound mTLS connections, with the certificate generation they were accepted under. */
  private readonly tlsConns = new Map<{ drain(): void }, number>();
  /** HTTP/2 for each listener direction, made at start. */
  private readonly h2: Partial<Record<'inbound' | 'outbound', H2Downstream>> = {};

  /** Outbound TCP: tunnels through destination proxies, with the same client certificate as HTTP. */
  private readonly tcpForwarding: TcpForwarding;
  /** Endpoint health (outlier detection, active checks), kept across configurations; its `onChange` and `snapshot()` feed the health report. */
  readonly health: HealthRegistry;

  /** `weft_retries_total`, fed by the routes' retry layers. */
  private readonly countRetry = (destination: string, result: string): void => {
    this.metrics.count(`weft_retries_total{destination_service="${destination}",result="${result}"}`);
  };

  /** `weft_faults_injected_total`, fed by the routes' fault layers. */
  private readonly countFault = (route: string, kind: string): void => {
    this.metrics.count(`weft_faults_injected_total{route="${route}",kind="${kind}"}`);
  };

  /** Redis connections and token buckets of the inbound rate limits; `weft_rate_limited_total` and `weft_rate_limit_redis_errors_total`. */
  private readonly rateLimits = new RateLimitRegistry({
    limited: (destination, policy, scope) => this.metrics.count(`weft_rate_limited_total{destination_service="${destination}",policy="${policy}",scope="${scope}"}`),
    redisError: (reason) => this.metrics.count(`weft_rate_limit_redis_errors_total{reason="${reason}"}`),
  });

  /** `weft_mirrored_requests_total`, fed by the routes' RequestMirror filters. */
  private readonly countMirror = (route: string, result: string): void => {
    this.metrics.count(`weft_mirrored_requests_total{route="${route}",result="${result}"}`);
  };

  /** `weft_circuit_open_total`, fed by the clusters' circuit breakers. */
  private readonly countCircuitOpen = (destination: string, limit: string): void => {
    this.metrics.count(`weft_circuit_open_total{destination_service="${destination}",limit="${limit}"}`);
  };

  constructor(opts: ProxyOptions) {
    this.opts = opts;
    const identity = opts.identity ?? null;
    this.pools.clientContext = () => (identity !== null && this.mtlsMode() !== 'DISABLED' ? identity.clientContext : null);
    this.pools.peerTransport = opts.peerTransport ?? 'h2';
    this.tcpForwarding = {
      // Every CONNECT names this proxy's service, as HTTP requests do (ClusterRuntime.sourceService).
      dialer: new TunnelDialer(() => this.pools.clientContext(), () => this.selfService),
      report: (o) => {
        this.metrics.count(`weft_outbound_tcp_connections_total{destination_service="${o.service}",transport="${o.transport ?? 'none'}",error_code="${o.errorCode}"}`);
        if (o.client !== undefined) this.countTcp('outbound', this.selfService, o.service.slice(0, o.service.lastIndexOf(':')), o.transport === 'mtls', o.client, false);
        if (o.errorCode !== '') tcpConnectionFailed.publish({ direction: 'outbound', service: o.service, endpoint: o.endpoint, transport: o.transport, code: o.errorCode, message: o.message });
      },
      idleClosed: (service) => this.metrics.count(`weft_tcp_idle_timeouts_total{destination_service="${service}"}`),
    };
    this.health = new HealthRegistry(
      {
        ejection: (destination, reason, enforced) =>
          this.metrics.count(`weft_outlier_ejections${enforced ? '' : '_skipped'}_total{destination_service="${destination}",reason="${reason}"}`),
        check: (destination, passed) => this.metrics.count(`weft_health_checks_total{destination_service="${destination}",result="${passed ? 'success' : 'failure'}"}`),
      },
      this.tcpForwarding.dialer,
    );
    // Connections authenticated with a certificate or root that was just replaced are drained (each
    // finishes its exchange, then closes), so trust follows renewals and rotations, not only new callers.
    if (identity !== null) identity.onChange = () => this.drainTlsBefore(identity.generation);
    this.tap.onActive = (active) => (this.telemetry.tapping = active);
  }

  /** The mesh's mTLS mode as this proxy's configuration says; STRICT until the first configuration. */
  private mtlsMode(): 'STRICT' | 'PERMISSIVE' | 'DISABLED' {
    return this.runtime?.snapshot.inbound.mtlsMode ?? 'STRICT';
  }

  /** The configuration in force, or null before the first. */
  get snapshot(): ProxySnapshot | null {
    return this.runtime?.snapshot ?? null;
  }

  /**
   * Swaps in a new configuration; throws, keeping the one in force, when this proxy cannot apply it
   * (a local TCP port whose service is gone, a route to a cluster that is not defined).
   * Requests in flight finish on the old one.
   */
  apply(snapshot: ProxySnapshot): void {
    for (const u of this.opts.upstreams) {
      const name = tcpName(u);
      const t = snapshot.tcpServices.find((x) => x.name === name);
      if (t === undefined) {
        throw new Error(`--upstream ${u.service}:${u.port} listens on local port ${u.localPort}, but the configuration has no TCP service ${name} (a port declared TCP, or one that declares no protocol)`);
      }
      if (t.detect === true && !snapshot.virtualHosts.some((v) => v.name === t.virtualHost)) {
        throw new Error(`TCP service ${name} detects HTTP for virtual host ${t.virtualHost ?? '(none)'}, which the configuration does not define`);
      }
    }
    const clusters = new Set(snapshot.clusters.map((c) => c.name));
    for (const vh of snapshot.virtualHosts) {
      for (const r of vh.routes) {
        if (r.action.type !== 'forward') continue;
        for (const b of r.action.backends) if (b.cluster !== null && !clusters.has(b.cluster)) throw new Error(`route ${r.name} sends to cluster ${b.cluster}, which the configuration does not define`);
      }
    }
    for (const t of snapshot.tcpServices) {
      for (const b of t.backends) if (b.cluster !== null && !clusters.has(b.cluster)) throw new Error(`TCP service ${t.name} sends to cluster ${b.cluster}, which the configuration does not define`);
    }
    const next = new Runtime(snapshot, this.pools, this.countRetry, this.countCircuitOpen, this.countFault, this.rateLimits, this.countMirror);
    const tunnels = new InboundTunnels(snapshot.inbound, buildAuthorizer(snapshot.inbound.authorization));
    this.runtime = next;
    this.telemetry.apply(snapshot);
    this.tunnels = tunnels;
    this.selfService = canonicalService(snapshot.workload);
    this.selfIdentity = this.opts.identity != null ? snapshot.workload.identity : '';
    this.health.apply(next.clusters);
    this.appliedAt = new Date().toISOString();
    this.pools.retainOnly(next.pools);
    this.rateLimits.retainOnly(next.rateLimiter);
  }

  private readonly outbound: Handler = (req, ctx) => (this.runtime === null ? notConfigured(req) : this.telemetry.handle(req, ctx, this.runtime.outbound));
  private readonly inbound: Handler = (req, ctx) => (this.runtime === null ? notConfigured(req) : this.telemetry.handle(req, ctx, this.runtime.inbound));

  /** Metrics labels of this proxy's own side (admin/peer-labels.ts): its canonical service, and its SPIFFE ID when it has an identity. */
  private selfService = '';
  private selfIdentity = '';

  private readonly onExchange = (ctx: RequestContext, status: number, _errorCode: string, grpcStatus = ''): void => {
    if (ctx.direction === 'inbound') this.metrics.request(ctx, ctx.sourceService, ctx.peerIdentity ?? '', this.selfIdentity, ctx.peerIdentity !== null, status, grpcStatus);
    else this.metrics.request(ctx, this.selfService, this.selfIdentity, ctx.destinationIdentity, ctx.destinationIdentity !== '' && this.selfIdentity !== '' && this.mtlsMode() !== 'DISABLED', status, grpcStatus);
    if (ctx.telemetry === undefined) return;
    this.telemetry.finish(ctx, status, ctx.errorCode, grpcStatus);
    if (!this.tap.active) return;
    if (ctx.direction === 'inbound') this.tap.record(ctx, ctx.telemetry, status, grpcStatus, ctx.sourceService, ctx.peerIdentity, ctx.peerIdentity !== null);
    else this.tap.record(ctx, ctx.telemetry, status, grpcStatus, this.selfService, this.selfIdentity, ctx.destinationIdentity !== '' && this.selfIdentity !== '' && this.mtlsMode() !== 'DISABLED');
  };

  /**
   * `weft_tcp_*`: a TCP connection joined to its destination; its bytes count as they move. `socket`
   * faces the client, or (`appSide`) the app, whose reads are the bytes sent to the client.
   */
  private countTcp(direction: 'inbound' | 'outbound', source: string, destination: string, mtls: boolean, socket: Socket, appSide: boolean): void {
    const conn: OpenTcp = appSide ? { received: () => socket.bytesWritten, sent: () => socket.bytesRead } : { received: () => socket.bytesRead, sent: () => socket.bytesWritten };
    const s = this.metrics.tcpOpened(direction, source, destination, mtls, conn);
    socket.once('close', () => this.metrics.tcpClosed(s, conn));
  }

  /** An inbound connection turned into a TCP tunnel at its CONNECT: it now counts as TCP, not HTTP. */
  private readonly onTunnel = (t: ConnectTunnel): void => {
    this.httpConns.delete(t.from);
    this.tlsConns.delete(t.from);
    this.tcpConns.add(t.socket);
    acceptTunnel(t, this.tunnels, this.reportTunnel, () => this.tcpConns.delete(t.socket));
  };

  /** An outbound connection turned into a TCP tunnel at its CONNECT (an app's HTTPS_PROXY): it now counts as TCP. */
  private readonly onOutboundConnect = (t: ConnectTunnel): void => {
    this.httpConns.delete(t.from);
    this.tcpConns.add(t.socket);
    connectOutbound(t, this.runtime?.connectTargets ?? null, this.tcpForwarding, () => this.tcpConns.delete(t.socket));
  };

  /** The app side of an HTTP/2 tunnel counts as a TCP connection while open (and is cut at the end of a drain). */
  private readonly trackTunnelApp = (app: Socket): void => {
    this.tcpConns.add(app);
    app.once('close', () => this.tcpConns.delete(app));
  };

  private readonly reportTunnel = (o: TunnelOutcome): void => {
    this.metrics.count(`weft_inbound_tcp_connections_total{security="${o.security}",result="${o.result}",policy="${o.policy}"}`);
    if (o.app !== undefined) this.countTcp('inbound', o.source, this.selfService, o.security === 'mtls', o.app, true);
  };

  /**
   * Binds every listener and the admin server. Before the first configuration, requests are answered
   * 503 NO_CONFIGURATION, TCP connections are closed, and /ready says not ready.
   */
  async start(): Promise<ProxyPorts> {
    const o = this.opts;
    const httpOpts = (direction: 'inbound' | 'outbound'): Http1ServerOptions => ({
      direction,
      limits: o.limits,
      requestHeaderTimeoutMs: o.requestHeaderTimeoutMs,
      idleTimeoutMs: o.idleTimeoutMs,
      onExchange: this.onExchange,
      connect: direction === 'inbound' ? this.onTunnel : this.onOutboundConnect,
    });
    for (const direction of ['inbound', 'outbound'] as const) {
      const handler = direction === 'inbound' ? this.inbound : this.outbound;
      if (NodeHttp2Downstream === null) {
        this.h2[direction] = new WeftHttp2Downstream(() => handler, {
          direction,
          idleTimeoutMs: o.idleTimeoutMs,
          maxHeaderListSize: o.limits.maxHeadBytes,
          onExchange: this.onExchange,
          // TCP tunnels from peer proxies as HTTP/2 CONNECT streams (the h2 peer transport): decided as HTTP/1.1 ones.
          ...(direction === 'inbound' ? { connect: (t: WeftConnectTunnel) => acceptH2Tunnel(t, this.tunnels, this.reportTunnel, this.trackTunnelApp) } : {}),
        });
        continue;
      }
      this.h2[direction] = new NodeHttp2Downstream(() => handler, {
        direction,
        idleTimeoutMs: o.idleTimeoutMs,
        maxHeaderListSize: o.limits.maxHeadBytes,
        onExchange: this.onExchange,
        // TCP tunnels from peer proxies as HTTP/2 CONNECT streams (the h2 peer transport): decided as HTTP/1.1 ones.
        ...(direction === 'inbound' ? { connect: (t: Http2ConnectTunnel) => acceptH2Tunnel(t, this.tunnels, this.reportTunnel, this.trackTunnelApp) } : {}),
      });
    }
    const ports: ProxyPorts = { outbound: null, inbound: null, admin: 0, upstreams: {} };
    if (o.outboundPort !== null) ports.outbound = await this.listenHttp(o.outboundPort, this.outbound, httpOpts('outbound'));
    if (o.inboundPort !== null) ports.inbound = await this.listenInbound(o.inboundPort, this.inbound, httpOpts('inbound'));
    for (const u of o.upstreams) {
      const name = tcpName(u);
      // No CONNECT on these (501): the port already names its service.
      ports.upstreams[name] = await this.listen(u.localPort, this.upstreamPort(name, { ...httpOpts('outbound'), connect: undefined }));
    }
    this.admin = await startAdmin(o.adminPort, {
      // With an identity to get, ready means holding the certificate too (unless mTLS is off).
      ready: () => this.listening && !this.draining && this.runtime !== null && (this.opts.identity == null || this.opts.identity.ready || this.mtlsMode() === 'DISABLED'),
      metrics: () => this.metrics.render(this.gauges()),
      configDump: () => ({ appliedAt: this.appliedAt, identity: this.opts.identity?.status() ?? null, snapshot: this.runtime?.snapshot ?? null }),
      clusters: () => this.clusterState(),
      drain: () => void this.drain(),
    });
    ports.admin = this.admin.port;
    this.listening = true;
    proxyLifecycle.publish({ event: 'listening', detail: ports });
    return ports;
  }

  /**
   * Connections to an `--upstream` local port: opaque TCP to the service; or, when its Service port
   * declares no protocol, first protocol detection (src/proxy/listener/detect.ts): HTTP/1 and
   * HTTP/2 are served through the port's virtual host whatever their authority, the rest is TCP.
   */
  private upstreamPort(name: string, http1: Http1ServerOptions): (socket: Socket) => void {
    const detectedHttp: Handler = (req, ctx) => {
      if (this.runtime === null) return notConfigured(req);
      const http = this.runtime.tcp.get(name)?.http ?? null;
      if (http !== null) return http(req, ctx);
      req.body?.abort(new Error('no route'));
      return Promise.reject(new MeshError('NO_ROUTE', `${name} is no longer a port that takes HTTP here`));
    };
    const h2Opts = { direction: 'outbound', idleTimeoutMs: this.opts.idleTimeoutMs, maxHeaderListSize: this.opts.limits.maxHeadBytes, onExchange: this.onExchange } as const;
    const h2 = NodeHttp2Downstream !== null ? new NodeHttp2Downstream(() => detectedHttp, h2Opts) : new WeftHttp2Downstream(() => detectedHttp, h2Opts);
    return (socket) => {
      const target = this.runtime?.tcp.get(name);
      this.tcpConns.add(socket);
      const opaque = (first: Buffer | null): void => forwardTcp(socket, name, () => target?.pickCluster() ?? null, this.tcpForwarding, () => this.tcpConns.delete(socket), undefined, first);
      if (target?.service.detect !== true) return opaque(null);
      socket.once('close', () => this.tcpConns.delete(socket));
      detectProtocol(socket, this.opts.protocolDetectionMs ?? DETECT_WAIT_MS, (d) => {
        this.metrics.count(`weft_protocol_detected_total{destination_service="${name}",protocol="${d.protocol}",reason="${d.reason}"}`);
        if (d.protocol !== 'http1' && d.protocol !== 'h2') return opaque(d.sentBeforeEnd);
        this.tcpConns.delete(socket);
        if (d.protocol === 'h2') return this.serveHttp2(socket, 'outbound', null, null, h2);
        this.serveHttp(socket, detectedHttp, http1, null);
        socket.resume();
      });
    };
  }

  private listenHttp(port: number, handler: Handler, opts: Http1ServerOptions): Promise<number> {
    return this.listen(port, (socket) => this.servePlaintext(adoptWithSharedReads(socket, true), handler, opts), true);
  }

  /** A plaintext HTTP connection: HTTP/2 when it opens with the preface (prior knowledge), else HTTP/1.1. */
  private servePlaintext(socket: Socket, handler: Handler, opts: Http1ServerOptions): void {
    peekBytes(socket, 3, this.opts.requestHeaderTimeoutMs, (head) => {
      // HTTP/2 reads the bytes put back itself (Node feeds a socket's buffered bytes to the session).
      if (isH2Preface(head)) return this.serveHttp2(socket, opts.direction, null, null);
      this.serveHttp(socket, handler, opts, null);
      socket.resume();
    });
  }

  private serveHttp2(socket: Socket, direction: 'inbound' | 'outbound', peerIdentity: string | null, tlsGeneration: number | null, downstream = this.h2[direction]!): void {
    const conn = downstream.accept(socket, peerIdentity);
    this.httpConns.add(conn);
    if (tlsGeneration !== null) this.tlsConns.set(conn, tlsGeneration);
    // The socket closes with the session, whichever engine serves it.
    socket.once('close', () => {
      this.httpConns.delete(conn);
      this.tlsConns.delete(conn);
    });
    if (this.draining) conn.drain();
  }

  private serveHttp(socket: Socket, handler: Handler, opts: Http1ServerOptions, peerIdentity: string | null, tlsGeneration: number | null = null): void {
    const conn = new Http1ServerConnection(socket, handler, opts, peerIdentity);
    this.httpConns.add(conn);
    if (tlsGeneration !== null) this.tlsConns.set(conn, tlsGeneration);
    socket.once('close', () => {
      this.httpConns.delete(conn);
      this.tlsConns.delete(conn);
    });
    if (this.draining) conn.drain();
  }

  private drainTlsBefore(generation: number): void {
    for (const [conn, g] of this.tlsConns) if (g < generation) conn.drain();
  }

  /**
   * The inbound listener: mutual TLS from other proxies, plaintext only where the mTLS mode allows it.
   * The first byte tells them apart (a TLS record starts with 0x16, a handshake).
   */
  private listenInbound(port: number, handler: Handler, opts: Http1ServerOptions): Promise<number> {
    const identity = this.opts.identity ?? null;
    return this.listen(port, (socket) => {
      if (identity === null || this.mtlsMode() === 'DISABLED') return this.servePlaintext(socket, handler, opts);
      onFirstByte(socket, this.opts.requestHeaderTimeoutMs, (first) => {
        if (first === TLS_HANDSHAKE) return this.acceptTls(socket, identity, handler, opts);
        if (this.mtlsMode() === 'STRICT') return this.refusePlaintext(socket);
        this.metrics.count('weft_inbound_connections_total{security="plaintext"}');
        this.servePlaintext(socket, handler, opts);
      });
    });
  }

  /**
   * The TLS side of the inbound listener: a `tls.Server` that never listens, handed the connections
   * that start with a handshake. It is rebuilt when the certificate changes; handshakes under way
   * finish on the one they started with.
   */
  private tlsServerFor(identity: WorkloadIdentity, handler: Handler, opts: Http1ServerOptions): TlsServer | null {
    if (this.tlsServer !== null && this.tlsServer.generation === identity.generation) return this.tlsServer.server;
    const options = identity.tlsOptions();
    if (options === null) return null;
    // requestCert without rejectUnauthorized: the chain check's verdict is read below, so every
    // refusal is counted with its reason.
    // ALPN: `h2` multiplexes a peer proxy's requests on one connection; `http/1.1` is one exchange at a time.
    const server = createTlsServer({ ...options, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] });
    const generation = identity.generation;
    server.on('secureConnection', (tls: TLSSocket) => {
      if (!tls.authorized) {
        const code = String(tls.authorizationError ?? 'NO_CERTIFICATE');
        this.metrics.count(`weft_inbound_connections_total{security="refused",reason="${tlsReason(Object.assign(new Error(code), { code }))}"}`);
        tls.destroy();
        return;
      }
      const peer = tls.getPeerX509Certificate();
      const ids = peer === undefined ? [] : uriSans(peer);
      this.metrics.count('weft_inbound_connections_total{security="mtls"}');
      const peerId = ids.length === 1 ? ids[0]! : null;
      if (tls.alpnProtocol === 'h2') this.serveHttp2(tls as unknown as Socket, 'inbound', peerId, generation);
      else this.serveHttp(tls, handler, opts, peerId, generation);
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException, tls: TLSSocket) => {
      this.metrics.count(`weft_inbound_connections_total{security="refused",reason="${tlsReason(err)}"}`);
      tls.destroy();
    });
    this.tlsServer = { generation, server };
    return server;
  }

  private acceptTls(socket: Socket, identity: WorkloadIdentity, handler: Handler, opts: Http1ServerOptions): void {
    const server = this.tlsServerFor(identity, handler, opts);
    if (server === null) {
      // No certificate yet: nothing to answer a handshake with.
      this.metrics.count('weft_inbound_connections_total{security="refused",reason="no_certificate"}');
      socket.destroy();
      return;
    }
    server.emit('connection', socket);
  }

  /** A plaintext caller of a STRICT inbound gets one readable answer, then the connection closes. */
  private refusePlaintext(socket: Socket): void {
    this.metrics.count('weft_inbound_connections_total{security="refused",reason="plaintext"}');
    socket.on('error', () => socket.destroy());
    socket.end(meshErrorWire(new MeshError('MTLS_REQUIRED', 'this inbound listener accepts only mutual TLS from mesh proxies (mTLS mode STRICT)')));
  }

  /** `paused`: connections arrive with nothing read yet (for `adoptWithSharedReads`). */
  private listen(port: number, onConnection: (s: Socket) => void, paused = false): Promise<number> {
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: paused }, onConnection);
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.opts.bindAddress, () => resolve((server.address() as AddressInfo).port));
    });
  }

  private gauges(): string[] {
    const out = ['# HELP weft_upstream_requests_active Requests in flight to each endpoint.', '# TYPE weft_upstream_requests_active gauge'];
    for (const c of this.runtime?.clusters.values() ?? []) {
      for (const e of c.endpoints) out.push(`weft_upstream_requests_active{cluster="${c.config.name}",endpoint="${e.pool.key}"} ${e.pool.active}`);
    }
    out.push('# HELP weft_cluster_requests_active Requests in flight to each cluster (what the circuit breaker counts).', '# TYPE weft_cluster_requests_active gauge');
    for (const c of this.runtime?.clusters.values() ?? []) out.push(`weft_cluster_requests_active{cluster="${c.config.name}"} ${c.breaker.requests}`);
    const left = this.opts.identity?.secondsLeft() ?? null;
    if (left !== null) out.push('# HELP weft_certificate_expiry_seconds Seconds until this proxy\'s certificate expires.', '# TYPE weft_certificate_expiry_seconds gauge', `weft_certificate_expiry_seconds ${left.toFixed(0)}`);
    out.push(...this.health.gauges());
    out.push(...this.rateLimits.gauges());
    out.push('# HELP weft_downstream_connections_active Client connections open now, HTTP or TCP.', '# TYPE weft_downstream_connections_active gauge', `weft_downstream_connections_active{protocol="http"} ${this.httpConns.size}`, `weft_downstream_connections_active{protocol="tcp"} ${this.tcpConns.size}`);
    return out;
  }

  /** An endpoint's health for `/clusters`: HEALTHY, EJECTED or FAILING_HEALTH_CHECKS, with the details. */
  private healthOf(cluster: string, e: ClusterEndpoint): object {
    const v = this.health.view(cluster, e);
    if (v === null) return { health: 'HEALTHY' };
    return { health: v.ejectedUntil !== null ? 'EJECTED' : v.failingHealthChecks ? 'FAILING_HEALTH_CHECKS' : 'HEALTHY', ...v };
  }

  private clusterState(): unknown {
    return [...(this.runtime?.clusters.values() ?? [])].map((c) => ({
      name: c.config.name,
      loadBalancer: c.config.loadBalancer,
      connectTimeoutMs: c.config.connectTimeoutMs,
      endpoints: c.endpoints.map((e) => ({
        workload: e.endpoint.workload,
        address: e.pool.key,
        proxied: e.endpoint.proxied,
        ...this.healthOf(c.config.name, e),
        activeRequests: e.pool.active,
        totalRequests: e.pool.total,
        connectFailures: e.pool.connectFailures,
        idleConnections: e.pool.idleCount,
      })),
    }));
  }

  /**
   * Stops accepting, lets every exchange in flight finish, then closes. Resolves when all
   * connections are gone or the drain timeout has passed (the rest are then cut).
   */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    proxyLifecycle.publish({ event: 'draining', detail: { http: this.httpConns.size, tcp: this.tcpConns.size } });
    for (const s of this.servers) s.close();
    for (const c of this.httpConns) c.drain();
    const deadline = Date.now() + this.opts.drainTimeoutMs;
    while ((this.httpConns.size > 0 || this.tcpConns.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const s of this.tcpConns) s.destroy();
    await this.stop();
  }

  /** Closes everything now. */
  async stop(): Promise<void> {
    for (const s of this.servers) s.close();
    await this.telemetry.close();
    this.health.close();
    this.pools.closeAll();
    this.rateLimits.close();
    const admin = this.admin;
    this.admin = null;
    if (admin !== null) await admin.close();
    proxyLifecycle.publish({ event: 'stopped', detail: null });
  }
}

/** A short label for why a TLS handshake failed, for the refused-connections metric. */
function tlsReason(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  if (code === 'CERT_HAS_EXPIRED') return 'expired';
  if (/UNABLE_TO_GET_ISSUER|SELF_SIGNED|UNABLE_TO_VERIFY|CERT_SIGNATURE_FAILURE/.test(code)) return 'untrusted';
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED|NO_CERTIFICATE/.test(code) || /certificate required|did not return a certificate/i.test(err.message)) return 'no_client_certificate';
  return 'handshake';
}
