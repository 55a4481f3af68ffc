/**
 * Active health checks of one cluster's endpoints: each endpoint is probed every `interval` (plus
 * up to 10 % jitter, so many proxies do not probe in step), the way traffic reaches it — an HTTP
 * GET through its pool (over mTLS to its proxy when it has one, with the app port named as for a
 * request), or a TCP connect (a tunnel through its proxy, or straight to the app). An endpoint
 * fails its checks after `unhealthyThreshold` failures in a row and is back after
 * `healthyThreshold` passes in a row.
 */
import { connect } from 'node:net';
import type { HealthCheck } from '../../model/snapshot.js';
import { abortContext, getHeader, HEALTH_CHECK_ROUTE, newRequestContext, type ProxyRequest } from '../message.js';
import type { TunnelDialer } from '../tcp/tunnel-client.js';
import { APP_PORT_HEADER, type ClusterEndpoint } from './cluster.js';
import type { EndpointHealth } from './health-state.js';

/** What a checker needs of its cluster. */
export interface CheckerDeps {
  /** The endpoint as the configuration in force reaches it (its pool), or undefined once it is gone. */
  target(e: EndpointHealth): ClusterEndpoint | undefined;
  dialer: TunnelDialer;
  /** The cluster's name, `<service>.<namespace>:<port>`: the `weft-service` of a TCP check's tunnel. */
  cluster: string;
  /** The Host of an HTTP check: `<service>.<namespace>`. */
  authority: string;
  /** An endpoint started or stopped failing its checks. */
  changed(): void;
  /** One check ended: `weft_health_checks_total{result}`. */
  checked(passed: boolean): void;
}

/** The user agent of HTTP checks, so apps can tell them from traffic. */
const USER_AGENT = 'weft-health-check';
/** The most response body bytes an HTTP check reads before it lets the connection go. */
const MAX_BODY = 64 * 1024;

export class HealthChecker {
  readonly config: HealthCheck;
  private readonly deps: CheckerDeps;
  private readonly endpoints = new Set<EndpointHealth>();
  private closed = false;

  constructor(config: HealthCheck, deps: CheckerDeps) {
    this.config = config;
    this.deps = deps;
  }

  /** Starts checking `e`: the first check soon (within a second, jittered), then every interval. */
  add(e: EndpointHealth): void {
    if (this.endpoints.has(e) || this.closed) return;
    this.endpoints.add(e);
    e.checkPasses = e.checkFailures = 0;
    this.schedule(e, Math.random() * Math.min(this.config.intervalMs, 1000));
  }

  /** Stops checking `e`; it no longer fails checks. */
  remove(e: EndpointHealth): void {
    if (!this.endpoints.delete(e)) return;
    if (e.checkTimer !== null) clearTimeout(e.checkTimer);
    e.checkTimer = null;
    e.failingChecks = false;
  }

  close(): void {
    this.closed = true;
    for (const e of [...this.endpoints]) this.remove(e);
  }

  private schedule(e: EndpointHealth, ms: number): void {
    e.checkTimer = setTimeout(() => {
      e.checkTimer = null;
      void this.run(e);
    }, ms);
    e.checkTimer.unref();
  }

  private async run(e: EndpointHealth): Promise<void> {
    if (!this.endpoints.has(e)) return;
    const target = this.deps.target(e);
    if (target === undefined) return this.schedule(e, this.config.intervalMs);
    const problem = await this.probe(target);
    // Removed (or the checker closed) while the probe was out: its verdict no longer matters.
    if (!this.endpoints.has(e)) return;
    const passed = problem === null;
    e.lastCheck = { at: Date.now(), passed, detail: problem ?? '' };
    this.deps.checked(passed);
    const c = this.config;
    if (passed) {
      e.checkFailures = 0;
      e.checkPasses++;
      if (e.failingChecks && e.checkPasses >= c.healthyThreshold) {
        e.failingChecks = false;
        this.deps.changed();
      }
    } else {
      e.checkPasses = 0;
      e.checkFailures++;
      if (!e.failingChecks && e.checkFailures >= c.unhealthyThreshold) {
        e.failingChecks = true;
        this.deps.changed();
      }
    }
    this.schedule(e, c.intervalMs * (1 + Math.random() * 0.1));
  }

  /** One check of `target`: null when it passed, else what went wrong. */
  probe(target: ClusterEndpoint): Promise<string | null> {
    return this.config.probe.type === 'http' ? this.probeHttp(target, this.config.probe.path, this.config.probe.expectedStatuses) : this.probeTcp(target);
  }

  private async probeHttp(target: ClusterEndpoint, path: string, expected: readonly number[]): Promise<string | null> {
    const headers = ['user-agent', USER_AGENT];
    if (target.appPortHeader !== null) headers.push(APP_PORT_HEADER, target.appPortHeader);
    const req: ProxyRequest = { method: 'GET', path, authority: this.deps.authority, headers, body: null };
    const ctx = newRequestContext({ direction: 'outbound', route: HEALTH_CHECK_ROUTE, destination: this.deps.authority });
    const timeoutMs = this.config.timeoutMs;
    // The timeout covers the whole check, body included: an endpoint that sends a head and then
    // stalls must neither pass nor keep a stream.
    const timer = setTimeout(() => abortContext(ctx, new Error(`health check timed out after ${timeoutMs} ms`)), timeoutMs);
    try {
      const res = await target.pool.request(req, ctx, timeoutMs);
      // The mesh's own rate limit refusing the probe says the endpoint is up and busy, not down.
      const limited = res.status === 429 && getHeader(res.headers, 'weft-error') === 'RATE_LIMITED';
      const ok = limited || (expected.length === 0 ? res.status >= 200 && res.status < 300 : expected.includes(res.status));
      const body = res.body;
      if (body !== null) {
        ctx.abortHandlers.push((err) => body.abort(err));
        // Read (a bounded amount of) the body so the connection goes back to the pool.
        await new Promise<void>((resolve) => {
          body.onSettled(resolve);
          let size = 0;
          body.pipe({
            data: (chunk) => {
              size += chunk.length;
              if (size > MAX_BODY) body.abort(new Error('health check body too large'));
              return true;
            },
            end: () => {},
            error: () => {},
          });
        });
        if (ctx.aborted !== null) return ctx.aborted.message;
      }
      return ok ? null : `status ${res.status}`;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
    }
  }

  private probeTcp(target: ClusterEndpoint): Promise<string | null> {
    const e = target.endpoint;
    const timeoutMs = this.config.timeoutMs;
    return new Promise((resolve) => {
      if (e.proxied) {
        // Through the endpoint's proxy, as the TCP proxy goes: its answer to the CONNECT decides.
        this.deps.dialer.open(e, this.deps.cluster, timeoutMs, (err, tunnel) => {
          tunnel?.socket.destroy();
          resolve(err === null ? null : err.message);
        }, target.pool);
        return;
      }
      const socket = connect({ host: e.address, port: e.appPort });
      let done = false;
      const finish = (problem: string | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(problem);
      };
      const timer = setTimeout(() => finish(`connect to ${e.address}:${e.appPort} timed out after ${timeoutMs} ms`), timeoutMs);
      socket.once('connect', () => finish(null));
      socket.once('error', (err: NodeJS.ErrnoException) => finish(`connect to ${e.address}:${e.appPort} failed: ${err.code ?? err.message}`));
    });
  }
}
