// The inbound side of a TCP tunnel knows its source service. Three callers' proxies — `web` (peer
// transport h2, Weft's HTTP/2 engine), `api` (h2 on node:http2) and `cli` (`--peer-transport http1`,
// HTTP/1.1 CONNECT) — tunnel TCP over mutual TLS to two destinations: `db`, whose proxy runs Weft's
// engine, and `dbn`, whose proxy runs node:http2, so every tunnel transport meets every inbound
// acceptor. Each destination proxy's /metrics must count each caller's connections and bytes under
// `source_service="<caller>.default"`, exactly. Under PERMISSIVE mTLS a plaintext caller forging
// `weft-source-service` (HTTP/1.1 CONNECT and h2c CONNECT) counts under `source_service=""`, and so
// does an mTLS caller naming a service outside its namespace. Then `weft stat tcp` counts each
// destination's connections once, and the TCP edges name the callers. The counts are printed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2Connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { counter, issue, startTcpApp, tcpExchange } from './tcp-apps.js';
import { applyYaml, eventually, joinToken, proxyMetrics, runWeft, startControl, startWeft, type RunningControl } from './harness.js';

const CALLERS = ['web', 'api', 'cli'] as const;
const DESTINATIONS = ['db', 'dbn'] as const;
type Caller = (typeof CALLERS)[number];
type Destination = (typeof DESTINATIONS)[number];
/** Connections each caller opens to each destination, and the bytes each sends. */
const PER_PAIR = 4;
const PAYLOAD = 'x'.repeat(1000);

const MESH = `apiVersion: weft.dev/v1alpha1
kind: Mesh
metadata: { name: mesh }
spec: { mtls: { mode: PERMISSIVE } }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: db }
spec: { selector: { app: db }, ports: [{ name: sql, port: 9000, protocol: TCP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: dbn }
spec: { selector: { app: dbn }, ports: [{ name: sql, port: 9000, protocol: TCP }] }
`;

interface Proxy {
  inbound: number;
  admin: number;
  upstreams: Record<string, number>;
  stop(): Promise<unknown>;
}

let cp: RunningControl;
let app: Awaited<ReturnType<typeof startTcpApp>>;
const dest = {} as Record<Destination, Proxy>;
const callers = {} as Record<Caller, Proxy>;
const closers: Array<() => Promise<unknown> | unknown> = [];

/** `weft proxy` with OS-chosen ports, on Weft's HTTP/2 engine or node:http2. */
async function proxy(args: string[], engine: 'weft' | 'node'): Promise<Proxy> {
  const env = { ...process.env, WEFT_HTTP2_ENGINE: engine };
  const w = await startWeft<{ ports: { inbound: number; admin: number; upstreams: Record<string, number> } }>(
    ['proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--control-plane', cp.url, '-q', ...args],
    env,
  );
  closers.push(() => w.stop());
  return { ...w.listening.ports, stop: w.stop };
}

/** The inbound TCP series of `source` at a destination proxy: connections, and bytes received from the callers. */
async function inboundSeries(d: Destination, source: string, mtls: boolean): Promise<{ connections: number; received: number }> {
  const text = await proxyMetrics(dest[d]);
  const labels = `direction="inbound",source_service="${source}",destination_service="${d}.default",mtls="${mtls}"`;
  return { connections: counter(text, `weft_tcp_connections_total{${labels}}`), received: counter(text, `weft_tcp_bytes_total{${labels},flow="received"}`) };
}

/** One exchange through a caller's upstream port to the echo app: true when the bytes came back. */
async function through(c: Caller, d: Destination, payload = PAYLOAD): Promise<boolean> {
  const r = await tcpExchange(callers[c].upstreams[`${d}.default:9000`]!, payload, 4000);
  return r.data.toString() === payload;
}

/** Collects what `s` sends until it closes (at most 4 s). */
function collect(s: Socket | ReturnType<typeof tlsConnect>): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const timer = setTimeout(() => s.destroy(), 4000);
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/** An HTTP/1.1 CONNECT to the echo app straight to `inbound`, plaintext or with a client certificate, claiming `source`. */
function connectH1(inbound: number, source: string, id: { cert: string; key: string } | null): Promise<string> {
  const t = `127.0.0.1:${app.port}`;
  const head = `CONNECT ${t} HTTP/1.1\r\nHost: ${t}\r\nweft-source-service: ${source}\r\n\r\nforged`;
  if (id === null) {
    const s = connect({ host: '127.0.0.1', port: inbound, allowHalfOpen: true });
    s.once('connect', () => s.end(head));
    return collect(s);
  }
  const options: ConnectionOptions & { allowHalfOpen: boolean } = { host: '127.0.0.1', port: inbound, cert: id.cert, key: id.key, rejectUnauthorized: false, allowHalfOpen: true, ALPNProtocols: ['http/1.1'] };
  const s = tlsConnect(options);
  s.once('secureConnect', () => s.end(head));
  return collect(s);
}

