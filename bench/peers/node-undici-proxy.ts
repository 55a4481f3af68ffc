/**
 * The simplest credible Node proxy: `node:http` server in front of an undici Pool with keep-alive.
 * It forwards method, path, headers (minus hop-by-hop ones) and body, and streams the response back.
 * It is the row that tells how much of Weft's cost is Node itself.
 *   node dist/bench/peers/node-undici-proxy.js --port 8080 --upstream 127.0.0.1:9090
 */
import http from 'node:http';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const arg = (name: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing --${name}`);
  return process.argv[i + 1]!;
};

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1); undici rejects some. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const pool = new Pool(`http://${arg('upstream')}`, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 });

const server = http.createServer((req, res) => {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  }
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request({ method: req.method as 'GET', path: req.url ?? '/', headers, body: hasBody ? req : null }).then(
    (upstream) => {
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(upstream.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
      }
      res.writeHead(upstream.statusCode, out);
      pipeline(upstream.body, res, () => {});
    },
    (err: Error) => {
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`upstream error: ${err.message}\n`);
    },
  );
});
server.keepAliveTimeout = 60_000;
server.listen(Number(arg('port')), '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
