// Access logs end to end: a `weft proxy --file` whose Mesh sets spec.accessLog, writing JSON lines to
// a file: the fields of a 200 through the mesh and of a mesh error, nothing at all with mode Off,
// and about half the exchanges with Sampled 50%.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, meshYaml, startEcho, startProxy, tempFile, type RunningProxy } from './harness.js';

function send(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The log's lines, parsed; [] while the file does not exist. */
function lines(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

const mesh = (accessLog: string): string => `---
apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: mesh }
spec: { accessLog: ${accessLog} }`;

describe('access logs', () => {
  let v1: Awaited<ReturnType<typeof startEcho>>;
  let v2: Awaited<ReturnType<typeof startEcho>>;
  const dir = mkdtempSync(join(tmpdir(), 'weft-access-log-'));
  const proxies: RunningProxy[] = [];
  const start = async (accessLog: string): Promise<RunningProxy> => {
    const p = await startProxy(tempFile('mesh.yaml', meshYaml({ v1: v1.port, v2: v2.port, tcp: 1 }, undefined, mesh(accessLog))), 'client-1');
    proxies.push(p);
    return p;
  };

  before(async () => {
    v1 = await startEcho('v1');
    v2 = await startEcho('v2');
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await v1.close();
    await v2.close();
  });

  test('On: a 200 and a mesh error, with their fields', async () => {
    const file = join(dir, '{workload}.log');
    const proxy = await start(`{ mode: On, path: "${file}" }`);
    const log = join(dir, 'client-1.log');
    const T = '4bf92f3577b34da6a3ce929d0e0e4736';
    const ok = await send(proxy.outbound, 'echo', '/items?x=1', { 'user-agent': 'access-log-test', 'x-request-id': 'req-ok', traceparent: `00-${T}-00f067aa0ba902b7-01` });
    assert.equal(ok.status, 200);
    const miss = await send(proxy.outbound, 'nowhere', '/x', { 'x-request-id': 'req-miss' });
    assert.equal(miss.status, 404);
    assert.equal(miss.headers['weft-error'], 'NO_ROUTE');
    await eventually(() => lines(log).length >= 2, 5000, 'two log lines');
    const [a, b] = lines(log);
    const upstream = JSON.parse(ok.body).name === 'v1' ? v1.port : v2.port;
    assert.deepEqual({ ...a, start_time: typeof a!.start_time, duration: typeof a!.duration }, {
      start_time: 'string',
      direction: 'outbound',
      method: 'GET',
      path: '/items?x=1',
      protocol: 'HTTP/1.1',
      response_code: 200,
      response_flags: '-',
      weft_error: null,
      grpc_status: null,
      bytes_received: 0,
      bytes_sent: Buffer.byteLength(ok.body),
      duration: 'number',
      upstream_host: `127.0.0.1:${upstream}`,
      upstream_cluster: 'echo.default',
      route_name: a!.route_name,
      authority: 'echo',
      request_id: 'req-ok',
      trace_id: T,
      downstream_remote_address: '127.0.0.1',
      downstream_peer_identity: null,
      user_agent: 'access-log-test',
      x_forwarded_for: '127.0.0.1',
    });
    assert.match(String(a!.route_name), /echo/);
    assert.ok(Math.abs(Date.parse(String(a!.start_time)) - Date.now()) < 60_000, String(a!.start_time));
    assert.ok((a!.duration as number) >= 0 && (a!.duration as number) < 5000);
    assert.equal(b!.response_code, 404);
    assert.equal(b!.weft_error, 'NO_ROUTE');
    assert.equal(b!.response_flags, 'NR');
    assert.equal(b!.upstream_host, null);
    assert.equal(b!.request_id, 'req-miss');
    assert.equal(b!.bytes_sent, Buffer.byteLength(miss.body));
    assert.equal(b!.trace_id, null, 'tracing is off and the request carried no traceparent');
    console.log(`access log On: ${lines(log).length} lines for 2 exchanges (200 via ${a!.upstream_host}, 404 ${b!.weft_error})`);
  });

  test('Off writes nothing; Sampled 50% logs about half', async () => {
    const offFile = join(dir, 'off.log');
    const off = await start(`{ mode: Off, path: "${offFile}" }`);
    const sampledFile = join(dir, 'sampled.log');
    const sampled = await start(`{ mode: Sampled, sampling: 50, path: "${sampledFile}" }`);
    const n = 400;
    for (let i = 0; i < 20; i++) assert.equal((await send(off.outbound, 'echo', '/off')).status, 200);
    const batch = 20;
    for (let i = 0; i < n; i += batch) {
      const statuses = await Promise.all(Array.from({ length: batch }, () => send(sampled.outbound, 'echo', '/sampled').then((r) => r.status)));
      assert.ok(statuses.every((s) => s === 200), statuses.join(','));
    }
    // Lines are written asynchronously: wait until the count stops moving.
    let last = -1;
    await eventually(() => {
      const now = lines(sampledFile).length;
      const still = now === last && now > 0;
      last = now;
      return still;
    }, 5000, 'sampled log settled');
    await new Promise((r) => setTimeout(r, 200));
    const logged = lines(sampledFile).length;
    assert.equal(existsSync(offFile), false, 'mode Off opens no file');
    // Binomial(400, 0.5): sd 10; ±40 is four sd.
    console.log(`access log Sampled 50%: ${logged}/${n} exchanges logged (tolerance 160-240); Off: 0 of 20`);
    assert.ok(logged >= 160 && logged <= 240, `${logged} of ${n}`);
  });
});
