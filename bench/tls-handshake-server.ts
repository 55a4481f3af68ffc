/**
 * The server side of bench/tls-handshakes.ts. Reads its configuration as JSON on stdin, prints its
 * port, answers every connection with one byte and closes it.
 *
 * Shapes:
 * - `weft`: what a Weft proxy's inbound does (src/proxy/proxy.ts): a plain `net` listener reads the
 *   first byte, hands the socket to a `tls.Server` that never listens (`emit('connection')`), with
 *   `requestCert: true, rejectUnauthorized: false`, then checks `authorized` and reads the peer's
 *   SPIFFE ID from `getPeerX509Certificate()`.
 * - `weft-direct`: the same `tls.Server` and checks, but listening itself (no first-byte sniff and
 *   hand-off): what the hand-off costs.
 * - `tls`: a bare `tls.createServer` (`rejectUnauthorized: true`).
 * - `tcp`: no TLS at all: the cost of accepting, answering and closing a connection in Node.
 * `tls` options (ecdhCurve, sigalgs, ciphers, secureOptions, requestCert, …) are passed through.
 */
import { createServer as createTcpServer, type Socket } from 'node:net';
import { createServer, type TlsOptions, type TLSSocket } from 'node:tls';

export interface HandshakeServerConfig {
  shape: 'weft' | 'weft-direct' | 'tls' | 'tcp';
  /** `weft` shapes: how the peer's SPIFFE ID is read: getPeerX509Certificate() (`x509`, the default),
   *  getPeerCertificate().subjectaltname (`legacy`), or not at all (`none`). */
  readPeer?: 'x509' | 'legacy' | 'none';
  key: string;
  cert: string;
  ca: string[];
  /** Extra options for the tls.Server (secureOptions as a number). */
  tls?: TlsOptions;
}

// Exit normally on SIGINT, so a --cpu-prof profile is written.
process.on('SIGINT', () => process.exit(0));
let input = '';
process.stdin.on('data', (c: Buffer) => (input += c.toString()));
process.stdin.on('end', () => {
  const cfg = JSON.parse(input) as HandshakeServerConfig;
  const answer = (s: Socket | TLSSocket): void => {
    s.on('error', () => {});
    s.end('x');
  };
  const tlsOptions: TlsOptions = { key: cfg.key, cert: cfg.cert, ca: cfg.ca, minVersion: 'TLSv1.3', requestCert: true, ...cfg.tls };
  let listener;
  if (cfg.shape === 'tcp') {
    listener = createTcpServer({ noDelay: true }, answer);
  } else if (cfg.shape === 'tls') {
    listener = createServer({ ...tlsOptions, rejectUnauthorized: true }, answer);
    listener.on('tlsClientError', () => {});
  } else {
    const tls = createServer({ ...tlsOptions, rejectUnauthorized: false });
    tls.on('secureConnection', (s: TLSSocket) => {
      if (tlsOptions.requestCert !== false) {
        if (!s.authorized) return s.destroy();
        if (cfg.readPeer !== 'none') {
          const sans = cfg.readPeer === 'legacy' ? s.getPeerCertificate().subjectaltname : s.getPeerX509Certificate()?.subjectAltName;
          const uris = (sans ?? '').split(', ').filter((n) => n.startsWith('URI:'));
          if (uris.length !== 1) return s.destroy();
        }
      }
      answer(s);
    });
    tls.on('tlsClientError', (_err, s: TLSSocket) => s.destroy());
    if (cfg.shape === 'weft-direct') listener = tls;
    else
      listener = createTcpServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
        socket.on('error', () => socket.destroy());
        socket.once('data', (first: Buffer) => {
          socket.pause();
          socket.unshift(first);
          if (first[0] !== 0x16) return socket.destroy();
          tls.emit('connection', socket);
        });
      });
  }
  listener.listen(0, '127.0.0.1', () => {
    const a = listener.address();
    console.log(JSON.stringify({ port: typeof a === 'object' && a !== null ? a.port : 0 }));
  });
});
