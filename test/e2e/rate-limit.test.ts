// RateLimitPolicy end to end: `weft proxy --file` processes enforcing limits on their inbound side,
// and one real redis-server for the global limits.
//   1. local: a token bucket of 5 per second on one proxy, keyed by a header;
//   2. global: one Service with three workloads, each behind its own proxy, sharing a fixed window
//      of 10 requests per 2 s through Redis — the total allowed per window is exact;
//   3. Redis stopped mid-test: FailOpen lets everything through, FailClosed answers 429 at once;
//      with Redis back, the limits apply again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { eventually, freePort, proxyMetrics, startEcho, startProxy, tempFile, type RunningProxy } from './harness.js';

/** A redis-server on 127.0.0.1:`port`, no persistence; resolves once it accepts commands. */
async function startRedis(port: number): Promise<{ proc: ChildProcess; stop(): Promise<void> }> {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await eventually(() => ping(port), 5000, `redis-server on port ${port}`);
  return {
    proc,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** True when something answers PING with PONG on `port`. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('data', (c: Buffer) => {
      text += c.toString();
      if (text.includes('\r\n')) done(text.startsWith('+PONG'));
    });
    s.write('PING\r\n');
  });
}

interface Answer {
  status: number;
  error: string | undefined;
  retryAfter: string | undefined;
  body: string;
  ms: number;
}

/** One request straight to a proxy's inbound listener (plaintext: these proxies have no identity). */
function call(port: number, headers: Record<string, string> = {}): Promise<Answer> {
  const start = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host: 'api', ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, error: res.headers['weft-error'] as string | undefined, retryAfter: res.headers['retry-after'] as string | undefined, body, ms: performance.now() - start }),
      );
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message, retryAfter: undefined, body: '', ms: performance.now() - start }));
    req.setTimeout(5000, () => req.destroy(new Error('no answer within 5 s')));
    req.end();
  });
}

/** `n` requests at once, spread over `ports` in turn; with how long the whole burst took. */
async function burst(ports: number[], n: number, headers: Record<string, string> = {}): Promise<{ answers: Answer[]; byPort: number[][]; ms: number }> {
  const start = performance.now();
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => call(ports[i % ports.length]!, headers)));
  const byPort = ports.map((_, p) => answers.filter((_, i) => i % ports.length === p).map((a) => a.status));
  return { answers, byPort, ms: performance.now() - start };
}

const count = (answers: Answer[], status: number): number => answers.filter((a) => a.status === status).length;

function mesh(redisPort: number, appPort: number, inbound: Record<string, number> = {}): string {
  const w = (name: string, app: string): string => `---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: ${name}, labels: { app: ${app} } }
spec: { address: 127.0.0.1, ports: { http: ${appPort} }${inbound[name] === undefined ? '' : `, proxy: { inboundPort: ${inbound[name]} }`} }
`;
  const svc = (name: string): string => `---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: ${name} }
spec: { selector: { app: ${name} }, ports: [{ name: http, port: 80, protocol: HTTP }] }
`;
  return `apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: mesh }
spec:
  # 1s, not the 50ms default: on a busy 2-core test machine a slow answer would fail open and blur the exact count.
  rateLimiting: { redis: { address: "127.0.0.1:${redisPort}", timeout: 1s } }
${svc('local-api')}${svc('global-api')}${svc('strict-api')}${w('local-1', 'local-api')}${w('global-1', 'global-api')}${w('global-2', 'global-api')}${w('global-3', 'global-api')}${w('strict-1', 'strict-api')}---
apiVersion: weft.dev/v1alpha1
kind: RateLimitPolicy
metadata: { name: per-user }
spec:
  targetRefs: [{ kind: Service, name: local-api }]
  key: { type: Header, header: x-user }
  local: { requests: 5, per: 1s }
---
apiVersion: weft.dev/v1alpha1
kind: RateLimitPolicy
metadata: { name: shared }
spec:
  targetRefs: [{ kind: Service, name: global-api }]
  global: { requests: 10, per: 2s }
---
apiVersion: weft.dev/v1alpha1
kind: RateLimitPolicy
metadata: { name: strict }
spec:
  targetRefs: [{ kind: Service, name: strict-api }]
  global: { requests: 1000, per: 1s }
  failureMode: FailClosed
`;
}