/** An h2c (prior knowledge, plaintext) CONNECT stream to the echo app at `inbound`, claiming `source`: its status and what came back. */
function connectH2c(inbound: number, source: string): Promise<string> {
  return new Promise((resolve) => {
    const session = h2Connect(`http://127.0.0.1:${inbound}`);
    session.on('error', () => {});
    let text = '';
    const done = (): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(text);
    };
    const timer = setTimeout(done, 4000);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${app.port}`, 'weft-source-service': source });
    stream.on('error', () => {});
    stream.on('response', (h) => (text += `${h[':status']} `));
    stream.on('data', (c: Buffer) => (text += c.toString('latin1')));
    stream.on('close', done);
    stream.end('forged');
  });
}

before(async () => {
  cp = await startControl();
  closers.push(() => cp.stop());
  await applyYaml(cp, MESH);
  app = await startTcpApp('echo');
  closers.push(() => app.close());
  for (const [d, engine] of [['db', 'weft'], ['dbn', 'node']] as const) {
    dest[d] = await proxy(['--workload', `${d}-1`, '--app-port', `sql=${app.port}`, '--label', `app=${d}`, '--service-account', d, '--token', await joinToken(cp, d)], engine);
  }
  const upstreams = DESTINATIONS.flatMap((d) => ['--upstream', `${d}:9000=0`]);
  for (const [c, engine, transport] of [['web', 'weft', 'h2'], ['api', 'node', 'h2'], ['cli', 'weft', 'http1']] as const) {
    callers[c] = await proxy(['--workload', `${c}-1`, '--register', '--label', `app=${c}`, '--service-account', c, '--token', await joinToken(cp, c), '--peer-transport', transport, ...upstreams], engine);
  }
  for (const c of CALLERS) for (const d of DESTINATIONS) await eventually(() => through(c, d, 'ping'), 15_000, `TCP from ${c} to ${d}`);
});

after(async () => {
  for (const c of closers.reverse()) await c();
});

test('the destination proxy counts each caller\'s tunnels under its source service; forged or foreign names count as ""', async () => {
  const named = async (): Promise<Record<string, { connections: number; received: number }>> => {
    const out: Record<string, { connections: number; received: number }> = {};
    for (const d of DESTINATIONS) {
      for (const c of CALLERS) out[`${c}>${d}`] = await inboundSeries(d, `${c}.default`, true);
      out[`plain>${d}`] = await inboundSeries(d, '', false);
      out[`foreign>${d}`] = await inboundSeries(d, '', true);
    }
    return out;
  };
  const start = await named();
  let failed = 0;
  for (let i = 0; i < PER_PAIR; i++) {
    await Promise.all(CALLERS.flatMap((c) => DESTINATIONS.map(async (d) => void ((await through(c, d)) || failed++))));
  }
  assert.equal(failed, 0, 'every exchange came back');

  // Forgers: plaintext (PERMISSIVE lets them in) over HTTP/1.1 and h2c, and an mTLS caller of
  // namespace default naming a service of another namespace.
  const probe = issue(cp, 'probe');
  const forged: string[] = [];
  for (const d of DESTINATIONS) {
    forged.push(await connectH1(dest[d].inbound, 'web.default', null));
    forged.push(await connectH2c(dest[d].inbound, 'web.default'));
    forged.push(await connectH1(dest[d].inbound, 'web.billing', probe));
  }
  assert.deepEqual(forged, Array(DESTINATIONS.length).fill(['HTTP/1.1 200 OK\r\n\r\nforged', '200 forged', 'HTTP/1.1 200 OK\r\n\r\nforged']).flat(), 'the forgers were let through to the app');

  // Counted when the app's side closes: wait until every connection shows.
  let end = start;
  await eventually(async () => {
    end = await named();
    return DESTINATIONS.every((d) => end[`plain>${d}`]!.connections - start[`plain>${d}`]!.connections === 2 && end[`foreign>${d}`]!.connections - start[`foreign>${d}`]!.connections === 1);
  }, 5000, 'the forged tunnels counted');
  const delta = (k: string): { connections: number; received: number } => ({ connections: end[k]!.connections - start[k]!.connections, received: end[k]!.received - start[k]!.received });
  console.log(
    'tcp source: inbound connections (bytes received) by source per destination: ' +
      DESTINATIONS.map((d) => `${d}: ` + [...CALLERS, 'plain', 'foreign'].map((c) => `${c}=${delta(`${c}>${d}`).connections} (${delta(`${c}>${d}`).received} B)`).join(', ')).join('; ') +
      `; expected ${PER_PAIR} × ${PAYLOAD.length} B per caller, 2 plaintext forgers and 1 foreign-namespace name per destination`,
  );
  for (const d of DESTINATIONS) {
    for (const c of CALLERS) assert.deepEqual(delta(`${c}>${d}`), { connections: PER_PAIR, received: PER_PAIR * PAYLOAD.length }, `${c} → ${d}`);
    assert.deepEqual(delta(`plain>${d}`), { connections: 2, received: 2 * 'forged'.length }, `plaintext forgers at ${d}`);
    assert.deepEqual(delta(`foreign>${d}`), { connections: 1, received: 'forged'.length }, `foreign namespace at ${d}`);
    // Nothing went to a name only the forgers used.
    const text = await proxyMetrics(dest[d]);
    assert.doesNotMatch(text, /source_service="web\.billing"/);
  }
});

test('weft stat tcp counts each destination\'s connections once; the TCP edges name the callers', async () => {
  // The destination's own view: every inbound tunnel it let through, whatever the source.
  const inboundTotal = async (d: Destination): Promise<number> => {
    const text = await proxyMetrics(dest[d]);
    let n = 0;
    for (const line of text.split('\n')) if (line.startsWith(`weft_tcp_connections_total{direction="inbound",`) && line.includes(`destination_service="${d}.default"`)) n += Number(line.slice(line.lastIndexOf(' ') + 1));
    return n;
  };
  const want = { db: await inboundTotal('db'), dbn: await inboundTotal('dbn') };
  type Row = { namespace: string; service: string; connections: number };
  type Edge = { source: string; destination: string; mtls: boolean; connections: number };
  let rows: Row[] = [];
  let edges: Edge[] = [];
  await eventually(async () => {
    const r = await runWeft(['stat', 'tcp', '-o', 'json', '--window', '1m'], cp.url);
    assert.equal(r.code, 0, r.stderr);
    rows = (JSON.parse(r.stdout) as { rows: Row[] }).rows;
    edges = ((await (await cp.api('/api/v1/stats/tcp/edges?window=1m')).json()) as { edges: Edge[] }).edges;
    const done = DESTINATIONS.every((d) => rows.find((x) => x.service === d)?.connections === want[d]);
    if (!done) await new Promise((r) => setTimeout(r, 500));
    return done;
  }, 15_000, 'every connection reported');
  const edge = (source: string, d: Destination, mtls: boolean): number => edges.find((e) => e.source === source && e.destination === `default/${d}` && e.mtls === mtls)?.connections ?? 0;
  console.log(
    `tcp source stats: weft stat tcp connections ${DESTINATIONS.map((d) => `${d}=${rows.find((x) => x.service === d)?.connections} (proxy ${want[d]})`).join(', ')}; ` +
      `edges ${edges.map((e) => `${e.source}→${e.destination}${e.mtls ? '' : ' (plaintext)'}=${e.connections}`).join(', ')}`,
  );
  for (const d of DESTINATIONS) {
    let sum = 0;
    for (const c of CALLERS) {
      const n = edge(`default/${c}`, d, true);
      // The warm-up's and this file's connections: at least the test's own, from this caller's name.
      assert.ok(n >= PER_PAIR, `edge default/${c} → default/${d}: ${n}`);
      sum += n;
    }
    const unmeshed = edge('(unmeshed)', d, false) + edge('(unmeshed)', d, true);
    assert.equal(unmeshed, 3, `the forgers at ${d} are (unmeshed)`);
    assert.equal(sum + unmeshed, want[d], `the edges into ${d} add up to its proxy's count: nothing counted twice`);
  }
});
