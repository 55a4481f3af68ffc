// A `weft proxy` process never loads node:http, node:https or node:http2 (docs/performance.md,
// "Memory"): its admin server, its span exports (plain OTLP/HTTP to a collector, mTLS to the control
// plane) and its config stream (plain, then mTLS) all run on Weft's own HTTP/1.1 code over net/tls.
// Two real sidecars join a real control plane, carry traced requests over mTLS, export spans to both
// targets and are scraped; a preload file of this test (passed through NODE_OPTIONS, nothing in
// production code) writes each proxy's `process.moduleLoadList` when it exits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyYaml, apiFetch, eventually, joinToken, startControl, startEcho, startWeft, tempFile, type RunningWeft } from './harness.js';

type Ports = { ports: { outbound: number; inbound: number; admin: number } };

/** Writes the process's module list to `WEFT_TEST_MODULE_LIST` when it exits (whatever way it exits normally). */
const PRELOAD = `import { writeFileSync } from 'node:fs';
const out = process.env.WEFT_TEST_MODULE_LIST;
process.on('exit', () => { if (out) writeFileSync(out, process.moduleLoadList.join('\\n')); });
`;

/** Modules the proxy must never load on the default engines. */
const FORBIDDEN = /^NativeModule (http|https|http2|_http_\w+)$/;

/** An OTLP/HTTP receiver that counts spans per service. */
async function startReceiver(): Promise<{ port: number; spans: Map<string, number>; close(): Promise<void> }> {
  const spans = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString());
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource.attributes.find((a: any) => a.key === 'service.name')?.value.stringValue ?? '?';
        for (const ss of rs.scopeSpans) spans.set(service, (spans.get(service) ?? 0) + ss.spans.length);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, spans, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

function viaProxy(port: number, traceId: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: 'http://echo/', headers: { host: 'echo', traceparent: `00-${traceId}-00f067aa0ba902b7-01` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** A GET bounded to 5 s. */
const get = (url: string): Promise<Response> => fetch(url, { signal: AbortSignal.timeout(5000) });

/** VmRSS of a process in KiB (Linux), or NaN. */
function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? NaN : Number(m[1]);
  } catch {
    return NaN;
  }
}

test('a weft proxy with admin scrapes, span exports and an mTLS config stream loads no node:http, https or http2', async () => {
  const receiver = await startReceiver();
  const cp = await startControl();
  const app = await startEcho('echo-app');
  const preload = tempFile('report-modules.mjs', PRELOAD);
  const lists = { server: join(dirname(preload), 'server.modules'), client: join(dirname(preload), 'client.modules') };
  const env = (list: string): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(preload).href}`.trim(), WEFT_TEST_MODULE_LIST: list };
    delete e.WEFT_HTTP2_ENGINE;
    return e;
  };
  const started: Array<RunningWeft<Ports>> = [];
  try {
    await applyYaml(cp, `apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: mesh }
