/**
 * The proxy's admin endpoints, on loopback only: readiness, liveness, metrics, the configuration in
 * force, cluster state, and a drain trigger.
 *
 * Served by the listeners' own strict HTTP/1.1 engine (http1/server.ts) on node:net, so the proxy
 * never loads node:http: malformed heads are refused as the listeners refuse them (a `weft-error`
 * answer, then the connection closes), keep-alive and pipelining work, request bodies (nobody sends
 * one) are read and dropped.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Body } from '../body.js';
import type { BodySink } from '../body.js';
import type { Handler } from '../message.js';
import type { HeadLimits } from '../http1/parse.js';
import { Http1ServerConnection, type Http1ServerOptions } from '../http1/server.js';

/** What the admin server reads from the proxy. */
export interface AdminSource {
  ready(): boolean;
  metrics(): string;
  configDump(): unknown;
  clusters(): unknown;
  drain(): void;
}

/** A listening admin server. */
export interface AdminServer {
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** Stops listening and closes every connection at once. */
  close(): Promise<void>;
}

/** One admin answer. */
export interface AdminReply {
  status: number;
  type: string;
  body: string;
}

const LIMITS: HeadLimits = { maxHeadBytes: 16 * 1024, maxHeaders: 100 };
const OPTIONS: Http1ServerOptions = {
  direction: 'inbound',
  limits: LIMITS,
  // From a request's first byte to the end of its head.
  requestHeaderTimeoutMs: 10_000,
  // An idle keep-alive connection (a scraper every 15 s keeps its own).
  idleTimeoutMs: 60_000,
};
/** Where a request body goes: nowhere. */
const DROP: BodySink = { data: () => true, end() {}, error() {} };

const NOT_FOUND = 'not found: try /ready /live /metrics /config_dump /clusters, POST /drain\n';

/** The answer to one admin request (`path` may carry a query, which is ignored). */
export function adminResponse(method: string, path: string, src: AdminSource): AdminReply {
  const q = path.indexOf('?');
  const p = q === -1 ? path : path.slice(0, q);
  const text = (status: number, body: string): AdminReply => ({ status, type: 'text/plain', body });
  if (method === 'GET' || method === 'HEAD') {
    switch (p) {
      case '/ready':
        return src.ready() ? text(200, 'ready\n') : text(503, 'not ready\n');
      case '/live':
        return text(200, 'live\n');
      case '/metrics':
        return { status: 200, type: 'text/plain; version=0.0.4', body: src.metrics() };
      case '/config_dump':
        return { status: 200, type: 'application/json', body: `${JSON.stringify(src.configDump(), null, 2)}\n` };
      case '/clusters':
        return { status: 200, type: 'application/json', body: `${JSON.stringify(src.clusters(), null, 2)}\n` };
    }
  } else if (method === 'POST' && p === '/drain') {
    src.drain();
    return { status: 202, type: 'text/plain', body: 'draining\n' };
  }
  return text(404, NOT_FOUND);
}

/** Starts the admin server on 127.0.0.1:`port` (0 = any free port). */
export function startAdmin(port: number, src: AdminSource): Promise<AdminServer> {
  const handler: Handler = async (req) => {
    req.body?.pipe(DROP);
    let reply: AdminReply;
    try {
      reply = adminResponse(req.method, req.path, src);
    } catch (err) {
      reply = { status: 500, type: 'text/plain', body: `admin ${req.method} ${req.path}: ${(err as Error).message}\n` };
    }
    return { status: reply.status, headers: ['content-type', reply.type, 'cache-control', 'no-store'], body: Body.of(Buffer.from(reply.body)) };
  };
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    new Http1ServerConnection(socket, handler, OPTIONS);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}
