import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSecureContext } from 'node:tls';
import { Http1Pool } from '../http1/client.js';
import { Http2Pool } from '../http2/client.js';
import { HTTP2_ENGINE, WeftHttp2Pool } from '../http2/upstream.js';
import { PeerPool, PoolRegistry } from './pools.js';

const ID = 'spiffe://cluster.local/ns/default/sa/db';

test('http1 peer transport: proxied HTTP/1.1 endpoints get pooled HTTP/1.1 connections', () => {
  const r = new PoolRegistry();
  assert.ok(r.get('127.0.0.1', 15006, 1000, ID) instanceof Http1Pool);
  // HTTP/2 clusters: Weft's own engine, unless WEFT_HTTP2_ENGINE=node.
  assert.ok(r.get('127.0.0.1', 15006, 1000, ID, 'h2') instanceof (HTTP2_ENGINE === 'node' ? Http2Pool : WeftHttp2Pool));
  assert.ok(r.get('127.0.0.1', 8080, 1000, null, 'h2') instanceof (HTTP2_ENGINE === 'node' ? Http2Pool : WeftHttp2Pool));
  r.closeAll();
});

test('h2 peer transport: proxied HTTP/1.1 and TCP endpoints share the endpoint\'s HTTP/2 session; the rest is unchanged', () => {
  const r = new PoolRegistry();
  r.peerTransport = 'h2';
  let context: ReturnType<typeof createSecureContext> | null = null;
  r.clientContext = () => context;
  const peer = r.get('127.0.0.1', 15006, 1000, ID);
  assert.ok(peer instanceof PeerPool);
  assert.equal(r.get('127.0.0.1', 15006, 1000, ID), peer, 'one per endpoint');
  // The same session HTTP/2 and gRPC clusters use.
  assert.equal(peer.h2, r.get('127.0.0.1', 15006, 1000, ID, 'h2'));
  assert.ok(peer.h2 instanceof (HTTP2_ENGINE === 'node' ? Http2Pool : WeftHttp2Pool), 'the peer session (tunnels too) is on the engine in force');
  // Not proxied (the app itself), or the inbound→app hop: unchanged.
  assert.ok(r.get('127.0.0.1', 8080, 1000, null) instanceof Http1Pool);
  // Tunnels ride the session only with mTLS; without a certificate they get connections of their own.
  assert.equal(peer.tunnelPool(), null);
  context = createSecureContext({});
  assert.equal(peer.tunnelPool(), peer.h2);

  // A new configuration that still has the endpoint keeps the session and the HTTP/1.1 pool (for upgrades).
  r.retainOnly(new Set([peer]));
  assert.equal(r.get('127.0.0.1', 15006, 1000, ID, 'h2'), peer.h2);
  assert.equal(r.get('127.0.0.1', 15006, 1000, ID), peer);
  r.retainOnly(new Set());
  assert.notEqual(r.get('127.0.0.1', 15006, 1000, ID), peer, 'gone with the endpoint');
  r.closeAll();
});
