/**
 * The server side of bench/tls-handshakes.ts: a TLS 1.3 server requiring client certificates, as a
 * proxy's inbound does. Reads {key, cert, ca} as JSON on stdin, prints its port, answers every
 * connection with one byte and closes it.
 */
import { createServer } from 'node:tls';

// Exit normally on SIGINT, so a --cpu-prof profile is written.
process.on('SIGINT', () => process.exit(0));
let input = '';
process.stdin.on('data', (c: Buffer) => (input += c.toString()));
process.stdin.on('end', () => {
  const { key, cert, ca, tickets } = JSON.parse(input) as { key: string; cert: string; ca: string[]; tickets: boolean };
  const server = createServer({ key, cert, ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ...(tickets ? {} : { sessionTimeout: 0 }) }, (s) => {
    s.end('x');
    s.on('error', () => {});
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    console.log(JSON.stringify({ port: typeof a === 'object' && a !== null ? a.port : 0 }));
  });
});
