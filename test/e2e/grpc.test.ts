// gRPC and HTTP/2 through two proxies with real clients nobody here wrote: @grpc/grpc-js (client and
// server, all four call kinds, metadata, trailers, status codes, deadlines) and h2load; the proxies
// speak HTTP/2 over mutual TLS between them and HTTP/2 cleartext to the apps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect as h2connect, createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { eventually, runWeft, startControl, startProxyWith, type RunningControl, type RunningProxy, joinToken } from './harness.js';

const raw = (b: Buffer): Buffer => b;
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: raw,
  requestDeserialize: raw,
  responseSerialize: raw,
  responseDeserialize: raw,
});
const ECHO = {
  Unary: method('Unary', false, false),
  Fail: method('Fail', false, false),
  Flaky: method('Flaky', false, false),
  Slow: method('Slow', false, false),
  Secret: method('Secret', false, false),
  Many: method('Many', false, true),
  Gather: method('Gather', true, false),
  Chat: method('Chat', true, true),
} satisfies grpc.ServiceDefinition;

const EchoClient = grpc.makeGenericClientConstructor(ECHO, 'Echo');
type Client = InstanceType<typeof EchoClient> & Record<string, any>;

/** The app: a grpc-js server (HTTP/2 cleartext) implementing every call kind. */
async function startGrpcApp(name = 'echo'): Promise<{ port: number; calls: Map<string, number>; close(): Promise<void> }> {
  const server = new grpc.Server();
  /** Flaky calls seen, by key. */
  const calls = new Map<string, number>();
  server.addService(ECHO, {
    // `<key>:<n>`: the first n calls with that key fail UNAVAILABLE (trailers-only), later ones answer.
    Flaky: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const [key, n] = call.request.toString().split(':');
      const seen = (calls.get(key!) ?? 0) + 1;
      calls.set(key!, seen);
      if (seen <= Number(n)) cb({ code: grpc.status.UNAVAILABLE, details: `try ${seen} fails` });
      else cb(null, Buffer.from(`ok on try ${seen}`));
    },
    Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata();
      md.set('x-seen-user', String(call.metadata.get('x-user')[0] ?? ''));
      call.sendMetadata(md);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'done');
      cb(null, Buffer.concat([Buffer.from(`${name}:`), call.request]), trailer);
    },
    Fail: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
    Slow: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => setTimeout(() => cb(null, Buffer.from('late')), 1500),
    Secret: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('secret')),
    Many: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(call.request.toString());
      for (let i = 0; i < n; i++) call.write(Buffer.from(`m${i}`));
      call.end();
    },
    Gather: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const parts: Buffer[] = [];
      call.on('data', (b: Buffer) => parts.push(b));
      call.on('end', () => cb(null, Buffer.from(`${parts.length}:${Buffer.concat(parts).length}`)));
    },
    Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => call.write(Buffer.concat([Buffer.from('re:'), b])));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { port, calls, close: () => new Promise((r) => server.tryShutdown(() => r())) };
}

const MESH = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: grpc, port: 9090, protocol: GRPC }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: plain }
spec: { selector: { app: plain }, ports: [{ name: h2, port: 80, protocol: HTTP2 }] }
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-secrets }
spec:
  targetRefs: [{ kind: Service, name: echo }]
  action: DENY
  rules: [{ to: [{ paths: ["/test.Echo/Secret"] }] }]
`;


interface Mesh {
  cp: RunningControl;
  /** Replaceable: a test may restart it with other labels. */
  server: RunningProxy;
  h2server: RunningProxy;
  client: RunningProxy;
  app: { port: number; calls: Map<string, number>; close(): Promise<void> };
  h2app: { port: number; close(): Promise<void> };
  close(): Promise<void>;
}

/** A plain HTTP/2 app (node:http2, cleartext) answering with what it saw, trailers included. */
async function startH2App(): Promise<{ port: number; close(): Promise<void> }> {
  const server = createH2Server();
  server.on('stream', (stream: ServerHttp2Stream, headers) => {
    const parts: Buffer[] = [];
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-path': String(headers[':path']) }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-bytes': String(Buffer.concat(parts).length) }));
      stream.end(`h2 ${headers[':method']} ${headers[':path']}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

