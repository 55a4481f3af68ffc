// Distributed tracing end to end through the shop demo (examples/shop, run by `weft up` with a Mesh
// that samples 100 % and exports to an OTLP receiver this test runs): one request through loadgen's
// sidecar to web → catalog → reviews → ratings makes one trace of eight spans (a CLIENT span on each
// caller's proxy, a SERVER span on each callee's), each the parent of the next, in the control
// plane's store (API and `weft trace`) and at the external receiver. A B3-only caller's trace continues.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, root, runWeft, weftBin, processAlive } from './harness.js';

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: string;
  service: string;
  attributes: Record<string, string>;
}

/** An OTLP/HTTP receiver: keeps every POST's content type and parsed body. */
async function startReceiver(): Promise<{ port: number; posts: Array<{ path: string; type: string; body: any }>; close(): Promise<void> }> {
  const posts: Array<{ path: string; type: string; body: any }> = [];
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      posts.push({ path: req.url ?? '', type: req.headers['content-type'] ?? '', body: JSON.parse(Buffer.concat(parts).toString()) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, posts, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** The receiver's spans of one trace, flattened with their resource's service.name. */
function receivedSpans(posts: Array<{ body: any }>, traceId: string): Span[] {
  const out: Span[] = [];
  for (const p of posts) {
    for (const rs of p.body.resourceSpans ?? []) {
      const service = rs.resource.attributes.find((a: any) => a.key === 'service.name')?.value.stringValue;
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          if (s.traceId !== traceId) continue;
          const attributes = Object.fromEntries(s.attributes.map((a: any) => [a.key, String(Object.values(a.value)[0])]));
          out.push({ traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind === 2 ? 'SERVER' : s.kind === 3 ? 'CLIENT' : String(s.kind), service, attributes });
        }
      }
    }
  }
  return out;
}

const HOPS: Array<[string, string]> = [
  ['loadgen', 'CLIENT'], ['web', 'SERVER'], ['web', 'CLIENT'], ['catalog', 'SERVER'], ['catalog', 'CLIENT'], ['reviews', 'SERVER'], ['reviews', 'CLIENT'], ['ratings', 'SERVER'],
];
/** Who calls each service in the shop, for the SERVER spans' peer identity. */
const CALLER: Record<string, string> = { web: 'loadgen', catalog: 'web', reviews: 'catalog', ratings: 'reviews' };

/** Follows the parent links from the caller's span: the chain must be the shop's eight hops, nothing else. */
function assertChain(spans: Span[], callerSpan: string, where: string): void {
  assert.equal(spans.length, 8, `${where}: ${JSON.stringify(spans.map((s) => [s.service, s.kind, s.name]))}`);
  assert.equal(new Set(spans.map((s) => s.traceId)).size, 1, `${where}: one trace id`);
  let parent = callerSpan;
  for (const [service, kind] of HOPS) {
    const children = spans.filter((s) => s.parentSpanId === parent);
    assert.equal(children.length, 1, `${where}: one child of ${parent} (${service} ${kind}): ${JSON.stringify(children)}`);
    const s = children[0]!;
    assert.deepEqual([s.service, s.kind], [service, kind], `${where}: hop ${service} ${kind}`);
    assert.equal(s.attributes['http.request.method'], 'GET');
    assert.equal(s.attributes['http.response.status_code'], '200', `${where}: ${service} ${kind}`);
    if (kind === 'SERVER') assert.equal(s.attributes['weft.peer.identity'], `spiffe://cluster.local/ns/default/sa/${CALLER[service]}`, `${where}: ${service} sees its caller's identity`);
    parent = s.spanId;
  }
}

function viaLoadgen(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: `http://web${path}`, headers: { host: 'web', ...headers } }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(b) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a trace through the shop is complete, in the control plane and at an OTLP receiver; B3 callers continue', async () => {
  const receiver = await startReceiver();
  const shop = readFileSync(join(root, 'examples/shop/mesh.yaml'), 'utf8').replace(/RATE: "20"/, 'RATE: "2"');
  const file = join(root, 'examples/shop', `.test-tracing-${process.pid}.yaml`);
  writeFileSync(file, `${shop}---
apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: mesh }
spec: { tracing: { sampling: 100, otlp: { endpoint: "http://127.0.0.1:${receiver.port}/v1/traces" } } }
`);
  const up = spawn(process.execPath, [weftBin, 'up', '-f', file, '--api-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  up.stdout.on('data', (c: Buffer) => (out += c.toString()));
  up.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => up.once('exit', (code) => r(code)));
  let pids: number[] = [];
  try {
    await eventually(() => out.includes('"event":"listening"'), 20_000, 'weft up listening');
    const started = JSON.parse(out.split('\n').find((l) => l.startsWith('{"event":"listening"'))!) as { apiPort: number; apps: Record<string, { outbound: number; pid: number; sidecarPid: number }> };
    pids = Object.values(started.apps).flatMap((a) => [a.pid, a.sidecarPid]);
    const server = `http://127.0.0.1:${started.apiPort}`;
    const loadgen = started.apps.loadgen!.outbound;
    await eventually(async () => {
      const r = await viaLoadgen(loadgen, '/product/3', {});
      return r.status === 200 && typeof r.body.reviews?.rating?.stars === 'number';
    }, 15_000, 'the shop answers through every service');
    // Every sidecar holds its certificate, so every one can send to the control plane.
    await eventually(async () => {
      const certs = JSON.parse((await runWeft(['get', 'certificates', '-o', 'json'], server)).stdout);
      return certs.items.filter((i: any) => i.installed).length >= 6;
    }, 10_000, 'every sidecar holds its certificate');
    // And the shop answers with every hop on mTLS (sidecars that got certificates late switch over).
    await eventually(async () => (await viaLoadgen(loadgen, '/product/3', {})).status === 200, 10_000, 'the shop answers over mTLS');

    // A W3C caller (as if loadgen itself were traced): its span is the parent of the first hop.
    const T = '4bf92f3577b34da6a3ce929d0e0e4736';
    const S = '00f067aa0ba902b7';
    const w3c = await viaLoadgen(loadgen, '/product/3', { traceparent: `00-${T}-${S}-01`, tracestate: 'vendor=opaque' });
    assert.equal(w3c.status, 200, JSON.stringify(w3c.body));
    // A B3-only caller (single header), and one with the x-b3-* set.
    const T2 = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const S2 = '1122334455667788';
    assert.equal((await viaLoadgen(loadgen, '/product/2', { b3: `${T2}-${S2}-1` })).status, 200);
    const T3 = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';
    const S3 = '8877665544332211';
    assert.equal((await viaLoadgen(loadgen, '/product/1', { 'x-b3-traceid': T3, 'x-b3-spanid': S3, 'x-b3-sampled': '1' })).status, 200);

    const stored = async (id: string): Promise<Span[]> => {
      const r = await runWeft(['trace', id, '-o', 'json'], server);
      return r.code === 0 ? (JSON.parse(r.stdout).spans as Span[]) : [];
    };
    await eventually(async () => (await stored(T)).length >= 8 && (await stored(T2)).length >= 8 && (await stored(T3)).length >= 8, 15_000, 'eight spans of each trace in the store');
    assertChain(await stored(T), S, 'store, W3C');
    assertChain(await stored(T2), S2, 'store, B3 single');
    assertChain(await stored(T3), S3, 'store, B3 multi');

    await eventually(() => receivedSpans(receiver.posts, T).length >= 8 && receivedSpans(receiver.posts, T2).length >= 8, 10_000, 'eight spans at the OTLP receiver');
    assertChain(receivedSpans(receiver.posts, T), S, 'receiver, W3C');
    assertChain(receivedSpans(receiver.posts, T2), S2, 'receiver, B3');
    assert.ok(receiver.posts.every((p) => p.type === 'application/json' && p.path === '/v1/traces'), 'OTLP/HTTP JSON to the configured path');
    const sample = receiver.posts.flatMap((p) => p.body.resourceSpans[0].scopeSpans[0].spans)[0];
    assert.match(sample.startTimeUnixNano, /^\d{19}$/, 'nanoseconds as a decimal string');

    // The waterfall: every span, indented under its parent (two spaces a level), with bars.
    const text = await runWeft(['trace', T], server);
    assert.equal(text.code, 0, text.stderr);
    const rows = text.stdout.split('\n').filter((l) => l.includes('|'));
    assert.equal(rows.length, 8, text.stdout);
    HOPS.forEach(([service, kind], depth) => {
      const row = rows[depth]!;
      assert.ok(row.startsWith(`${'  '.repeat(depth)}${kind} GET `), `row ${depth}: ${row}`);
      assert.match(row, new RegExp(`\\b${service}\\b.*\\+\\d+\\.\\d+ms\\s+\\d+\\.\\d+ms\\s+200`), row);
    });
    assert.match(text.stdout, new RegExp(`^trace ${T}: 8 spans, 5 services`), text.stdout);
    const listed = await runWeft(['trace', '--service', 'ratings', '--limit', '500'], server);
    assert.ok(listed.stdout.includes(T) && listed.stdout.includes(T2), listed.stdout);
    console.log(`tracing: 3 traces x 8 spans complete in the store and ${receiver.posts.length} OTLP posts (${receiver.posts.reduce((n, p) => n + p.body.resourceSpans[0].scopeSpans[0].spans.length, 0)} spans) at the receiver\n${text.stdout}`);
  } finally {
    up.kill('SIGINT');
    const kill = setTimeout(() => up.kill('SIGKILL'), 20_000);
    const code = await exited;
    clearTimeout(kill);
    rmSync(file, { force: true });
    await receiver.close();
    assert.equal(code, 0, out.slice(-3000));
    await eventually(() => pids.every((p) => !processAlive(p)), 5000, 'no process left');
  }
});
