// The standalone proxy end to end: a real `weft proxy` process from a file, real upstreams, real
// sockets on loopback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { writeFileSync } from 'node:fs';
import {
  eventually, freePort, meshYaml, rawExchange, startEcho, startProxy, startTcpEcho, tempFile, type RunningProxy, type Seen,
} from './harness.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 32 });
after(() => agent.destroy());

function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host: 'echo', ...headers }, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends `total` requests, `concurrency` at a time; returns the replies in order of completion. */
async function load(total: number, concurrency: number, send: (i: number) => Promise<Reply>): Promise<Array<Reply | Error>> {
  const out: Array<Reply | Error> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      out.push(await send(i).catch((e: Error) => e));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

const seenBy = (r: Reply): string => (JSON.parse(r.body) as Seen).name;

describe('weft proxy from a file', () => {
  let v1: Awaited<ReturnType<typeof startEcho>>;
  let v2: Awaited<ReturnType<typeof startEcho>>;
  let tcp: Awaited<ReturnType<typeof startTcpEcho>>;
  let file: string;
  let proxy: RunningProxy;

  before(async () => {
    v1 = await startEcho('v1');
    v2 = await startEcho('v2');
    tcp = await startTcpEcho();
    file = tempFile('mesh.yaml', meshYaml({ v1: v1.port, v2: v2.port, tcp: tcp.port }));
    proxy = await startProxy(file, 'client-1', ['--upstream', 'tcp-echo:9000=0', '--request-header-timeout', '500ms']);
  });

  after(async () => {
    await proxy?.stop();
    await v1?.close();
    await v2?.close();
    tcp?.close();
  });

  test('splits traffic 90/10 by weight over 1,000 requests (±4 points)', async () => {
    const replies = await load(1000, 20, () => get(proxy.outbound, '/split'));
    const ok = replies.filter((r): r is Reply => !(r instanceof Error) && r.status === 200);
    assert.equal(ok.length, 1000);
    const share = ok.filter((r) => seenBy(r) === 'v2').length / ok.length;
    assert.ok(Math.abs(share - 0.1) <= 0.04, `v2 share ${share}`);
  });

  test('a header match sends every request to v2', async () => {
    const replies = await load(50, 5, () => get(proxy.outbound, '/canary', { 'x-canary': '1' }));
    assert.deepEqual(new Set(replies.map((r) => seenBy(r as Reply))), new Set(['v2']));
  });

  test('routes absolute-form (HTTP_PROXY style) and origin-form by authority', async () => {
    const abs = await rawExchange(proxy.outbound, 'GET http://echo/hello?x=1 HTTP/1.1\r\nHost: ignored\r\nx-canary: 1\r\nConnection: close\r\n\r\n');
    assert.match(abs.text, /^HTTP\/1\.1 200 /);
    const seen = JSON.parse(abs.text.slice(abs.text.indexOf('\r\n\r\n') + 4)) as Seen;
    assert.equal(seen.url, '/hello?x=1');
    assert.equal(seen.headers.host, 'echo');
    for (const host of ['echo.default:80', 'echo.default', 'echo:80', 'echo.default.svc.cluster.local']) {
      const r = await get(proxy.outbound, '/', { host, 'x-canary': '1' });
      assert.equal(r.status, 200, host);
    }
  });

  test('adds x-request-id and x-forwarded-for, strips hop-by-hop fields both ways', async () => {
    const r = await get(proxy.outbound, '/h', { 'x-canary': '1', connection: 'x-secret', 'x-secret': 'no', te: 'trailers' });
    const seen = JSON.parse(r.body) as Seen;
    assert.match(String(seen.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-secret'], undefined);
    assert.equal(seen.headers.te, undefined);
    assert.equal(r.headers['x-private'], undefined, 'a field named by the upstream Connection header is removed');
    const kept = await get(proxy.outbound, '/h', { 'x-canary': '1', 'x-request-id': 'abc-123', 'x-forwarded-for': '10.0.0.9' });
    const seen2 = JSON.parse(kept.body) as Seen;
    assert.equal(seen2.headers['x-request-id'], 'abc-123');
    assert.equal(seen2.headers['x-forwarded-for'], '10.0.0.9, 127.0.0.1');
  });

  test('streams chunked bodies both ways and honours Expect: 100-continue', async () => {
    const chunked = await rawExchange(
      proxy.outbound,
      'POST /up HTTP/1.1\r\nHost: echo\r\nx-canary: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
    );
    assert.match(chunked.text, /^HTTP\/1\.1 200 /);
    assert.equal((JSON.parse(chunked.text.slice(chunked.text.indexOf('\r\n\r\n') + 4)) as Seen).body, 'hello world');
    const down = await rawExchange(proxy.outbound, 'GET /chunked HTTP/1.1\r\nHost: echo\r\nx-canary: 1\r\nConnection: close\r\n\r\n');
    assert.match(down.text, /transfer-encoding: chunked\r\n/i);
    assert.match(down.text, /\r\n4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n$/);

    const s = connect(proxy.outbound, '127.0.0.1');
    let text = '';
    s.on('data', (c: Buffer) => (text += c.toString()));
    s.write('POST /exp HTTP/1.1\r\nHost: echo\r\nx-canary: 1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
    await eventually(() => text.startsWith('HTTP/1.1 100 Continue\r\n'), 3000, '100 Continue');
    s.end('ping');
    await eventually(() => text.includes('"body":"ping"'), 3000, 'final response');
    s.destroy();
  });

  test('keeps connections alive and serves pipelined requests in order', async () => {
    const r = await rawExchange(
      proxy.outbound,
      'GET /p1 HTTP/1.1\r\nHost: echo\r\nx-canary: 1\r\n\r\nGET /p2 HTTP/1.1\r\nHost: echo\r\nx-canary: 1\r\nConnection: close\r\n\r\n',
    );
    assert.equal(r.text.match(/HTTP\/1\.1 200 /g)?.length, 2);
    assert.ok(r.text.indexOf('/p1') < r.text.indexOf('/p2'));
    assert.ok(r.closed);
  });

  test('mesh errors are coded: NO_ROUTE', async () => {
    const r = await get(proxy.outbound, '/', { host: 'nowhere' });
    assert.equal(r.status, 404);
    assert.equal(r.headers['weft-error'], 'NO_ROUTE');
    assert.deepEqual(Object.keys(JSON.parse(r.body) as object), ['code', 'message']);
    assert.match((JSON.parse(r.body) as { message: string }).message, /nowhere/);
  });

  test('an upstream that drops the connection gives UPSTREAM_RESET', async () => {
    const r = await get(proxy.outbound, '/reset', { 'x-canary': '1' });
    assert.equal(r.status, 502);
    assert.equal(r.headers['weft-error'], 'UPSTREAM_RESET');
    assert.equal((await get(proxy.outbound, '/fine', { 'x-canary': '1' })).status, 200, 'the next request is unaffected');
  });

  test('a slow upstream past the route timeout gives UPSTREAM_TIMEOUT in bounded time', async () => {
    const t0 = Date.now();
    const r = await get(proxy.outbound, '/slow?ms=2000');
    assert.equal(r.status, 504);
    assert.equal(r.headers['weft-error'], 'UPSTREAM_TIMEOUT');
    assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
    assert.equal((await get(proxy.outbound, '/fast', { 'x-canary': '1' })).status, 200, 'other routes unaffected');
  });

  const smuggling: Array<[string, string]> = [
    ['CL and TE together', 'POST / HTTP/1.1\r\nHost: echo\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: echo\r\n\r\n'],
    ['differing duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: echo\r\nContent-Length: 5\r\nContent-Length: 45\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: echo\r\n\r\n'],
    ['bad chunk size', 'POST / HTTP/1.1\r\nHost: echo\r\nx-canary: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
    ['chunk size with a sign', 'POST / HTTP/1.1\r\nHost: echo\r\nx-canary: 1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n'],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: echo\r\nX-A: a\r\n b\r\n\r\n'],
    ['bare LF in a header', 'GET / HTTP/1.1\r\nHost: echo\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n'],
    ['bare CR in a header', 'GET / HTTP/1.1\r\nHost: echo\r\nX-A: a\rb\r\n\r\n'],
    ['invalid header name', 'GET / HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding : chunked\r\n\r\n'],
    ['TE that is not chunked', 'POST / HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
    ['two Host fields', 'GET / HTTP/1.1\r\nHost: echo\r\nHost: other\r\n\r\n'],
  ];
  for (const [name, bytes] of smuggling) {
    test(`refuses ${name} with 4xx/501 and closes the connection`, async () => {
      const before = v1.seen.length + v2.seen.length;
      const r = await rawExchange(proxy.outbound, bytes);
      assert.match(r.text, /^HTTP\/1\.1 (400|501) /);
      assert.match(r.text, /weft-error: (BAD_REQUEST|NOT_IMPLEMENTED)\r\n/);
      assert.equal(r.text.match(/HTTP\/1\.1/g)?.length, 1, 'exactly one response');
      assert.ok(r.closed, 'connection closed');
      assert.equal(v1.seen.concat(v2.seen).filter((s) => s.url === '/smuggled').length, 0);
      if (name !== 'bad chunk size' && name !== 'chunk size with a sign') assert.equal(v1.seen.length + v2.seen.length, before);
    });
  }

  test('431 for more than 60 KiB of headers or more than 100 fields', async () => {
    const big = await rawExchange(proxy.outbound, `GET / HTTP/1.1\r\nHost: echo\r\nX-Big: ${'a'.repeat(61 * 1024)}\r\n\r\n`);
    assert.match(big.text, /^HTTP\/1\.1 431 /);
    assert.ok(big.closed);
    let many = 'GET / HTTP/1.1\r\nHost: echo\r\n';
    for (let i = 0; i < 101; i++) many += `X-${i}: v\r\n`;
    const r = await rawExchange(proxy.outbound, `${many}\r\n`);
    assert.match(r.text, /^HTTP\/1\.1 431 /);
  });

  test('a request head that never completes gets 408 after the header timeout', async () => {
    const t0 = Date.now();
    const r = await rawExchange(proxy.outbound, 'GET / HTTP/1.1\r\nHost: echo\r\n', 3000);
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    assert.ok(r.closed);
    assert.ok(Date.now() - t0 >= 400, 'not before the timeout');
  });

  test('a TCP service works through a local upstream port', async () => {
    const port = proxy.upstreams['tcp-echo.default:9000']!;
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString()));
    const closed = new Promise((r) => s.on('close', r));
    s.write('ping over tcp');
    await eventually(() => got === 'ping over tcp', 3000, 'echo');
    s.end();
    await closed;
  });

  test('admin: ready, metrics with labels, config_dump and clusters', async () => {
    const ready = await get(proxy.admin, '/ready');
    assert.equal(ready.status, 200);
    const metrics = (await get(proxy.admin, '/metrics')).body;
    assert.match(metrics, /weft_requests_total\{direction="outbound",[^}]*destination_service="echo.default",[^}]*route="[^"]+",response_code="200",grpc_status="",error_code="",mtls="false"\} \d+/);
    assert.match(metrics, /weft_requests_total\{[^}]*response_code="404",grpc_status="",error_code="NO_ROUTE",mtls="false"\} [1-9]/);
    assert.match(metrics, /weft_request_duration_seconds_bucket\{[^}]*le="\+Inf"\} \d+/);
    const dump = JSON.parse((await get(proxy.admin, '/config_dump')).body) as { snapshot: { workload: { name: string } } };
    assert.equal(dump.snapshot.workload.name, 'client-1');
    const clusters = JSON.parse((await get(proxy.admin, '/clusters')).body) as Array<{ name: string; endpoints: Array<{ address: string; totalRequests: number }> }>;
    const c1 = clusters.find((c) => c.name === 'echo-v1.default:80')!;
    assert.equal(c1.endpoints[0]!.address, `127.0.0.1:${v1.port}`);
    assert.ok(c1.endpoints[0]!.totalRequests > 0);
  });
});

describe('weft proxy under change and failure', () => {
  test('a hot edit applies under load with no failed request; an invalid edit keeps the last good config', async () => {
    const v1 = await startEcho('v1');
    const v2 = await startEcho('v2');
    const p = { v1: v1.port, v2: v2.port, tcp: await freePort() };
    const file = tempFile('mesh.yaml', meshYaml(p));
    const proxy = await startProxy(file, 'client-1');
    try {
      let stop = false;
      const results: Array<Reply | Error> = [];
      const loop = async (): Promise<void> => {
        const deadline = Date.now() + 10_000;
        while (!stop && Date.now() < deadline) results.push(await get(proxy.outbound, '/load').catch((e: Error) => e));
      };
      const loops = Array.from({ length: 8 }, loop);
      await new Promise((r) => setTimeout(r, 300));
      writeFileSync(file, meshYaml(p, '  - backendRefs: [{ name: echo-v2, port: 80 }]'));
      await eventually(async () => seenBy(await get(proxy.outbound, '/probe')) === 'v2' && seenBy(await get(proxy.outbound, '/probe')) === 'v2', 5000, 'edit applied');
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(loops);
      const failed = results.filter((r) => r instanceof Error || r.status !== 200);
      assert.ok(results.length > 100, `only ${results.length} requests`);
      assert.equal(failed.length, 0, `failures: ${failed.slice(0, 3).map(String).join('; ')}`);
      const replies = await load(50, 5, () => get(proxy.outbound, '/after'));
      assert.deepEqual(new Set(replies.map((r) => seenBy(r as Reply))), new Set(['v2']));

      // Invalid: a path that does not start with "/". Refused with file, line and field; v2 keeps serving.
      writeFileSync(file, meshYaml(p, '  - matches: [{ path: { type: PathPrefix, value: nope } }]\n    backendRefs: [{ name: echo-v1, port: 80 }]'));
      const refusal = /mesh\.yaml:\d+ HTTPRoute\/echo: spec\.rules\[0\]\.matches\[0\]\.path\.value: /;
      await eventually(() => refusal.test(proxy.stderr()), 5000, 'refusal logged with file, line and field');
      const still = await load(20, 4, () => get(proxy.outbound, '/still'));
      assert.deepEqual(new Set(still.map((r) => seenBy(r as Reply))), new Set(['v2']));
      const metrics = (await get(proxy.admin, '/metrics')).body;
      assert.match(metrics, /weft_config_reloads_total\{result="rejected"\} [1-9]/);
    } finally {
      await proxy.stop();
      await v1.close();
      await v2.close();
    }
  });

  test('a stopped upstream gives UPSTREAM_CONNECT_FAILURE', async () => {
    const v2 = await startEcho('v2');
    const dead = await freePort();
    const file = tempFile('mesh.yaml', meshYaml({ v1: dead, v2: v2.port, tcp: await freePort() }, '  - backendRefs: [{ name: echo-v1, port: 80 }]'));
    const proxy = await startProxy(file, 'client-1');
    try {
      const r = await get(proxy.outbound, '/');
      assert.equal(r.status, 503);
      assert.equal(r.headers['weft-error'], 'UPSTREAM_CONNECT_FAILURE');
      assert.match((JSON.parse(r.body) as { message: string }).message, new RegExp(`127\\.0\\.0\\.1:${dead}`));
    } finally {
      await proxy.stop();
      await v2.close();
    }
  });

  test('SIGTERM drains: requests in flight complete, then the process exits 0', async () => {
    const v1 = await startEcho('v1');
    const file = tempFile('mesh.yaml', meshYaml({ v1: v1.port, v2: v1.port, tcp: await freePort() }, '  - backendRefs: [{ name: echo-v1, port: 80 }]'));
    const proxy = await startProxy(file, 'client-1');
    try {
      const inflight = Array.from({ length: 10 }, () => get(proxy.outbound, '/slow?ms=700'));
      await new Promise((r) => setTimeout(r, 200));
      const code = proxy.stop();
      const replies = await Promise.all(inflight);
      assert.deepEqual(replies.map((r) => r.status), Array(10).fill(200));
      assert.equal(await code, 0);
      await assert.rejects(get(proxy.outbound, '/after-drain'), /ECONNREFUSED|ECONNRESET|socket hang up/);
    } finally {
      await proxy.stop();
      await v1.close();
    }
  });
});
