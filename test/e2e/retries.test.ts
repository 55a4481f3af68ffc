// Route retries end to end: a `weft proxy --file` in front of an upstream that fails the first
// requests of each key with 503, with a route retrying 503s and a destination whose retry budget is
// empty.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { meshYaml, proxyMetrics, startProxy, tempFile, type RunningProxy } from './harness.js';

/** `/<key>/fail/<n>`: the first n requests of a key get 503, later ones 200 with the request body. */
async function startFlaky(): Promise<{ port: number; seen: Map<string, string[]>; close(): Promise<void> }> {
  const seen = new Map<string, string[]>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const [, key = '', , n = '0'] = (req.url ?? '').split('/');
      const list = seen.get(key) ?? [];
      list.push(body);
      seen.set(key, list);
      const fail = list.length <= Number(n);
      res.writeHead(fail ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(fail ? 'unavailable' : `ok ${list.length} ${body}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, seen, close: () => new Promise((r) => server.close(() => r())) };
}

function send(port: number, path: string, method = 'GET', body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host: 'echo' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const rules = `  - matches: [{ path: { type: PathPrefix, value: /budget } }]
    retry: { codes: [503], attempts: 3, backoff: 5ms }
    backendRefs: [{ name: echo-v2, port: 80 }]
  - retry: { codes: [503], attempts: 3, backoff: 5ms }
    backendRefs: [{ name: echo-v1, port: 80 }]`;

const emptyBudget = `---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: no-retries }
spec:
  targetRefs: [{ kind: Service, name: echo-v2 }]
  retryBudget: { percent: 0, minRetriesPerSecond: 0 }`;

describe('route retries', () => {
  let flaky: Awaited<ReturnType<typeof startFlaky>>;
  let proxy: RunningProxy;

  before(async () => {
    flaky = await startFlaky();
    const file = tempFile('mesh.yaml', meshYaml({ v1: flaky.port, v2: flaky.port, tcp: 1 }, rules, emptyBudget));
    proxy = await startProxy(file, 'client-1');
  });

  after(async () => {
    await proxy?.stop();
    await flaky?.close();
  });

  test('two 503s then a 200: the client sees the 200, the upstream saw three tries', async () => {
    const r = await send(proxy.outbound, '/a/fail/2');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok 3 ');
    assert.equal(flaky.seen.get('a')!.length, 3);
  });

  test('a PUT body is replayed on each try; a POST is not retried', async () => {
    const put = await send(proxy.outbound, '/b/fail/1', 'PUT', 'payload');
    assert.equal(put.status, 200);
    assert.deepEqual(flaky.seen.get('b'), ['payload', 'payload']);
    const post = await send(proxy.outbound, '/c/fail/1', 'POST', 'once');
    assert.equal(post.status, 503);
    assert.deepEqual(flaky.seen.get('c'), ['once']);
  });

  test('attempts exhausted: the app\'s own 503 comes back', async () => {
    const r = await send(proxy.outbound, '/d/fail/9');
    assert.equal(r.status, 503);
    assert.equal(r.body, 'unavailable');
    assert.equal(flaky.seen.get('d')!.length, 4);
  });

  test('an exhausted budget lets the 503 through and is counted', async () => {
    const r = await send(proxy.outbound, '/budget/fail/1');
    assert.equal(r.status, 503);
    assert.equal(flaky.seen.get('budget')!.length, 1);
    const metrics = await proxyMetrics(proxy);
    assert.match(metrics, /weft_retries_total\{destination_service="echo-v2.default",result="budget_exhausted"\} 1\n/);
    assert.match(metrics, /weft_retries_total\{destination_service="echo-v1.default",result="retried"\} 6\n/);
    assert.match(metrics, /weft_retries_total\{destination_service="echo-v1.default",result="attempts_exhausted"\} 1\n/);
  });
});
