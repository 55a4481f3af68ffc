// PERMISSIVE mTLS: a proxy's inbound port takes mutual TLS from mesh proxies and plaintext from
// callers outside the mesh, told apart by the first byte. A plaintext caller was once never read:
// the first-byte check left the socket paused and the HTTP sniff behind it only waited. Here an
// unmeshed HTTP/1.1 client (its request in one write, and split after the first byte, as a slow
// client or a small first segment does) and an h2c client reach the app through the inbound, while a
// meshed caller's requests still arrive over mTLS; the inbound counts each connection by security.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2Connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { applyYaml, eventually, joinToken, proxyMetrics, startControl, startEcho, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';

const MESH = `apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: mesh }
spec: { mtls: { mode: PERMISSIVE } }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80, protocol: HTTP }] }
`;

let cp: RunningControl;
let echo: Awaited<ReturnType<typeof startEcho>>;
let server: RunningProxy;
let client: RunningProxy;
const closers: Array<() => Promise<unknown> | unknown> = [];

async function proxy(args: string[]): Promise<RunningProxy> {
  const p = await startProxyWith(['--control-plane', cp.url, '-q', ...args]);
  closers.push(() => p.stop());
  return p;
}

/** One HTTP/1.1 GET for `echo` on a fresh plaintext connection to `port` (whole, or its first byte 100 ms before the rest): the answer's text, or '' when none came within 3 s. */
function plainGet(port: number, path: string, split: boolean): Promise<string> {
  const request = `GET ${path} HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n`;
  return new Promise((resolve) => {
    const s: Socket = connect({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => s.destroy(), 3000);
    s.on('error', () => {});
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    s.once('connect', () => {
      if (!split) return void s.write(request);
      s.write(request.slice(0, 1));
      setTimeout(() => s.write(request.slice(1)), 100);
    });
  });
}

/** One h2c (prior knowledge) GET to `port`: its status, or 0 when none came within 3 s. */
function h2cGet(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const session = h2Connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    let status = 0;
    const done = (): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(status);
    };
    const timer = setTimeout(done, 3000);
    const stream = session.request({ ':path': path, ':authority': 'echo' });
    stream.on('error', () => {});
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.resume();
    stream.on('close', done);
    stream.end();
  });
}

const inboundCount = (metrics: string, security: string): number => Number(new RegExp(`^weft_inbound_connections_total\\{security="${security}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);

before(async () => {
  cp = await startControl();
  closers.push(() => cp.stop());
  await applyYaml(cp, MESH);
  echo = await startEcho('echo');
  closers.push(() => echo.close());
  server = await proxy(['--workload', 'echo-1', '--app-port', `http=${echo.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', await joinToken(cp, 'echo')]);
  client = await proxy(['--workload', 'web-1', '--register', '--label', 'app=web', '--service-account', 'web', '--calls', 'echo', '--token', await joinToken(cp, 'web')]);
  await eventually(async () => /^HTTP\/1\.1 200 /.test(await plainGet(client.outbound, '/ready', false)), 15_000, 'the meshed caller reaches echo');
  // The meshed caller's connection is mTLS once both proxies hold certificates.
  await eventually(async () => inboundCount(await proxyMetrics(server), 'mtls') > 0, 10_000, 'an mTLS connection at the inbound');
});

after(async () => {
  for (const c of closers.reverse()) await c();
});

test('PERMISSIVE: plaintext HTTP/1.1 (whole and split after its first byte) and h2c reach the app through the inbound; meshed callers stay on mTLS', async () => {
  const before = await proxyMetrics(server);
  const answers = [await plainGet(server.inbound, '/whole', false), await plainGet(server.inbound, '/split', true)];
  for (const a of answers) assert.match(a, /^HTTP\/1\.1 200 /, `a plaintext caller got ${JSON.stringify(a.slice(0, 80))}`);
  assert.equal(await h2cGet(server.inbound, '/h2c'), 200);
  assert.deepEqual(echo.seen.filter((s) => ['/whole', '/split', '/h2c'].includes(s.url)).map((s) => s.url).sort(), ['/h2c', '/split', '/whole']);
  // The meshed caller still gets through, over mTLS.
  assert.match(await plainGet(client.outbound, '/meshed', false), /^HTTP\/1\.1 200 /);
  const after = await proxyMetrics(server);
  const plaintext = inboundCount(after, 'plaintext') - inboundCount(before, 'plaintext');
  assert.equal(plaintext, 3, 'three plaintext connections counted at the inbound');
  assert.ok(inboundCount(after, 'mtls') >= 1, 'the meshed caller came over mTLS');
  assert.equal(inboundCount(after, 'refused'), 0);
  console.log(`permissive: 3 plaintext callers answered 200 (whole, split, h2c), ${plaintext} plaintext and ${inboundCount(after, 'mtls')} mTLS inbound connections counted`);
});
