// When this proxy's own certificate is renewed, its connections to peers made under the old one are
// not reused: the next request goes over a new handshake that presents the new certificate (and does
// not resume a TLS session made under the old one), for both peer transports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { createRootCertificate, generateKey, issueLeafCertificate, keyToPem } from '../../core/identity/x509.js';
import type { Body } from '../body.js';
import { Http1Pool } from '../http1/client.js';
import { WeftHttp2Pool } from '../http2/upstream.js';
import { newRequestContext, type ProxyRequest } from '../message.js';
import type { UpstreamPool } from './upstream-pool.js';

const HOUR = 3600_000;
const now = Date.now();
const rootKey = generateKey();
const rootPem = createRootCertificate({ key: rootKey, trustDomain: 'cluster.local', commonName: 'test root', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
const root = new X509Certificate(rootPem);
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/db';
const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/web';

function workload(id: string): { key: string; cert: string; serial: string } {
  const key = generateKey();
  const leaf = issueLeafCertificate({ publicKey: createPublicKey(key), spiffeId: id, issuerCert: root, issuerKey: rootKey, notBefore: new Date(now - 60_000), notAfter: new Date(now + HOUR) });
  return { key: keyToPem(key), cert: leaf.pem, serial: new X509Certificate(leaf.pem).serialNumber };
}

/** An mTLS server speaking HTTP/1.1 and HTTP/2 that answers with the serial of the certificate the caller presented. */
async function peer(): Promise<{ server: Http2SecureServer; port: number; handshakes: () => number; close(): Promise<void> }> {
  const server = createSecureServer({ ...workload(SERVER_ID), ca: rootPem, requestCert: true, rejectUnauthorized: true, allowHTTP1: true });
  let handshakes = 0;
  const sockets = new Set<TLSSocket>();
  server.on('secureConnection', (s: TLSSocket) => {
    handshakes++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('request', (req, res) => {
    const socket = req.socket as TLSSocket;
    res.end(`${socket.getPeerCertificate().serialNumber} resumed=${socket.isSessionReused()}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    handshakes: () => handshakes,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

function get(): ProxyRequest {
  return { method: 'GET', path: '/', authority: 'db', headers: [], body: null };
}

function text(b: Body | null): Promise<string> {
  return new Promise((resolve, reject) => {
    if (b === null) return resolve('');
    const parts: Buffer[] = [];
    b.pipe({ data: (c) => (parts.push(c), true), end: () => resolve(Buffer.concat(parts).toString()), error: reject });
  });
}

async function call(pool: UpstreamPool): Promise<string> {
  const res = await pool.request(get(), newRequestContext({ direction: 'outbound', requestId: 'r', start: 0 }), 2000);
  return text(res.body);
}

for (const kind of ['http1', 'h2'] as const) {
  test(`${kind} peer pool: after this proxy's certificate is renewed, requests go over a new handshake presenting the new one`, async () => {
    const p = await peer();
    const first = workload(CLIENT_ID);
    const second = workload(CLIENT_ID);
    let context: SecureContext = createSecureContext({ key: first.key, cert: first.cert, ca: rootPem, minVersion: 'TLSv1.3' });
    const opts = { connectTimeoutMs: 2000, idleTimeoutMs: 5000, tls: { peerIdentity: SERVER_ID, context: () => context } };
    const pool = kind === 'http1' ? new Http1Pool('127.0.0.1', p.port, { ...opts, maxIdle: 8 }) : new WeftHttp2Pool('127.0.0.1', p.port, opts);
    try {
      assert.equal(await call(pool), `${first.serial} resumed=false`);
      assert.equal(await call(pool), `${first.serial} resumed=false`, 'the connection is reused while the certificate stays');
      assert.equal(p.handshakes(), 1);
      // A TLS session ticket made under the first certificate is now held: a new connection would resume it.
      context = createSecureContext({ key: second.key, cert: second.cert, ca: rootPem, minVersion: 'TLSv1.3' });
      assert.equal(await call(pool), `${second.serial} resumed=false`, 'a new handshake with the renewed certificate, not a resumption of the old session');
      assert.equal(p.handshakes(), 2);
      assert.equal(await call(pool), `${second.serial} resumed=false`);
      assert.equal(p.handshakes(), 2, 'the new connection is reused in turn');
      console.log(`# ${kind}: serials ${first.serial.slice(0, 8)}… then ${second.serial.slice(0, 8)}…, ${p.handshakes()} handshakes for 4 requests`);
    } finally {
      pool.close();
      await p.close();
    }
  });
}