spec: { mtls: { mode: STRICT }, tracing: { sampling: 100, otlp: { endpoint: "http://127.0.0.1:${receiver.port}/v1/traces" } } }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
`);
    const common = ['proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--control-plane', cp.url, '--quiet'];
    const server = await startWeft<Ports>([...common, '--workload', 'echo-1', '--app-port', `http=${app.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', await joinToken(cp, 'echo', '1h')], env(lists.server));
    started.push(server);
    const client = await startWeft<Ports>([...common, '--workload', 'client', '--register', '--label', 'app=client', '--service-account', 'client', '--token', await joinToken(cp, 'client', '1h')], env(lists.client));
    started.push(client);
    await eventually(async () => {
      const items = (await (await apiFetch(`${cp.url}/api/v1/certificates`, { signal: AbortSignal.timeout(5000) })).json()).items as any[];
      return items.length === 2 && items.every((i) => i.installed === true);
    }, 10_000, 'both proxies hold certificates');
    // Both streams moved onto mTLS (the admin answers come from the new admin server).
    for (const p of [server, client]) {
      await eventually(async () => (await get(`http://127.0.0.1:${p.listening.ports.admin}/ready`)).status === 200, 10_000, 'ready');
    }

    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    let ok = 0;
    let sent = 0;
    await eventually(async () => {
      sent++;
      if ((await viaProxy(client.listening.ports.outbound, traceId)) === 200) ok++;
      return ok >= 5;
    }, 10_000, 'requests through both proxies over mTLS');

    // Spans reach the collector (plain OTLP/HTTP) and the control plane (mTLS) from both proxies.
    await eventually(() => (receiver.spans.get('echo') ?? 0) >= 5 && (receiver.spans.get('client') ?? 0) >= 5, 10_000, 'spans at the OTLP receiver');
    await eventually(async () => {
      const r = await apiFetch(`${cp.url}/api/v1/traces/${traceId}`, { signal: AbortSignal.timeout(5000) });
      if (r.status !== 200) return false;
      const spans = ((await r.json()) as { spans?: unknown[] }).spans ?? [];
      return spans.length >= 10;
    }, 10_000, 'spans in the control plane');

    // Every admin endpoint answers, as node:http's server did: status, type, keep-alive.
    const admin = `http://127.0.0.1:${server.listening.ports.admin}`;
    const metrics = await get(`${admin}/metrics`);
    assert.equal(metrics.status, 200);
    assert.equal(metrics.headers.get('content-type'), 'text/plain; version=0.0.4');
    assert.match(await metrics.text(), /^# TYPE weft_trace_spans_total counter$/m);
    // The proxy counts a post once the answer is in, a moment after the control plane stored its spans.
    const exported = async (): Promise<string[]> => (await (await get(`${admin}/metrics`)).text()).split('\n').filter((l) => l.startsWith('weft_trace_spans_total'));
    await eventually(async () => {
      const lines = await exported();
      return ['otlp', 'control-plane'].every((t) => lines.some((l) => new RegExp(`^weft_trace_spans_total\\{target="${t}",result="exported"\\} [1-9]`).test(l)));
    }, 5000, 'exports counted for both targets');
    assert.deepEqual((await exported()).filter((l) => !/result="exported"/.test(l)), [], 'no span dropped or failed');
    assert.equal((await get(`${admin}/live`)).status, 200);
    assert.equal((await (await get(`${admin}/config_dump`)).json()).snapshot.workload.name, 'echo-1');
    const clusters = (await (await get(`${admin}/clusters`)).json()) as unknown[];
    assert.ok(Array.isArray(clusters) && clusters.length > 0, JSON.stringify(clusters));
    assert.equal((await get(`${admin}/nope`)).status, 404);
    assert.equal((await get(`${admin}/drain`)).status, 404, 'GET /drain is not a drain');

    const rss = { server: rssKiB(server.proc.pid!), client: rssKiB(client.proc.pid!) };

    for (const p of started.splice(0)) await p.stop();
    const loaded: Record<string, string[]> = {};
    for (const [name, file] of Object.entries(lists)) {
      assert.ok(existsSync(file), `${name}: the preload wrote the module list`);
      const list = readFileSync(file, 'utf8').split('\n');
      // The list is the real one: the proxy's own transports are in it.
      assert.ok(list.includes('NativeModule tls') && list.includes('NativeModule net'), `${name}: ${list.length} entries`);
      loaded[name] = list.filter((m) => FORBIDDEN.test(m));
    }
    console.log(`no-node-http: ${ok}/${sent} requests ok; spans at the receiver ${JSON.stringify(Object.fromEntries(receiver.spans))}; RSS server ${rss.server} KiB, client ${rss.client} KiB; forbidden modules ${JSON.stringify(loaded)}`);
    assert.deepEqual(loaded, { server: [], client: [] });
  } finally {
    for (const p of started) await p.stop();
    await cp.stop();
    await app.close();
    await receiver.close();
  }
});
