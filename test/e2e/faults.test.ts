// Fault injection end to end: a `weft proxy --file` whose HTTPRoute rules carry ExtensionRef filters
// naming HTTPFaults (an abort for 30 % of requests, a 200 ms delay for all), and one naming an
// HTTPFault that does not exist.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { meshYaml, proxyMetrics, startEcho, startProxy, tempFile, type RunningProxy } from './harness.js';

function send(port: number, path: string): Promise<{ status: number; error: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host: 'echo' }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, error: res.headers['weft-error'] as string | undefined, body: text }));
    });
    req.on('error', reject);
    req.end();
  });
}

const ext = (name: string) => `[{ type: ExtensionRef, extensionRef: { group: weft.dev, kind: HTTPFault, name: ${name} } }]`;
const rules = `  - matches: [{ path: { type: PathPrefix, value: /abort } }]
    filters: ${ext('abort-30')}
    backendRefs: [{ name: echo-v1, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /delay } }]
    filters: ${ext('delay-200')}
    backendRefs: [{ name: echo-v1, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /missing } }]
    filters: ${ext('nowhere')}
    backendRefs: [{ name: echo-v1, port: 80 }]
  - backendRefs: [{ name: echo-v1, port: 80 }]`;

const faults = `---
apiVersion: weft.dev/v1alpha1
kind: HTTPFault
metadata: { name: abort-30 }
spec:
  abort: { httpStatus: 503, percentage: 30 }
---
apiVersion: weft.dev/v1alpha1
kind: HTTPFault
metadata: { name: delay-200 }
spec:
  delay: { fixedDelay: 200ms, percentage: 100 }`;

describe('fault injection', () => {
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let proxy: RunningProxy;

  before(async () => {
    echo = await startEcho('v1');
    const file = tempFile('mesh.yaml', meshYaml({ v1: echo.port, v2: echo.port, tcp: 1 }, rules, faults));
    proxy = await startProxy(file, 'client-1');
  });

  after(async () => {
    await proxy?.stop();
    await echo?.close();
  });

  test('abort 30 %: about 30 % of 400 requests get 503 FAULT_INJECTED, the rest reach the app', async () => {
    const before = echo.seen.length;
    let aborted = 0;
    for (let batch = 0; batch < 400; batch += 20) {
      const results = await Promise.all(Array.from({ length: 20 }, () => send(proxy.outbound, '/abort')));
      for (const r of results) {
        if (r.error !== undefined) {
          assert.equal(r.status, 503);
          assert.equal(r.error, 'FAULT_INJECTED');
          assert.equal(JSON.parse(r.body).code, 'FAULT_INJECTED');
          aborted++;
        } else {
          assert.equal(r.status, 200);
        }
      }
    }
    const share = aborted / 400;
    console.log(`# aborted ${aborted}/400 = ${(share * 100).toFixed(1)} %`);
    assert.ok(Math.abs(share - 0.3) <= 0.07, `aborted share ${share}`);
    assert.equal(echo.seen.length - before, 400 - aborted);
    const metrics = await proxyMetrics(proxy);
    assert.match(metrics, new RegExp(`weft_faults_injected_total\\{route="default/echo/rule/0/match/0",kind="abort"\\} ${aborted}\\n`));
  });

  test('delay 100 % of 200 ms: every request takes at least 200 ms and then succeeds', async () => {
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const r = await send(proxy.outbound, '/delay');
      const ms = performance.now() - t0;
      assert.equal(r.status, 200);
      assert.ok(ms >= 200, `took ${ms} ms`);
    }
    assert.match(await proxyMetrics(proxy), /weft_faults_injected_total\{route="default\/echo\/rule\/1\/match\/0",kind="delay"\} 3\n/);
  });

  test('an ExtensionRef to a missing HTTPFault answers 500 INVALID_BACKEND, never skipping the filter', async () => {
    const r = await send(proxy.outbound, '/missing');
    assert.equal(r.status, 500);
    assert.equal(r.error, 'INVALID_BACKEND');
    assert.match(r.body, /HTTPFault default\/nowhere/);
  });
});