async function startMesh(): Promise<Mesh> {
  const cp = await startControl();
  assert.equal((await runWeft(['apply', '-f', '-'], cp.url, MESH)).code, 0);
  const app = await startGrpcApp();
  const h2app = await startH2App();
  const server = await startProxyWith(['--control-plane', cp.url, '--workload', 'echo-1', '--app-port', `grpc=${app.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', await joinToken(cp, 'echo', '1h'), '-q']);
  const h2server = await startProxyWith(['--control-plane', cp.url, '--workload', 'plain-1', '--app-port', `h2=${h2app.port}`, '--label', 'app=plain', '--service-account', 'plain', '--token', await joinToken(cp, 'plain', '1h'), '-q']);
  const client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--register', '--service-account', 'client', '--token', await joinToken(cp, 'client', '1h'), '-q']);
  await eventually(async () => {
    const items = ((await (await cp.api('/api/v1/certificates')).json()) as { items: any[] }).items;
    return items.length === 3 && items.every((i) => i.installed === true);
  }, 10_000, 'three proxies hold certificates');
  const mesh: Mesh = {
    cp, server, h2server, client, app, h2app,
    async close() {
      await Promise.all([client.stop(), mesh.server.stop(), h2server.stop()]);
      await Promise.all([app.close(), h2app.close()]);
      await cp.stop();
    },
  };
  return mesh;
}

/** A grpc-js client whose channel goes to the client proxy's outbound port, for `authority`. */
function clientFor(m: Mesh, authority = 'echo:9090'): Client {
  return new EchoClient(`127.0.0.1:${m.client.outbound}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority }) as Client;
}

function unary(c: Client, name: string, req: Buffer, md = new grpc.Metadata(), deadlineMs = 5000): Promise<{ err: grpc.ServiceError | null; res: Buffer | null; headers: grpc.Metadata | null; trailers: grpc.Metadata | null }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | null = null;
    let trailers: grpc.Metadata | null = null;
    const call = c[name](req, md, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: Buffer | null) => {
      setImmediate(() => resolve({ err, res, headers, trailers }));
    });
    call.on('metadata', (h: grpc.Metadata) => (headers = h));
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}

async function metrics(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

test('gRPC through two proxies: unary with metadata and trailers, server, client and bidirectional streaming', async () => {
  const m = await startMesh();
  const c = clientFor(m);
  try {
    await eventually(async () => (await unary(c, 'Unary', Buffer.from('warm'))).err === null, 10_000, 'a first call answers');
    const md = new grpc.Metadata();
    md.set('x-user', 'alice');
    const u = await unary(c, 'Unary', Buffer.from('hello'), md);
    assert.equal(u.err, null);
    assert.equal(u.res!.toString(), 'echo:hello');
    assert.equal(u.headers!.get('x-seen-user')[0], 'alice', 'request metadata reached the app');
    assert.equal(u.trailers!.get('x-trailer')[0], 'done', 'trailers came back');

    const many = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const call = c.Many(Buffer.from('200'));
      call.on('data', (b: Buffer) => got.push(b.toString()));
      call.on('end', () => resolve(got));
      call.on('error', reject);
    });
    assert.equal(many.length, 200);
    assert.equal(many[199], 'm199');

    const gathered = await new Promise<string>((resolve, reject) => {
      const call = c.Gather((err: Error | null, res: Buffer) => (err ? reject(err) : resolve(res.toString())));
      for (let i = 0; i < 100; i++) call.write(Buffer.alloc(10_000, i));
      call.end();
    });
    assert.equal(gathered, '100:1000000', 'client streaming carried 1 MB in order');

    const chat = await new Promise<string[]>((resolve, reject) => {
      const call = c.Chat();
      const got: string[] = [];
      let i = 0;
      call.on('data', (b: Buffer) => {
        got.push(b.toString());
        if (++i < 50) call.write(Buffer.from(`p${i}`));
        else call.end();
      });
      call.on('end', () => resolve(got));
      call.on('error', reject);
      call.write(Buffer.from('p0'));
    });
    assert.equal(chat.length, 50, 'ping-pong: each answer came before the next question');
    assert.equal(chat[49], 're:p49');

    // The caller's proxy counted gRPC statuses; the server's proxy took it all over mutual TLS.
    const cm = await metrics(m.client.admin);
    assert.match(cm, /weft_requests_total\{direction="outbound",[^}]*destination_service="echo.default",[^}]*route="[^"]*",response_code="200",grpc_status="0",[^}]*\} \d+/);
    const sm = await metrics(m.server.admin);
    assert.match(sm, /weft_inbound_connections_total\{security="mtls"\} [1-9]/);
    assert.doesNotMatch(sm, /security="plaintext"/);
  } finally {
    c.close();
    await m.close();
  }
});

