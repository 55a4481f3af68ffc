// Protocol detection on `--upstream` local ports, with real tools: redis-server and redis-cli
// (client-first RESP, detected as TCP at its first byte), curl over HTTP/1.1 and HTTP/2 prior
// knowledge (detected as HTTP and routed through the port's HTTPRoute), curl over HTTPS to an app
// that terminates TLS itself (detected as TLS: opaque end to end), and a server-first app
// (a greeting like SMTP's `220`), which waits out the bounded detection on an undeclared port and
// gets its greeting at once on a port declared TCP. Everything crosses two proxies with join
// tokens and mutual TLS, on loopback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DETECT_WAIT_MS } from '../../src/proxy/listener/detect.js';
import { applyYaml, eventually, joinToken, proxyMetrics, startControl, startEcho, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';

const GREETING = '220 greet.test ESMTP ready\r\n';

/** Runs a command to completion (at most `ms`); resolves with its exit code and output. */
function run(cmd: string, args: string[], input?: string | Buffer, ms = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString('latin1')));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('error', (e) => (stderr += String(e)));
    const kill = setTimeout(() => p.kill('SIGKILL'), ms);
    p.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, stdout, stderr });
    });
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

/** A port the OS just had free (bound, then released). */
async function osPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** One `PING` on a fresh connection: whether `+PONG` came back within `ms`. */
function pong(port: number, ms = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    let text = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    s.on('error', () => done(false));
    s.on('connect', () => s.write('*1\r\n$4\r\nPING\r\n'));
    s.on('data', (c: Buffer) => {
      text += c.toString();
      if (text.includes('\r\n')) done(text.startsWith('+PONG'));
    });
  });
}

/**
 * A real redis-server on loopback, on a port the OS had free (redis cannot take port 0), with
 * persistence off; another port is tried when that one was taken in between.
 */
async function startRedis(dir: string): Promise<{ port: number; proc: ChildProcess; stop(): Promise<void> }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await osPort();
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    proc.stdout!.on('data', (c: Buffer) => (log += c.toString()));
    proc.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const stop = async (): Promise<void> => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(kill);
      }
    };
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && proc.exitCode === null) {
      if (await pong(port, 500)) return { port, proc, stop };
      await new Promise((r) => setTimeout(r, 50));
    }
    await stop();
    if (!/Address already in use/i.test(log)) throw new Error(`redis-server did not start on port ${port}:\n${log}`);
  }
  throw new Error('redis-server found no free port in 5 attempts');
}

/** A server-first app: every connection is greeted at once, then lines are echoed back. */
async function startGreeter(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write(GREETING);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Connects and, sending nothing, waits for the server to speak: the time from connecting to the greeting's first bytes (null: none within `ms`). */
function timeToGreeting(port: number, ms = 5000): Promise<{ ms: number | null; text: string }> {
  return new Promise((resolve) => {
    const start = performance.now();
    const s = connect({ port, host: '127.0.0.1' });
    let text = '';
    let first: number | null = null;
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ms: first, text });
    }, ms);
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      first ??= performance.now() - start;
      text += c.toString('latin1');
      if (text.length >= GREETING.length) {
        if (!text.includes('hello')) s.write('hello\r\n');
        else if (text.endsWith('hello\r\n')) {
          clearTimeout(timer);
          s.destroy();
          resolve({ ms: first, text });
        }
      }
    });
  });
}

/** The value of one counter series (0 when absent). */
function counter(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const detected = (service: string, protocol: string, reason: string): string => `weft_protocol_detected_total{destination_service="${service}",protocol="${protocol}",reason="${reason}"}`;

describe('protocol detection on --upstream ports, with redis-server, curl and a server-first app', () => {
  let cp: RunningControl;
  let dir: string;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let web: Awaited<ReturnType<typeof startEcho>>;
  let greeter: Awaited<ReturnType<typeof startGreeter>>;
  let server: RunningProxy;
  let client: RunningProxy;
  const proxies: RunningProxy[] = [];
  let secure: HttpsServer;
  const local = (service: string): number => client.upstreams[`${service}.default:${{ kv: 6379, 'kv-tcp': 6379, web: 80, greet: 25, 'greet-tcp': 25, secure: 443 }[service]}`]!;
  const redisCli = (svc: string, args: string[], input?: string) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(local(svc)), ...args], input);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'detect-e2e-'));
    cp = await startControl();
    redis = await startRedis(dir);
    web = await startEcho('web');
    greeter = await startGreeter();
    // An HTTPS app with a self-signed certificate: TLS end to end, which the mesh only carries.
    const cert = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=secure.test', '-days', '1']);
    assert.equal(cert.code, 0, cert.stderr);
    secure = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => res.end(`secure ${req.url}`));
    await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
    const securePort = (secure.address() as AddressInfo).port;
    // Undeclared ports: no `protocol`. The HTTPRoute on web:80 marks what it routes, both ways.
    await applyYaml(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: kv }
