// The circuit breaker's maxConnections on TCP, end to end: a `weft proxy --file` whose `--upstream`
// port forwards to a TCP Service `tcp-echo` (an app that counts the connections it accepts), with a
// BackendPolicy `maxConnections: 2`. Two held connections get through; a third is reset without
// reaching the app, counted CIRCUIT_OPEN; a CONNECT on the outbound listener is answered
// `503 CIRCUIT_OPEN`; a configuration push (which replaces the endpoint's pool) keeps counting the
// held connections; closing one lets a new connection through.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { counter, startTcpApp, tcpExchange } from './tcp-apps.js';
import { eventually, freePort, meshYaml, proxyMetrics, rawExchange, startProxy, tempFile, type RunningProxy } from './harness.js';

const policy = (connectTimeout: string): string => `---
apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: tcp-limit }
spec:
  targetRefs: [{ kind: Service, name: tcp-echo }]
  connectTimeout: ${connectTimeout}
  circuitBreaker: { maxConnections: 2 }`;

const OPEN = 'weft_circuit_open_total{destination_service="tcp-echo.default",limit="connections"}';
const REFUSED = 'weft_outbound_tcp_connections_total{destination_service="tcp-echo.default:9000",transport="none",error_code="CIRCUIT_OPEN"}';
const JOINED = 'weft_outbound_tcp_connections_total{destination_service="tcp-echo.default:9000",transport="direct",error_code=""}';
const APPLIED = 'weft_config_reloads_total{result="applied"}';

let app: Awaited<ReturnType<typeof startTcpApp>>;
let proxy: RunningProxy;
let file: string;
let mesh: (connectTimeout: string) => string;
const held: Socket[] = [];

/** A connection through the proxy, held open once its first bytes came back from the app. */
function hold(word: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: proxy.upstreams['tcp-echo.default:9000']! });
    let echoed = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no echo of ${word} within 3 s`));
    }, 3000);
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`${word}: closed before its echo`));
    });
    s.on('data', (c: Buffer) => {
      echoed += c.toString();
      if (echoed === word) {
        clearTimeout(timer);
        resolve(s);
      }
    });
    s.write(word);
  });
}

/** Closes `s` and waits for its close. */
function close(s: Socket): Promise<void> {
  return new Promise((r) => {
    s.once('close', () => r());
    s.destroy();
  });
}

before(async () => {
  app = await startTcpApp('echo');
  const p = { v1: await freePort(), v2: await freePort(), tcp: app.port };
  mesh = (connectTimeout) => meshYaml(p, '  - backendRefs: [{ name: echo-v1, port: 80 }]', policy(connectTimeout));
  file = tempFile('mesh.yaml', mesh('1s'));
  proxy = await startProxy(file, 'client-1', ['--upstream', 'tcp-echo:9000=0']);
});

after(async () => {
  for (const s of held) s.destroy();
  await proxy?.stop();
  await app?.close();
});

test('maxConnections 2 on a TCP Service: the third connection is closed without reaching the app, also across a push; closing one lets the next through', async () => {
  const port = proxy.upstreams['tcp-echo.default:9000']!;
  held.push(await hold('one'), await hold('two'));
  assert.equal(app.accepts, 2);

  // The third: reset at once, nothing from the app, and the app never saw it.
  const t0 = performance.now();
  const third = await tcpExchange(port, 'three', 4000);
  const thirdMs = performance.now() - t0;
  assert.equal(third.timedOut, false, 'closed, not left hanging');
  assert.equal(third.data.length, 0, `nothing from the app: ${third.data.toString()}`);
  assert.equal(third.error, 'ECONNRESET');
  // An app connection opened by mistake would show up within this.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(app.accepts, 2, 'the app never saw the third');

  // A CONNECT to the same Service on the outbound listener is answered with the coded error.
  const viaConnect = await rawExchange(proxy.outbound, 'CONNECT tcp-echo:9000 HTTP/1.1\r\nHost: tcp-echo:9000\r\n\r\n', 3000);
  assert.equal(viaConnect.closed, true);
  assert.match(viaConnect.text, /^HTTP\/1\.1 503 /);
  assert.match(viaConnect.text, /\r\nweft-error: CIRCUIT_OPEN\r\n/i);
  assert.match(viaConnect.text, /maxConnections is 2/);
  assert.equal(app.accepts, 2);

  let m = await proxyMetrics(proxy);
  assert.equal(counter(m, OPEN), 2, m);
  assert.equal(counter(m, REFUSED), 2);

  // A push that changes the connect timeout (a new pool for the endpoint): the held two still count.
  const applied = counter(m, APPLIED);
  writeFileSync(file, mesh('2s'));
  await eventually(async () => counter(await proxyMetrics(proxy), APPLIED) > applied, 10_000, 'the edit applied');
  const afterPush = await tcpExchange(port, 'four', 4000);
  assert.equal(afterPush.error, 'ECONNRESET');
  assert.equal(afterPush.data.length, 0);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(app.accepts, 2, 'the push let no third connection through');

  // Closing one held connection frees its slot: the next connection reaches the app.
  await close(held.shift()!);
  // The proxy learns of the close a moment later: a try before that is refused (and counted).
  let next: Socket | null = null;
  let early = 0;
  await eventually(async () => {
    next = await hold('five').catch(() => null);
    if (next === null) early++;
    return next !== null;
  }, 5000, 'a connection through after one closed');
  held.push(next!);
  assert.equal(app.accepts, 3);

  m = await proxyMetrics(proxy);
  const refused = counter(m, REFUSED);
  console.log(
    `# TCP maxConnections 2: app accepted ${app.accepts} of ${app.accepts + refused} connections tried; ` +
      `circuit_open{limit="connections"}=${counter(m, OPEN)}, outbound_tcp{error_code="CIRCUIT_OPEN"}=${refused}, joined=${counter(m, JOINED)}; ` +
      `third refused in ${Math.round(thirdMs)} ms; ${early} tries before the freed slot was seen`,
  );
  assert.equal(counter(m, OPEN), refused);
  assert.equal(refused, 3 + early, `3 refusals, and ${early} tries before the proxy saw the close`);
  assert.equal(counter(m, JOINED), 3);
});