test('gRPC status codes: the app\'s own, and mesh errors as gRPC status with the weft-error code; deadlines', async () => {
  const m = await startMesh();
  const c = clientFor(m);
  try {
    await eventually(async () => (await unary(c, 'Unary', Buffer.from('warm'))).err === null, 10_000, 'a first call answers');
    const fail = await unary(c, 'Fail', Buffer.from('x'));
    assert.equal(fail.err?.code, grpc.status.NOT_FOUND, String(fail.err));
    assert.equal(fail.err?.details, 'no such thing');

    const denied = await unary(c, 'Secret', Buffer.from('x'));
    assert.equal(denied.err?.code, grpc.status.PERMISSION_DENIED, String(denied.err));
    assert.match(denied.err!.details, /^DENIED: .* denied by AuthorizationPolicy default\/no-secrets/);
    assert.equal(denied.err!.metadata.get('weft-error')[0], 'DENIED');

    const nowhere = clientFor(m, 'nowhere:9090');
    const nr = await unary(nowhere, 'Unary', Buffer.from('x'));
    nowhere.close();
    assert.equal(nr.err?.code, grpc.status.UNIMPLEMENTED);
    assert.equal(nr.err!.metadata.get('weft-error')[0], 'NO_ROUTE');

    // The client's own deadline.
    const slow = await unary(c, 'Slow', Buffer.from('x'), new grpc.Metadata(), 300);
    assert.equal(slow.err?.code, grpc.status.DEADLINE_EXCEEDED);

    // The mesh honours grpc-timeout itself: a raw HTTP/2 client that would wait forever gets
    // DEADLINE_EXCEEDED from the caller's proxy when its 250 ms are up.
    const session = h2connect(`http://127.0.0.1:${m.client.outbound}`);
    const started = Date.now();
    const answer = await new Promise<{ headers: Record<string, unknown>; ms: number }>((resolve, reject) => {
      const s = session.request({ ':method': 'POST', ':path': '/test.Echo/Slow', ':authority': 'echo:9090', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '250m' });
      let head: Record<string, unknown> = {};
      s.on('response', (h) => (head = { ...h }));
      s.on('trailers', (t) => (head = { ...head, ...t }));
      s.on('close', () => resolve({ headers: head, ms: Date.now() - started }));
      s.on('error', reject);
      s.resume();
      s.end(Buffer.from([0, 0, 0, 0, 1, 0x78]));
    });
    session.close();
    assert.equal(answer.headers['grpc-status'], '4', JSON.stringify(answer.headers));
    assert.equal(answer.headers['weft-error'], 'UPSTREAM_TIMEOUT');
    assert.ok(answer.ms >= 240 && answer.ms < 1400, `answered at the deadline (${answer.ms} ms)`);

    const cm = await metrics(m.client.admin);
    assert.match(cm, /^weft_requests_total\{[^}]*grpc_status="7",[^}]*\} 1$/m);
    assert.match(cm, /^weft_requests_total\{[^}]*grpc_status="12",error_code="NO_ROUTE",[^}]*\} 1$/m);
    assert.match(cm, /^weft_requests_total\{[^}]*grpc_status="4",[^}]*\} [1-9]$/m);
  } finally {
    c.close();
    await m.close();
  }
});

