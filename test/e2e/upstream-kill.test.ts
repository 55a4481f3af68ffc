// An upstream dies under load: three echo app processes behind one service, a caller proxy with
// route retries and outlier detection, an open-loop load of 300 requests/s for 30 s from this
// process over keep-alive connections, and one app killed (SIGKILL) after about 5 s. The client
// must barely notice: retries cover the requests that hit the dead app, and outlier detection
// takes it out of the pick after a few failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { eventually, proxyMetrics, startProxy, tempFile } from './harness.js';

const RATE = 300;
const SECONDS = 30;
const KILL_AT_MS = 5000;

/** An HTTP echo app in a process of its own, so it can be killed; resolves once it listens. */
function startEchoProcess(name: string): Promise<{ proc: ChildProcess; port: number }> {
  const script = `
    const http = require('node:http');
    const s = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': ${name.length} }); res.end(${JSON.stringify(name)}); });
    });
    s.keepAliveTimeout = 60000;
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${name} did not start within 5 s`));
    }, 5000);
    proc.stdout!.once('data', (c: Buffer) => {
      clearTimeout(timer);
      resolve({ proc, port: Number(c.toString().trim()) });
    });
    proc.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

function mesh(ports: number[]): string {
  return `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
${ports
  .map(
    (p, i) => `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: echo-${i + 1}, labels: { app: echo } }
spec: { address: 127.0.0.1, ports: { http: ${p} } }
---
`,
  )
  .join('')}apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: 1 } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo }
spec:
  parentRefs: [{ kind: Service, name: echo, port: 80 }]
  rules:
  - retry: { codes: [502, 503], attempts: 3, backoff: 5ms }
    backendRefs: [{ name: echo, port: 80 }]
---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: echo }
spec:
  targetRefs: [{ kind: Service, name: echo }]
  outlierDetection: { consecutive5xx: 5, consecutiveConnectFailures: 2, baseEjectionTime: 30s, maxEjectionPercent: 34 }
`;
}

test(`an upstream killed under ${RATE} requests/s: the client error rate stays at or below 0.1 %`, { timeout: 90_000 }, async () => {
  const apps = await Promise.all(['echo-1', 'echo-2', 'echo-3'].map(startEchoProcess));
  const proxy = await startProxy(tempFile('mesh.yaml', mesh(apps.map((a) => a.port))), 'client-1').catch(async (err) => {
    for (const a of apps) a.proc.kill('SIGKILL');
    throw err;
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  try {
    // Warm up: every app answers through the proxy.
    await eventually(async () => (await send(proxy.outbound, agent)).status === 200, 5000, 'first answer');

    const total = RATE * SECONDS;
    const latencies: number[] = [];
    const failures = new Map<string, number>();
    let errors = 0;
    const pending: Array<Promise<void>> = [];
    const start = performance.now();
    let sent = 0;
    let killed = false;
    // Open loop: each request leaves at its scheduled time, whether or not earlier ones have answered.
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now() - start;
        if (!killed && now >= KILL_AT_MS) {
          killed = true;
          apps[0]!.proc.kill('SIGKILL');
        }
        const due = Math.min(total, Math.floor((now * RATE) / 1000) + 1);
        for (; sent < due; sent++) {
          const t0 = performance.now();
          pending.push(
            send(proxy.outbound, agent).then(
              (r) => {
                latencies.push(performance.now() - t0);
                if (r.status !== 200) {
                  errors++;
                  const why = `${r.status} ${r.error}`;
                  failures.set(why, (failures.get(why) ?? 0) + 1);
                }
              },
              (err: Error) => {
                latencies.push(performance.now() - t0);
                errors++;
                failures.set(err.message, (failures.get(err.message) ?? 0) + 1);
              },
            ),
          );
        }
        if (sent >= total) {
          clearInterval(tick);
          resolve();
        }
      }, 2);
    });
    await Promise.all(pending);
    const elapsed = (performance.now() - start) / 1000;
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
    const rate = errors / total;
    const metrics = await proxyMetrics(proxy);
    const ejections = [...metrics.matchAll(/^weft_outlier_ejections_total\{destination_service="echo.default",reason="([a-z_0-9]+)"\} (\d+)$/gm)].map((m) => `${m[1]}=${m[2]}`);
    const retried = /weft_retries_total\{destination_service="echo.default",result="retried"\} (\d+)/.exec(metrics)?.[1] ?? '0';
    console.log(
      `upstream kill: requests ${total}, errors ${errors}, error rate ${(rate * 100).toFixed(3)} %, p99 ${p99.toFixed(1)} ms, sent over ${elapsed.toFixed(1)} s, retried ${retried}, ejections ${ejections.join(' ') || 'none'}${failures.size > 0 ? `, failures ${JSON.stringify(Object.fromEntries(failures))}` : ''}`,
    );
    assert.ok(elapsed < SECONDS + 5, `the load ran on schedule (${elapsed.toFixed(1)} s)`);
    assert.ok(rate <= 0.001, `error rate ${(rate * 100).toFixed(3)} % is over 0.1 %`);
    assert.ok(ejections.length > 0, 'the dead endpoint was ejected');
  } finally {
    agent.destroy();
    await proxy.stop();
    for (const a of apps) a.proc.kill('SIGKILL');
  }
});

function send(port: number, agent: Agent): Promise<{ status: number; error: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: 'echo' }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, error: String(res.headers['weft-error'] ?? '') }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out after 10 s')));
    req.on('error', reject);
    req.end();
  });
}