describe('rate limiting', () => {
  let redisPort: number;
  let redis: Awaited<ReturnType<typeof startRedis>> | null = null;
  let app: Awaited<ReturnType<typeof startEcho>>;
  const proxies: Record<string, RunningProxy> = {};

  before(async () => {
    redisPort = await freePort();
    redis = await startRedis(redisPort);
    app = await startEcho('api');
    const file = tempFile('mesh.yaml', mesh(redisPort, app.port));
    const names = ['local-1', 'global-1', 'global-2', 'global-3', 'strict-1'];
    for (const name of names) proxies[name] = await startProxy(file, name, ['-q']);
    // Callers reach each proxy's inbound port directly; the file says where they are, for completeness.
    writeFileSync(file, mesh(redisPort, app.port, Object.fromEntries(names.map((n) => [n, proxies[n]!.inbound]))));
  });

  after(async () => {
    await Promise.all(Object.values(proxies).map((p) => p.stop()));
    await app?.close();
    await redis?.stop();
  });

  test('local: 5 per second per x-user on one proxy; 429 RATE_LIMITED with retry-after; keys have their own buckets', async () => {
    const port = proxies['local-1']!.inbound;
    const a = await burst([port], 15, { 'x-user': 'a' });
    const allowed = count(a.answers, 200);
    // The bucket starts full (burst 5) and refills 5/s: a burst of b ms may get 5 × b/1000 more.
    const extra = Math.floor((5 * a.ms) / 1000);
    assert.ok(allowed >= 5 && allowed <= 5 + extra, `allowed ${allowed} of 15 in ${a.ms.toFixed(0)} ms`);
    const refused = a.answers.filter((x) => x.status === 429);
    assert.equal(refused.length, 15 - allowed, JSON.stringify(a.answers.filter((x) => x.status !== 200 && x.status !== 429)));
    for (const r of refused) {
      assert.equal(r.error, 'RATE_LIMITED');
      assert.equal(r.retryAfter, '1', 'the next token is less than a second away');
      assert.match(r.body, /over the local limit of RateLimitPolicy default\/per-user: 5 requests per 1s per header x-user/);
    }
    const b = await burst([port], 15, { 'x-user': 'b' });
    const allowedB = count(b.answers, 200);
    assert.ok(allowedB >= 5 && allowedB <= 5 + Math.floor((5 * b.ms) / 1000), `user b: allowed ${allowedB}`);
    // A second later user a's bucket is full again.
    await new Promise((r) => setTimeout(r, 1100));
    const again = await burst([port], 8, { 'x-user': 'a' });
    assert.ok(count(again.answers, 200) >= 5, `after a second: ${count(again.answers, 200)} allowed`);
    const metrics = await proxyMetrics(proxies['local-1']!);
    const limited = refused.length + (15 - allowedB) + (8 - count(again.answers, 200));
    assert.match(metrics, new RegExp(`weft_rate_limited_total\\{destination_service="local-1.default",policy="default/per-user",scope="local"\\} ${limited}\\n`));
    assert.match(metrics, /weft_requests_total\{direction="inbound",[^}]*route="inbound:rate-limited:default\/per-user",response_code="429",grpc_status="",error_code="RATE_LIMITED",[^}]*\} \d+/);
    console.log(`local: user a ${allowed}/15 allowed in ${a.ms.toFixed(0)} ms, user b ${allowedB}/15, after 1.1 s ${count(again.answers, 200)}/8; ${limited} answered 429`);
  });

  test('global: three proxies share one window of 10 per 2 s through Redis — exactly 10 allowed per window', async () => {
    const ports = ['global-1', 'global-2', 'global-3'].map((n) => proxies[n]!.inbound);
    const windows: string[] = [];
    for (let round = 0; round < 2; round++) {
      const b = await burst(ports, 36);
      // Exact only when the whole burst falls within one window (2 s); it takes far less.
      assert.ok(b.ms < 1500, `the burst took ${b.ms} ms`);
      const allowed = count(b.answers, 200);
      assert.equal(allowed, 10, `round ${round}: ${JSON.stringify(b.byPort)}`);
      assert.equal(count(b.answers, 429), 26);
      for (const r of b.answers.filter((x) => x.status === 429)) {
        assert.equal(r.error, 'RATE_LIMITED');
        assert.ok(r.retryAfter === '1' || r.retryAfter === '2', `retry-after ${r.retryAfter}`);
      }
      assert.ok(b.byPort.every((s) => s.length === 12), 'each proxy got its share of callers');
      windows.push(`window ${round + 1}: ${allowed}/36 allowed (per proxy ${b.byPort.map((s) => s.filter((x) => x === 200).length).join('+')}) in ${b.ms.toFixed(0)} ms`);
      // The next window opens when this one's key expires.
      const wait = Math.max(...b.answers.map((x) => Number(x.retryAfter ?? 0))) * 1000;
      await new Promise((r) => setTimeout(r, wait + 100));
    }
    let total = 0;
    for (const n of ['global-1', 'global-2', 'global-3']) {
      const m = /weft_rate_limited_total\{destination_service="[^"]+",policy="default\/shared",scope="global"\} (\d+)/.exec(await proxyMetrics(proxies[n]!));
      total += Number(m?.[1] ?? 0);
    }
    assert.equal(total, 52, 'the proxies counted every refusal');
    for (const n of ['global-1', 'global-2', 'global-3']) assert.doesNotMatch(await proxyMetrics(proxies[n]!), /weft_rate_limit_redis_errors_total/, `${n}: no check failed open`);
    console.log(`global across 3 proxies (limit 10 per 2 s, exact): ${windows.join('; ')}`);
  });

  test('Redis stopped: FailOpen lets everything through, FailClosed answers 429 in bounded time; Redis back: limits again', async () => {
    const globalPorts = ['global-1', 'global-2', 'global-3'].map((n) => proxies[n]!.inbound);
    const strict = proxies['strict-1']!.inbound;
    assert.equal((await call(strict)).status, 200, 'FailClosed passes while Redis answers');
    assert.match(await proxyMetrics(proxies['strict-1']!), /weft_rate_limit_redis_connected\{address="127.0.0.1:\d+"\} 1\n/);
    await redis!.stop();
    redis = null;

    const open = await burst(globalPorts, 30);
    assert.equal(count(open.answers, 200), 30, `FailOpen: ${JSON.stringify(open.byPort)}`);
    const closed = await burst([strict], 10);
    assert.equal(count(closed.answers, 429), 10, JSON.stringify(closed.answers.map((a) => a.status)));
    const slowest = Math.max(...closed.answers.map((a) => a.ms));
    // A lost connection fails at once (then backoff fails fast); no request waits for the 1 s timeout.
    assert.ok(slowest < 1000, `FailClosed answered within ${slowest.toFixed(0)} ms`);
    for (const r of closed.answers) {
      assert.equal(r.error, 'RATE_LIMITED');
      assert.equal(r.retryAfter, '1');
      assert.match(r.body, /RateLimitPolicy default\/strict fails closed and its global limit cannot be checked/);
    }
    assert.match(await proxyMetrics(proxies['strict-1']!), /weft_rate_limit_redis_errors_total\{reason="unavailable"\} [1-9]/);

    redis = await startRedis(redisPort);
    const start = performance.now();
    await eventually(async () => (await call(strict)).status === 200, 5000, 'FailClosed passes again once Redis is back');
    const recovered = performance.now() - start;
    // Each proxy reconnects on its own backoff (at most 2 s); the count below needs all three back.
    for (const n of ['global-1', 'global-2', 'global-3']) {
      await eventually(async () => /weft_rate_limit_redis_connected\{address="[^"]+"\} 1/.test(await proxyMetrics(proxies[n]!)), 5000, `${n} reconnected to Redis`);
    }
    // The window of `shared` starts afresh in the new (empty) Redis: exactly 10 again.
    const back = await burst(globalPorts, 30);
    assert.equal(count(back.answers, 200), 10, JSON.stringify(back.byPort));
    console.log(
      `redis down: FailOpen ${count(open.answers, 200)}/30 allowed; FailClosed ${count(closed.answers, 429)}/10 answered 429, slowest ${slowest.toFixed(0)} ms; ` +
        `redis back: FailClosed passing after ${recovered.toFixed(0)} ms, global ${count(back.answers, 200)}/30 allowed`,
    );
  });
});
