// TCP golden signals end to end: a caller's proxy tunnels TCP connections over mutual TLS to `db`'s
// proxy at a known load — 5 connections a second for 16 s, each sending 32 KiB and reading the app's
// short `got 32768 bytes` — while 3 more connections stay open. Mid-load, `weft stat tcp` over 10 s must
// show about 5 connections/s and 5 × 32 KiB read/s (±15 %), ACTIVE 3 or 4 (the held ones, and perhaps
// one of the load's in flight), and 100 % mTLS. Once everything is closed, a 1 m window must count
// every connection opened exactly, and the bytes each way within 1 %. The figures are printed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startTcpApp, tcpExchange } from './tcp-apps.js';
import { applyYaml, eventually, joinToken, runWeft, startControl, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';

const RATE = 5;
const LOAD_MS = 16_000;
const PAYLOAD = 32 * 1024;
const HELD = 3;

const SERVICE = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: db }
spec: { selector: { app: db }, ports: [{ name: sql, port: 9000, protocol: TCP }] }
`;

interface TcpRow { namespace: string; service: string; connectionsPerSecond: number; activeConnections: number; readBytesPerSecond: number; writeBytesPerSecond: number; mtlsRate: number | null; connections: number; readBytes: number; writeBytes: number }

let cp: RunningControl;
let server: RunningProxy;
let client: RunningProxy;
let app: Awaited<ReturnType<typeof startTcpApp>>;
const closers: Array<() => Promise<unknown> | unknown> = [];
/** Every connection that reached the app through the mesh, and the bytes each way (the warm-up's too). */
const sent = { connections: 0, read: 0, written: 0 };

/** One exchange through the caller's upstream port: sends `payload`, half-closes, reads the app's answer; counted when the app answered. */
async function exchange(payload: Buffer | string): Promise<boolean> {
  const r = await tcpExchange(client.upstreams['db.default:9000']!, payload, 5000);
  const answer = r.data.toString();
  if (answer !== `got ${Buffer.byteLength(payload)} bytes`) return false;
  sent.connections++;
  sent.read += Buffer.byteLength(payload);
  sent.written += r.data.length;
  return true;
}

/** A connection held open with `hold` written; `release()` half-closes it and waits for the app's answer and the close. */
async function hold(): Promise<{ release(): Promise<void> }> {
  const s: Socket = connect({ host: '127.0.0.1', port: client.upstreams['db.default:9000']!, allowHalfOpen: true });
  let answer = '';
  s.on('data', (c: Buffer) => (answer += c.toString()));
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write('hold');
  return {
    release: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => s.destroy(), 5000);
        s.once('close', () => {
          clearTimeout(timer);
          if (answer === 'got 4 bytes') {
            sent.connections++;
            sent.read += 4;
            sent.written += answer.length;
          }
          resolve();
        });
        s.end();
      }),
  };
}

async function statTcp(window: string): Promise<TcpRow | undefined> {
  const r = await runWeft(['stat', 'tcp', '-o', 'json', '--window', window], cp.url);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { rows: TcpRow[] }).rows.find((x) => x.namespace === 'default' && x.service === 'db');
}

before(async () => {
  cp = await startControl();
  closers.push(() => cp.stop());
  await applyYaml(cp, SERVICE);
  app = await startTcpApp('report');
  closers.push(() => app.close());
  server = await startProxyWith(['--control-plane', cp.url, '--workload', 'db-1', '--app-port', `sql=${app.port}`, '--label', 'app=db', '--service-account', 'db', '--token', await joinToken(cp, 'db'), '-q']);
  closers.push(() => server.stop());
  client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client-1', '--register', '--service-account', 'client', '--token', await joinToken(cp, 'client'), '--upstream', 'db:9000=0', '-q']);
  closers.push(() => client.stop());
  await eventually(() => exchange('ping'), 15_000, 'TCP through the mesh');
});

after(async () => {
  for (const c of closers.reverse()) await c();
});

test('weft stat tcp agrees with a known TCP load: connections, active, bytes each way, mTLS', async () => {
  const held = await Promise.all(Array.from({ length: HELD }, () => hold()));
  const payload = Buffer.alloc(PAYLOAD, 'x');
  const total = (RATE * LOAD_MS) / 1000;
  const start = Date.now();
  let failed = 0;
  // Connection i leaves at start + i / RATE seconds, whatever the others take.
  const load = (async () => {
    const inFlight: Array<Promise<void>> = [];
    for (let i = 1; i <= total; i++) {
      const wait = start + (i * 1000) / RATE - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(exchange(payload).then((ok) => void (ok || failed++)));
    }
    await Promise.all(inFlight);
  })();
  // Well into the load, a 10 s window lies wholly inside it.
  await new Promise((r) => setTimeout(r, Math.max(0, start + 15_000 - Date.now())));
  const [mid, table] = await Promise.all([statTcp('10s'), runWeft(['stat', 'tcp', '--window', '10s'], cp.url)]);
  await load;
  // The held connections are still open: the 4 bytes each sent are counted already (bytes count as
  // they move, not when a connection closes).
  let open: TcpRow | undefined;
  await eventually(async () => {
    open = await statTcp('1m');
    if (open !== undefined && open.readBytes >= sent.read + HELD * 4 - 0.5 && open.activeConnections === HELD) return true;
    await new Promise((r) => setTimeout(r, 500));
    return false;
  }, 10_000, "the open connections' bytes counted before they close");
  await Promise.all(held.map((h) => h.release()));

  // Once the last reports are in, a 1 m window holds every connection of the test.
  let end: TcpRow | undefined;
  await eventually(async () => {
    end = await statTcp('1m');
    if (end !== undefined && end.connections >= sent.connections && end.activeConnections === 0) return true;
    await new Promise((r) => setTimeout(r, 500));
    return false;
  }, 15_000, 'every connection reported');
  assert.ok(mid !== undefined && end !== undefined);
  console.log(
    `tcp stats: sent ${sent.connections} connections (${total} at ${RATE}/s, ${HELD} held, ${failed} failed), ${sent.read} bytes read, ${sent.written} written; ` +
      `weft stat tcp (10s, mid-load): ${mid.connectionsPerSecond} conn/s, ${mid.activeConnections} active, ${mid.readBytesPerSecond} B/s read, ${mid.writeBytesPerSecond} B/s written, mTLS ${mid.mtlsRate}; ` +
      `(1m, held still open): ${open?.readBytes} bytes read; (1m, after): ${end.connections} connections, ${end.readBytes} bytes read, ${end.writeBytes} written, ${end.activeConnections} active`,
  );
  assert.equal(failed, 0, 'every connection answered by the app');

  assert.ok(Math.abs(mid.connectionsPerSecond - RATE) <= RATE * 0.15, `conn/s ${mid.connectionsPerSecond} not within 15 % of ${RATE}`);
  assert.ok(Math.abs(mid.readBytesPerSecond - RATE * PAYLOAD) <= RATE * PAYLOAD * 0.15, `read ${mid.readBytesPerSecond} B/s not within 15 % of ${RATE * PAYLOAD}`);
  const reply = `got ${PAYLOAD} bytes`.length;
  assert.ok(Math.abs(mid.writeBytesPerSecond - RATE * reply) <= RATE * reply * 0.15, `written ${mid.writeBytesPerSecond} B/s not within 15 % of ${RATE * reply}`);
  assert.ok(mid.activeConnections >= HELD && mid.activeConnections <= HELD + 1, `active ${mid.activeConnections}: the ${HELD} held, and at most one of the load's`);
  assert.equal(mid.mtlsRate, 1, 'every connection over mTLS');

  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^NAMESPACE\s+NAME\s+CONN\/S\s+ACTIVE\s+READ_BYTES\/S\s+WRITE_BYTES\/S\s+MTLS\s+CONNECTIONS/m);
  assert.match(table.stdout, /\n\s*default\s+db\s+\d+\.\d\d\s+\d+\s+\d+\.\dKiB\/s\s+\d+B\/s\s+100\.00%\s+\d+/);

  assert.equal(end.connections, sent.connections, 'every connection counted once, from the destination side only');
  assert.ok(Math.abs(end.readBytes - sent.read) <= sent.read * 0.01, `read ${end.readBytes} not within 1 % of ${sent.read}`);
  assert.ok(Math.abs(end.writeBytes - sent.written) <= sent.written * 0.01, `written ${end.writeBytes} not within 1 % of ${sent.written}`);
  assert.equal(end.mtlsRate, 1);
});
