// A small mTLS mesh for the metrics tests: a control plane, an HTTP service `web`, optionally a gRPC
// service `greet` and a TCP service `db`, and a `client` proxy with an `--upstream` port for `db`.
import * as grpc from '@grpc/grpc-js';
import { applyYaml, eventually, joinToken, startControl, startEcho, startProxyWith, startTcpEcho, type RunningControl, type RunningProxy } from './harness.js';

const raw = (b: Buffer): Buffer => b;
const GREET = {
  Hello: { path: '/test.Greet/Hello', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  Fail: { path: '/test.Greet/Fail', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
} satisfies grpc.ServiceDefinition;
export const GreetClient = grpc.makeGenericClientConstructor(GREET, 'Greet');

const MESH = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: web }
spec: { selector: { app: web }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: greet }
spec: { selector: { app: greet }, ports: [{ name: grpc, port: 9090, protocol: GRPC }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: db }
spec: { selector: { app: db }, ports: [{ name: sql, port: 9000, protocol: TCP }] }
`;

export interface MetricsMesh {
  cp: RunningControl;
  web: RunningProxy;
  greet: RunningProxy | null;
  db: RunningProxy | null;
  client: RunningProxy;
  close(): Promise<void>;
}

/** Starts the mesh; `full` adds the gRPC and TCP services. Everything started is stopped by `close()`, also when starting fails. */
export async function startMetricsMesh(full: boolean): Promise<MetricsMesh> {
  const closers: Array<() => Promise<unknown> | unknown> = [];
  const close = async (): Promise<void> => {
    for (const c of closers.reverse()) await c();
  };
  try {
    const cp = await startControl();
    closers.push(() => cp.stop());
    await applyYaml(cp, MESH);
    const echo = await startEcho('web-app');
    closers.push(() => echo.close());
    const proxy = async (args: string[]): Promise<RunningProxy> => {
      const p = await startProxyWith(['--control-plane', cp.url, ...args, '-q']);
      closers.push(() => p.stop());
      return p;
    };
    const web = await proxy(['--workload', 'web-1', '--app-port', `http=${echo.port}`, '--label', 'app=web', '--service-account', 'web', '--token', await joinToken(cp, 'web')]);
    let greet: RunningProxy | null = null;
    let db: RunningProxy | null = null;
    const upstreams: string[] = [];
    if (full) {
      const server = new grpc.Server();
      server.addService(GREET, {
        Hello: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.concat([Buffer.from('hello '), call.request])),
        Fail: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.NOT_FOUND, details: 'no such greeting' }),
      });
      const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
      closers.push(() => server.forceShutdown());
      greet = await proxy(['--workload', 'greet-1', '--app-port', `grpc=${port}`, '--label', 'app=greet', '--service-account', 'greet', '--token', await joinToken(cp, 'greet')]);
      const tcp = await startTcpEcho();
      closers.push(() => tcp.close());
      db = await proxy(['--workload', 'db-1', '--app-port', `sql=${tcp.port}`, '--label', 'app=db', '--service-account', 'db', '--token', await joinToken(cp, 'db')]);
      upstreams.push('--upstream', 'db:9000=0');
    }
    const client = await proxy(['--workload', 'client-1', '--register', '--label', 'app=client', '--service-account', 'client', '--token', await joinToken(cp, 'client'), ...upstreams]);
    const expected = full ? 4 : 2;
    await eventually(async () => {
      const items = ((await (await cp.api('/api/v1/certificates')).json()) as { items: Array<{ installed: boolean }> }).items;
      return items.length === expected && items.every((i) => i.installed === true);
    }, 15_000, `${expected} proxies hold certificates`);
    // The client's first requests may race its endpoints: wait until web answers through the mesh.
    await eventually(async () => (await fetchVia(client, 'web', '/ready')).status === 200, 15_000, 'web reachable through the mesh');
    return { cp, web, greet, db, client, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** An HTTP/1.1 request through a proxy's outbound listener (absolute-form, as an app with HTTP_PROXY sends it). */
export async function fetchVia(p: RunningProxy, authority: string, path: string, init: { method?: string; body?: string } = {}): Promise<{ status: number; error: string | null; body: string }> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: p.outbound, method: init.method ?? 'GET', path: `http://${authority}${path}`, headers: { host: authority }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, error: (res.headers['weft-error'] as string | undefined) ?? null, body }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}
