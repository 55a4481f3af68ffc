/**
 * The proxy's admin endpoints, on loopback only: readiness, liveness, metrics, the configuration in
 * force, cluster state, and a drain trigger.
 */
import { createServer, type Server } from 'node:http';

/** What the admin server reads from the proxy. */
export interface AdminSource {
  ready(): boolean;
  metrics(): string;
  configDump(): unknown;
  clusters(): unknown;
  drain(): void;
}

/** Starts the admin server on 127.0.0.1:`port` (0 = any free port). */
export function startAdmin(port: number, src: AdminSource): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const json = (v: unknown): void => send(200, 'application/json', `${JSON.stringify(v, null, 2)}\n`);
    if (req.method === 'GET' || req.method === 'HEAD') {
      switch (url) {
        case '/ready':
          return src.ready() ? send(200, 'text/plain', 'ready\n') : send(503, 'text/plain', 'not ready\n');
        case '/live':
          return send(200, 'text/plain', 'live\n');
        case '/metrics':
          return send(200, 'text/plain; version=0.0.4', src.metrics());
        case '/config_dump':
          return json(src.configDump());
        case '/clusters':
          return json(src.clusters());
      }
    } else if (req.method === 'POST' && url === '/drain') {
      src.drain();
      return send(202, 'text/plain', 'draining\n');
    }
    send(404, 'text/plain', 'not found: try /ready /live /metrics /config_dump /clusters, POST /drain\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