spec: { selector: { app: apps }, ports: [{ name: redis, port: 6379 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: web }
spec: { selector: { app: apps }, ports: [{ name: web, port: 80 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: greet }
spec: { selector: { app: apps }, ports: [{ name: greet, port: 25 }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: secure }
spec: { selector: { app: apps }, ports: [{ name: secure, port: 443 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web }
spec:
  parentRefs: [{ kind: Service, name: web, port: 80 }]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: { set: [{ name: x-route, value: web-detected }] }
    - type: ResponseHeaderModifier
      responseHeaderModifier: { set: [{ name: x-routed-by, value: weft }] }
    backendRefs: [{ name: web, port: 80 }]
`,
    );
    server = await startProxyWith([
      '--control-plane', cp.url, '--workload', 'apps-1', '--label', 'app=apps', '--service-account', 'apps', '--token', await joinToken(cp, 'apps'),
      '--app-port', `redis=${redis.port}`, '--app-port', `web=${web.port}`, '--app-port', `greet=${greeter.port}`, '--app-port', `secure=${securePort}`, '-q',
    ]);
    proxies.push(server);
    // The same apps behind the same proxy as ports declared TCP: a second Workload (same address,
    // app ports, identity and proxy), so no app port is both undeclared and TCP for one workload.
    await applyYaml(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: apps-raw, labels: { app: apps-raw } }
spec: { address: 127.0.0.1, ports: { redis: ${redis.port}, greet: ${greeter.port} }, serviceAccount: apps, proxy: { inboundPort: ${server.inbound} } }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: kv-tcp }
spec: { selector: { app: apps-raw }, ports: [{ name: redis, port: 6379, protocol: TCP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: greet-tcp }
spec: { selector: { app: apps-raw }, ports: [{ name: greet, port: 25, protocol: TCP }] }
`,
    );
    const upstreams = ['kv:6379', 'kv-tcp:6379', 'web:80', 'greet:25', 'greet-tcp:25', 'secure:443'].flatMap((u) => ['--upstream', `${u}=0`]);
    client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--register', '--service-account', 'client', '--token', await joinToken(cp, 'client'), ...upstreams, '-q']);
    proxies.push(client);
    for (const svc of ['kv', 'kv-tcp']) await eventually(() => pong(local(svc), 2000), 20_000, `PING through ${svc}`);
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    secure?.closeAllConnections();
    await Promise.all([redis?.stop(), web?.close(), greeter?.close(), new Promise((r) => (secure === undefined ? r(null) : secure.close(r)))]);
    await cp?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  for (const svc of ['kv', 'kv-tcp']) {
    test(`redis-cli through ${svc === 'kv' ? 'an undeclared port: detected as TCP at its first byte' : 'a port declared TCP: no detection'}`, async () => {
      const cli = (args: string[], input?: string) => redisCli(svc, args, input);
      const key = `${svc}:${randomBytes(4).toString('hex')}`;
      assert.deepEqual(await cli(['SET', `${key}:s`, 'hello world']).then((r) => r.stdout.trim()), 'OK');
      assert.equal((await cli(['GET', `${key}:s`])).stdout.trim(), 'hello world');
      for (let i = 1; i <= 5; i++) assert.equal((await cli(['INCR', `${key}:n`])).stdout.trim(), String(i));
      // Several commands on one connection, then a 1 MiB value both ways.
      const many = await cli([], `SET ${key}:a 1\nINCRBY ${key}:a 41\nGET ${key}:a\nDEL ${key}:a\n`);
      assert.deepEqual(many.stdout.trim().split('\n'), ['OK', '42', '42', '1']);
      const big = randomBytes(512 * 1024).toString('hex');
      const set = await cli(['-x', 'SET', `${key}:big`], big);
      assert.equal(set.stdout.trim(), 'OK', set.stderr);
      assert.equal((await cli(['STRLEN', `${key}:big`])).stdout.trim(), String(1024 * 1024));
      const got = await cli(['GET', `${key}:big`]);
      assert.equal(got.stdout.length, big.length + 1);
      assert.ok(got.stdout.startsWith(big), 'the 1 MiB value came back intact');

      const m = await proxyMetrics(client);
      const name = `${svc}.default:6379`;
      const ok = counter(m, `weft_outbound_tcp_connections_total{destination_service="${name}",transport="mtls",error_code=""}`);
      assert.ok(ok >= 11, `${ok} mTLS tunnels for ${name}\n${m}`);
      if (svc === 'kv') {
        assert.ok(counter(m, detected(name, 'tcp', 'bytes')) >= 11, m);
        for (const [p, r] of [['http1', 'bytes'], ['h2', 'bytes'], ['tls', 'bytes'], ['tcp', 'timeout']]) assert.equal(counter(m, detected(name, p!, r!)), 0, `${p} ${r}`);
      } else {
        assert.ok(!m.includes(`weft_protocol_detected_total{destination_service="${name}"`), 'a declared TCP port is never looked at');
      }
    });
  }

  test('curl (HTTP/1.1) to an undeclared port is detected as HTTP/1 and routed through its HTTPRoute', async () => {
    const r = await run('curl', ['-s', '-i', '--max-time', '10', `http://127.0.0.1:${local('web')}/hello?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 200 /);
    assert.match(r.stdout, /\r\nx-routed-by: weft\r\n/i, 'the route\'s response header');
    const seen = JSON.parse(r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4)) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/hello?x=1');
    assert.equal(seen.headers['x-route'], 'web-detected', 'the route\'s request header reached the app');
    // Routed by the port, whatever the Host; the Host goes on as the client sent it.
    assert.equal(seen.headers.host, `127.0.0.1:${local('web')}`);
    // Keep-alive: two requests on one connection.
    const two = await run('curl', ['-s', '--max-time', '10', '-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\n', `http://127.0.0.1:${local('web')}/a`, `http://127.0.0.1:${local('web')}/b`]);
    assert.equal(two.stdout, '200 1\n200 0\n');
    const m = await proxyMetrics(client);
    assert.ok(counter(m, detected('web.default:80', 'http1', 'bytes')) >= 2, m);
    const ok = [...m.matchAll(/^weft_requests_total\{direction="outbound",[^}]*destination_service="web\.default",[^}]*route="default\/web\/rule\/0\/match\/0",response_code="200",grpc_status="",error_code="",[^}]*\} (\d+)$/gm)].reduce((n, x) => n + Number(x[1]), 0);
    assert.ok(ok >= 3, m);
    // The same port keeps answering by authority on the outbound listener (HTTP_PROXY-style).
    const proxied = await run('curl', ['-s', '--max-time', '10', '-x', `http://127.0.0.1:${client.outbound}`, 'http://web/by-proxy']);
    assert.equal((JSON.parse(proxied.stdout) as { headers: Record<string, string> }).headers['x-route'], 'web-detected');
  });

  test('curl --http2-prior-knowledge to an undeclared port is detected as HTTP/2', async () => {
    const r = await run('curl', ['-s', '-i', '--max-time', '10', '--http2-prior-knowledge', `http://127.0.0.1:${local('web')}/h2`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/2 200/);
    assert.match(r.stdout, /\r\nx-routed-by: weft\r\n/i);
    const seen = JSON.parse(r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4)) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/h2');
    assert.equal(seen.headers['x-route'], 'web-detected');
    assert.equal(counter(await proxyMetrics(client), detected('web.default:80', 'h2', 'bytes')), 1);
  });

  test('curl over TLS (HTTPS) to an undeclared port is opaque: the app terminates TLS itself', async () => {
    const r = await run('curl', ['-s', '-k', '--max-time', '10', `https://127.0.0.1:${local('secure')}/tls`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'secure /tls', 'the app answered over its own TLS');
    const m = await proxyMetrics(client);
    assert.equal(counter(m, detected('secure.default:443', 'tls', 'bytes')), 1, m);
    assert.equal(counter(m, 'weft_outbound_tcp_connections_total{destination_service="secure.default:443",transport="mtls",error_code=""}'), 1);
  });

  test('a server-first app: after the bounded wait on an undeclared port, at once on a port declared TCP', async () => {
    const undeclared: number[] = [];
    const declared: number[] = [];
    for (let i = 0; i < 3; i++) {
      for (const [svc, into] of [['greet', undeclared], ['greet-tcp', declared]] as const) {
        const g = await timeToGreeting(local(svc));
        assert.equal(g.text, `${GREETING}hello\r\n`, `${svc}: the greeting, then the echo of what the client said`);
        into.push(g.ms!);
      }
    }
    const fastest = (xs: number[]): number => Math.min(...xs);
    console.log(`# greeting after ${undeclared.map((x) => x.toFixed(0)).join(', ')} ms (undeclared), ${declared.map((x) => x.toFixed(0)).join(', ')} ms (declared TCP); wait ${DETECT_WAIT_MS} ms`);
    assert.ok(fastest(undeclared) >= DETECT_WAIT_MS, `undeclared: never before the wait (${undeclared})`);
    assert.ok(fastest(undeclared) < DETECT_WAIT_MS + 3000, `undeclared: bounded (${undeclared})`);
    assert.ok(fastest(declared) < DETECT_WAIT_MS, `declared TCP: no wait (${declared})`);
    const m = await proxyMetrics(client);
    assert.equal(counter(m, detected('greet.default:25', 'tcp', 'timeout')), 3, m);
    assert.ok(!m.includes('weft_protocol_detected_total{destination_service="greet-tcp.default:25"'));
  });
});
