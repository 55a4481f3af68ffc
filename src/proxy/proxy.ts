/**
 * A proxy: its listeners (outbound HTTP, inbound HTTP, one per TCP upstream), the runtime built
 * from the configuration in force, the admin server, and drain on shutdown.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import { proxyLifecycle } from '../core/diagnostics.js';
import type { ProxySnapshot } from '../model/snapshot.js';
import { startAdmin } from './admin/admin-server.js';
import { ProxyMetrics } from './admin/metrics.js';
import { Http1ServerConnection, type Http1ServerOptions } from './http1/server.js';
import { defaultHeadLimits, type HeadLimits } from './http1/parse.js';
import type { Handler, ProxyRequest, RequestContext } from './message.js';
import { MeshError } from '../core/errors.js';
import { Runtime } from './runtime.js';
import { forwardTcp } from './tcp/tcp-proxy.js';
import { PoolRegistry } from './upstream/pools.js';

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
  private readonly pools = new PoolRegistry();
  readonly metrics = new ProxyMetrics();
  private readonly servers: Server[] = [];
  private admin: HttpServer | null = null;
  private readonly httpConns = new Set<Http1ServerConnection>();
  private readonly tcpConns = new Set<Socket>();
  private draining = false;
  private listening = false;
  private appliedAt = '';

  constructor(opts: ProxyOptions) {
    this.opts = opts;
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
      if (!snapshot.tcpServices.some((t) => t.name === name)) {
        throw new Error(`--upstream ${u.service}:${u.port} listens on local port ${u.localPort}, but the configuration has no TCP service ${name}`);
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
    const next = new Runtime(snapshot, this.pools);
    this.runtime = next;
    this.appliedAt = new Date().toISOString();
    this.pools.retainOnly(next.pools);
  }

  private readonly outbound: Handler = (req, ctx) => (this.runtime === null ? notConfigured(req) : this.runtime.outbound(req, ctx));
  private readonly inbound: Handler = (req, ctx) => (this.runtime === null ? notConfigured(req) : this.runtime.inbound(req, ctx));

  private readonly onExchange = (ctx: RequestContext, status: number, errorCode: string): void => {
    this.metrics.request(ctx.direction, ctx.destination, ctx.route, status, errorCode, (performance.now() - ctx.start) / 1000);
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
    });
    const ports: ProxyPorts = { outbound: null, inbound: null, admin: 0, upstreams: {} };
    if (o.outboundPort !== null) ports.outbound = await this.listenHttp(o.outboundPort, this.outbound, httpOpts('outbound'));
    if (o.inboundPort !== null) ports.inbound = await this.listenHttp(o.inboundPort, this.inbound, httpOpts('inbound'));
    for (const u of o.upstreams) {
      const name = tcpName(u);
      ports.upstreams[name] = await this.listen(u.localPort, (socket) => {
        const target = this.runtime?.tcp.get(name);
        this.tcpConns.add(socket);
        forwardTcp(socket, () => target?.pickCluster() ?? null, () => this.tcpConns.delete(socket));
      });
    }
    this.admin = await startAdmin(o.adminPort, {
      ready: () => this.listening && !this.draining && this.runtime !== null,
      metrics: () => this.metrics.render(this.gauges()),
      configDump: () => ({ appliedAt: this.appliedAt, snapshot: this.runtime?.snapshot ?? null }),
      clusters: () => this.clusterState(),
      drain: () => void this.drain(),
    });
    ports.admin = (this.admin.address() as AddressInfo).port;
    this.listening = true;
    proxyLifecycle.publish({ event: 'listening', detail: ports });
    return ports;
  }

  private listenHttp(port: number, handler: Handler, opts: Http1ServerOptions): Promise<number> {
    return this.listen(port, (socket) => {
      const conn = new Http1ServerConnection(socket, handler, opts);
      this.httpConns.add(conn);
      socket.once('close', () => this.httpConns.delete(conn));
      if (this.draining) conn.drain();
    });
  }

  private listen(port: number, onConnection: (s: Socket) => void): Promise<number> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, onConnection);
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.opts.bindAddress, () => resolve((server.address() as AddressInfo).port));
    });
  }

  private gauges(): string[] {
    const out = ['# TYPE weft_upstream_requests_active gauge'];
    for (const c of this.runtime?.clusters.values() ?? []) {
      for (const e of c.endpoints) out.push(`weft_upstream_requests_active{cluster="${c.config.name}",endpoint="${e.pool.key}"} ${e.pool.active}`);
    }
    out.push('# TYPE weft_downstream_connections_active gauge', `weft_downstream_connections_active{protocol="http"} ${this.httpConns.size}`, `weft_downstream_connections_active{protocol="tcp"} ${this.tcpConns.size}`);
    return out;
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
        health: 'HEALTHY',
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
    this.pools.closeAll();
    const admin = this.admin;
    this.admin = null;
    if (admin !== null) {
      admin.closeAllConnections();
      await new Promise((r) => admin.close(r));
    }
    proxyLifecycle.publish({ event: 'stopped', detail: null });
  }
}