test('HTTP/2: a plain h2 app through two proxies keeps trailers, and h2load runs through the proxy without errors', async () => {
  const m = await startMesh();
  try {
    const get = (): Promise<{ status: number; body: string; trailers: Record<string, unknown> }> =>
      new Promise((resolve, reject) => {
        const session = h2connect(`http://127.0.0.1:${m.client.outbound}`);
        session.on('error', reject);
        const s = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'plain' });
        let status = 0;
        let body = '';
        let trailers: Record<string, unknown> = {};
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('data', (d) => (body += d));
        s.on('trailers', (t) => (trailers = { ...t }));
        s.on('end', () => {
          session.close();
          resolve({ status, body, trailers });
        });
        s.end(Buffer.alloc(100_000, 1));
      });
    await eventually(async () => (await get()).status === 200, 10_000, 'plain h2 answers');
    const r = await get();
    assert.equal(r.body, 'h2 POST /upload');
    assert.equal(r.trailers['x-bytes'], '100000', 'the request body went through whole, and the trailers came back');

    const h2load = await new Promise<{ code: number; out: string }>((resolve) => {
      const p = spawn('h2load', ['-n', '2000', '-c', '4', '-m', '10', '-H', ':authority: plain', `http://127.0.0.1:${m.client.outbound}/`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr.on('data', (c: Buffer) => (out += c.toString()));
      const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, out });
      });
    });
    assert.equal(h2load.code, 0, h2load.out);
    assert.match(h2load.out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/);
    assert.match(h2load.out, /status codes: 2000 2xx/);
    const line = /finished in .*/.exec(h2load.out)?.[0];
    console.log(`# h2load through the proxy (and mTLS HTTP/2 to the next): ${line}`);
  } finally {
    await m.close();
  }
});

test('GRPCRoute: a method and metadata match picks a backend, the rest is split by weight', async () => {
  const m = await startMesh();
  const v2 = await startGrpcApp('v2');
  let proxyV2: RunningProxy | null = null;
  const c = clientFor(m);
  try {
    assert.equal((await runWeft(['apply', '-f', '-'], m.cp.url, `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo-v1 }
spec: { selector: { app: echo, version: v1 }, ports: [{ name: grpc, port: 9090, protocol: GRPC }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo-v2 }
spec: { selector: { app: echo, version: v2 }, ports: [{ name: grpc, port: 9090, protocol: GRPC }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: echo }
spec:
  parentRefs: [{ kind: Service, name: echo, port: 9090 }]
  rules:
  - matches: [{ method: { service: test.Echo, method: Unary }, headers: [{ name: x-canary, value: "1" }] }]
    backendRefs: [{ name: echo-v2, port: 9090 }]
  - matches: [{ method: { service: test.Echo } }]
    backendRefs: [{ name: echo-v1, port: 9090, weight: 75 }, { name: echo-v2, port: 9090, weight: 25 }]
`)).code, 0);
    proxyV2 = await startProxyWith(['--control-plane', m.cp.url, '--workload', 'echo-2', '--app-port', `grpc=${v2.port}`, '--label', 'app=echo', '--label', 'version=v2', '--service-account', 'echo', '--token', await joinToken(m.cp, 'echo', '1h'), '-q']);
    // echo-1 has no version label yet: relabel it by restarting its proxy with one.
    await m.server.stop();
    m.server = await startProxyWith(['--control-plane', m.cp.url, '--workload', 'echo-1', '--app-port', `grpc=${m.app.port}`, '--label', 'app=echo', '--label', 'version=v1', '--service-account', 'echo', '--token', await joinToken(m.cp, 'echo', '1h'), '-q']);
    const canary = new grpc.Metadata();
    canary.set('x-canary', '1');
    await eventually(async () => (await unary(c, 'Unary', Buffer.from('x'), canary)).res?.toString() === 'v2:x', 10_000, 'the canary header reaches v2');
    await eventually(async () => (await unary(c, 'Unary', Buffer.from('x'))).res?.toString() === 'echo:x', 10_000, 'v1 answers the rest');
    const seen = { v1: 0, v2: 0 };
    for (let i = 0; i < 200; i++) {
      const r = await unary(c, 'Unary', Buffer.from('x'));
      assert.equal(r.err, null);
      if (r.res!.toString() === 'v2:x') seen.v2++;
      else seen.v1++;
    }
    console.log(`# GRPCRoute 75/25 split over 200 calls: v1 ${seen.v1}, v2 ${seen.v2}`);
    assert.ok(seen.v2 >= 25 && seen.v2 <= 80, `about a quarter to v2 (${seen.v2} of 200)`);
    for (let i = 0; i < 20; i++) assert.equal((await unary(c, 'Unary', Buffer.from('x'), canary)).res?.toString(), 'v2:x', 'the header match always wins');
  } finally {
    c.close();
    await proxyV2?.stop();
    await v2.close();
    await m.close();
  }
});

