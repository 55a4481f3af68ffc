/**
 * One side of the `node-relay-mtls` pair (bench/peers/node-relay-pair.ts): a byte relay in Node with
 * no HTTP at all, the least a Node process can do to carry a proxied request over mutual TLS.
 *
 *   node dist/bench/peers/node-relay.js client <listenPort> <serverPort> <certDir>
 *   node dist/bench/peers/node-relay.js server <listenPort> <upstreamPort> <certDir>
 *
 * `client` takes plaintext connections and relays each over its own TLS 1.3 connection that presents
 * `client.crt`; `server` requires and verifies that certificate and relays each connection to the
 * upstream over plaintext. Each direction is a 'data' listener writing to the other socket (no
 * `pipe`, no parsing). Prints `listening` when ready; SIGTERM stops it.
 */
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, createServer as tcpServer, type Socket } from 'node:net';
import path from 'node:path';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';

const [mode, listenArg, targetArg, dir] = process.argv.slice(2);
if ((mode !== 'client' && mode !== 'server') || dir === undefined) {
  console.error('usage: node-relay.js client|server <listenPort> <targetPort> <certDir>');
  process.exit(2);
}
const listenPort = Number(listenArg);
const targetPort = Number(targetArg);
const file = (name: string): Buffer => readFileSync(path.join(dir, name));

/** Relays bytes both ways between `a` and `b`; either closing or failing closes both. */
function relay(a: Socket, b: Socket): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.on('data', (c: Buffer) => b.write(c));
  b.on('data', (c: Buffer) => a.write(c));
  const close = (): void => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.on('error', close);
    s.on('close', close);
  }
}

const server =
  mode === 'client'
    ? tcpServer((down) => {
        const up = tlsConnect({
          host: '127.0.0.1',
          port: targetPort,
          servername: 'peer-server',
          minVersion: 'TLSv1.3',
          key: file('client.key'),
          cert: file('client.crt'),
          ca: file('ca.crt'),
        });
        relay(down, up);
      })
    : tlsServer(
        { minVersion: 'TLSv1.3', key: file('server.key'), cert: file('server.crt'), ca: file('ca.crt'), requestCert: true, rejectUnauthorized: true },
        (down) => relay(down, tcpConnect({ host: '127.0.0.1', port: targetPort })),
      );
server.listen(listenPort, '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
