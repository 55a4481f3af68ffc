// Every metrics endpoint passes `promtool check metrics` (Debian package `prometheus`) with no
// complaint at all, after real traffic of each kind: HTTP (answers and mesh errors), gRPC (OK and
// an error status), TCP through a tunnel, each over an mTLS hop; and the control plane's /metrics.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { proxyMetrics } from './harness.js';
import { GreetClient, fetchVia, startMetricsMesh, type MetricsMesh } from './metrics-mesh.js';

/** promtool's verdict on an exposition: exit code and everything it printed. */
function promtool(text: string): { code: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) throw new Error(`promtool did not run (apt-get install prometheus): ${r.error.message}`);
  return { code: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

function assertClean(what: string, text: string): void {
  const r = promtool(text);
  assert.equal(r.code, 0, `promtool check metrics failed on ${what}:\n${r.output}`);
  assert.equal(r.output, '', `promtool warned on ${what}:\n${r.output}`);
}

/** Sends `bytes` through a TCP port, half-closes, resolves with what came back. */
function tcpRoundTrip(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    const timer = setTimeout(() => s.destroy(new Error('TCP round trip timed out')), 5000);
    s.on('connect', () => s.end(bytes));
    s.on('data', (c: Buffer) => (text += c.toString()));
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

function sample(text: string, name: string, labels: string[]): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!(line.startsWith(`${name}{`) || line.startsWith(`${name} `)) || !labels.every((l) => line.includes(l))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('promtool check metrics on every metrics endpoint', () => {
  let mesh: MetricsMesh;
  before(async () => {
    mesh = await startMetricsMesh(true);
  });
  after(async () => {
    await mesh?.close();
  });

  test('after HTTP, gRPC, TCP and error traffic over mTLS', async () => {
    const { client, web, greet, db, cp } = mesh;
    let ok = 0;
    for (let i = 0; i < 20; i++) if ((await fetchVia(client, 'web', `/items/${i}`, { method: 'POST', body: 'x'.repeat(i * 100) })).status === 200) ok++;
    assert.equal(ok, 20);
    const noRoute = await fetchVia(client, 'nowhere', '/');
    assert.equal(noRoute.error, 'NO_ROUTE');
    const reset = await fetchVia(client, 'web', '/reset');
    assert.equal(reset.error, 'UPSTREAM_RESET', reset.body);

    const g = new GreetClient(`127.0.0.1:${client.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'greet:9090' }) as InstanceType<typeof GreetClient> & Record<string, any>;
    const call = (name: string): Promise<grpc.ServiceError | null> =>
      new Promise((resolve) => g[name](Buffer.from('weft'), { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null) => resolve(err)));
    assert.equal(await call('Hello'), null);
    assert.equal((await call('Fail'))?.code, grpc.status.NOT_FOUND);
    g.close();

    assert.equal(await tcpRoundTrip(client.upstreams['db.default:9000']!, 'ping'.repeat(256)), 'ping'.repeat(256));

    const texts: Array<[string, string]> = [
      ['client proxy', await proxyMetrics(client)],
      ['web proxy', await proxyMetrics(web)],
      ['greet proxy', await proxyMetrics(greet!)],
      ['db proxy', await proxyMetrics(db!)],
      ['control plane', await (await fetch(`${cp.url}/metrics`)).text()],
    ];
    for (const [what, text] of texts) assertClean(what, text);

    // The labels say who called whom, how, and with what result.
    const [, c] = texts[0]!;
    const [, w] = texts[1]!;
    const [, gm] = texts[2]!;
    const [, d] = texts[3]!;
    const [, control] = texts[4]!;
    const hop = ['source_service="client.default"', 'destination_service="web.default"', 'response_code="200"', 'mtls="true"'];
    assert.equal(sample(c, 'weft_requests_total', ['direction="outbound"', ...hop, 'destination_identity="spiffe://cluster.local/ns/default/sa/web"']), 21, c);
    assert.equal(sample(w, 'weft_requests_total', ['direction="inbound"', ...hop, 'source_identity="spiffe://cluster.local/ns/default/sa/client"']), 21, w);
    assert.equal(sample(c, 'weft_requests_total', ['error_code="NO_ROUTE"', 'response_code="404"']), 1, c);
    // The reset is the web proxy's error; the client proxy relays its answer.
    assert.equal(sample(w, 'weft_requests_total', ['direction="inbound"', 'response_code="502"', 'error_code="UPSTREAM_RESET"']), 1, w);
    assert.equal(sample(c, 'weft_requests_total', ['direction="outbound"', 'destination_service="web.default"', 'response_code="502"']), 1, c);
    assert.ok(sample(w, 'weft_request_bytes_sum', ['direction="inbound"', 'response_code="200"']) >= 19_000, 'request body sizes (0 + 100 + … + 1900 bytes)');
    assert.equal(sample(gm, 'weft_requests_total', ['direction="inbound"', 'grpc_status="0"', 'source_service="client.default"']), 1, gm);
    assert.equal(sample(gm, 'weft_requests_total', ['direction="inbound"', 'grpc_status="5"']), 1, gm);
    assert.equal(sample(c, 'weft_tcp_connections_total', ['direction="outbound"', 'destination_service="db.default"', 'mtls="true"']), 1, c);
    assert.equal(sample(c, 'weft_tcp_bytes_total', ['direction="outbound"', 'flow="received"']), 1024, c);
    assert.equal(sample(d, 'weft_tcp_bytes_total', ['direction="inbound"', 'flow="sent"']), 1024, d);
    assert.equal(sample(control, 'weft_control_proxies_connected', ['transport="mtls"']), 4, control);
    assert.ok(sample(control, 'weft_control_certificates_issued_total', []) >= 4, control);
    assert.ok(sample(control, 'weft_control_config_push_duration_seconds_count', []) >= 1, control);
    console.log(`promtool: 5 endpoints clean; client→web ${ok + 1} ok over mTLS, 1 NO_ROUTE, 1 UPSTREAM_RESET; gRPC 1 OK + 1 NOT_FOUND; TCP 1 connection, 1024 B each way`);
  });

  test('promtool is strict enough to fail a bad exposition', () => {
    const r = promtool('# TYPE weft_things counter\nweft_things 1\n');
    assert.notEqual(r.output, '', 'a counter without _total and without HELP must draw a complaint');
  });
});