test('GRPCRoute retry (Weft): trailers-only UNAVAILABLE is retried up to attempts; other codes are not; retries are counted', async () => {
  const m = await startMesh();
  const c = clientFor(m);
  try {
    assert.equal((await runWeft(['apply', '-f', '-'], m.cp.url, `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: echo }
spec:
  parentRefs: [{ kind: Service, name: echo, port: 9090 }]
  rules:
  - backendRefs: [{ name: echo, port: 9090 }]
    retry: { codes: [UNAVAILABLE], attempts: 2, backoff: 10ms }
`)).code, 0);
    // The route is in force once a call that fails once comes back answered.
    await eventually(async () => (await unary(c, 'Flaky', Buffer.from(`probe${Date.now()}:1`))).err === null, 10_000, 'the retry policy in force');
    const twice = await unary(c, 'Flaky', Buffer.from('a:2'));
    assert.equal(twice.err, null);
    assert.equal(twice.res?.toString(), 'ok on try 3', 'two UNAVAILABLE answers retried, the third try answered');
    const thrice = await unary(c, 'Flaky', Buffer.from('b:3'));
    assert.equal(thrice.err?.code, grpc.status.UNAVAILABLE, 'attempts exhausted: the last answer goes back');
    assert.equal(thrice.err?.details, 'try 3 fails');
    assert.equal(m.app.calls.get('b'), 3, 'the first try and two retries');
    const notFound = await unary(c, 'Fail', Buffer.from('x'));
    assert.equal(notFound.err?.code, grpc.status.NOT_FOUND, 'a code not listed is not retried');
    const s = await metrics(m.client.admin);
    const retried = Number(/weft_retries_total\{destination_service="echo.default",result="retried"\} (\d+)/.exec(s)?.[1] ?? 0);
    const exhausted = Number(/weft_retries_total\{destination_service="echo.default",result="attempts_exhausted"\} (\d+)/.exec(s)?.[1] ?? 0);
    console.log(`# GRPCRoute retry: a:2 answered on try ${m.app.calls.get('a')}, b:3 failed after ${m.app.calls.get('b')} tries; client counted ${retried} retried, ${exhausted} attempts_exhausted`);
    assert.equal(m.app.calls.get('a'), 3);
    assert.ok(retried >= 4, `retries counted (${retried})`);
    assert.ok(exhausted >= 1, `exhaustion counted (${exhausted})`);
  } finally {
    c.close();
    await m.close();
  }
});
