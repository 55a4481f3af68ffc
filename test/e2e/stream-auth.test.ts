// `weft control --stream-auth required` with real processes: a proxy that joins with a token gets its
// configuration, moves its stream to mTLS and carries traffic; proxies without a token (or with a bad
// one) get nothing, register nothing, are counted and shown with the reason, and retry without spinning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { applyYaml, eventually, joinToken, runWeft, startControl, startEcho, startProxyWith, type RunningProxy } from './harness.js';

const SERVICE = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
`;

function viaProxy(port: number, host: string): Promise<{ status: number; error: string | undefined; upstream: string | undefined }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: `http://${host}/`, headers: { host } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, error: res.headers['weft-error'] as string | undefined, upstream: res.headers['x-upstream'] as string | undefined }));
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message, upstream: undefined }));
    req.end();
  });
}

/** The value of one series in Prometheus text, 0 when absent. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

test('--stream-auth required: a proxy with a token joins and carries mTLS traffic; proxies without a valid one get nothing', async () => {
  const cp = await startControl(undefined, ['--stream-auth', 'required']);
  const app = await startEcho('echo-app');
  const intruderApp = await startEcho('intruder-app');
  const proxies: RunningProxy[] = [];
  try {
    await eventually(() => /config streams: credential required/.test(cp.stderr()), 5000, 'the control plane says its mode');
    const health = (await (await fetch(`${cp.url}/api/v1/health`)).json()) as { streamAuth: string };
    assert.equal(health.streamAuth, 'required');
    await applyYaml(cp, SERVICE);

    const server = await startProxyWith(['--control-plane', cp.url, '--workload', 'echo-1', '--app-port', `http=${app.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', await joinToken(cp, 'echo'), '-q']);
    proxies.push(server);
    const client = await startProxyWith(['--control-plane', cp.url, '--workload', 'client', '--register', '--label', 'app=client', '--service-account', 'client', '--token', await joinToken(cp, 'client'), '-q']);
    proxies.push(client);
    // Claims to be an echo endpoint, with no credential; and one with a token that is not one.
    const intruder = await startProxyWith(['--control-plane', cp.url, '--workload', 'intruder', '--app-port', `http=${intruderApp.port}`, '--label', 'app=echo', '--service-account', 'echo']);
    proxies.push(intruder);
    const forger = await startProxyWith(['--control-plane', cp.url, '--workload', 'forger', '--register', '--label', 'app=echo', '--service-account', 'echo', '--token', `weft-000000000000.${'a'.repeat(32)}`]);
    proxies.push(forger);
    const watchFrom = Date.now();

    // The proxies with tokens hold certificates and their streams moved to mTLS.
    await eventually(async () => {
      const items = ((await (await cp.api('/api/v1/proxies')).json()) as { items: Array<{ id: string; connected: boolean; transport: string | null; authenticatedBy: string | null }> }).items;
      const by = new Map(items.map((p) => [p.id, p]));
      return ['default/echo-1', 'default/client'].every((id) => by.get(id)?.connected === true && by.get(id)?.transport === 'mtls' && by.get(id)?.authenticatedBy === 'certificate');
    }, 15_000, 'echo-1 and client on mTLS streams, authenticated by their certificates');

    // Traffic flows from client to echo, all of it to the declared app: the intruder is no endpoint.
    await eventually(async () => (await viaProxy(client.outbound, 'echo')).status === 200, 10_000, 'echo through two proxies');
    const N = 40;
    let ok = 0;
    for (let i = 0; i < N; i++) if ((await viaProxy(client.outbound, 'echo')).upstream === 'echo-app') ok++;
    assert.equal(ok, N, `${N - ok} of ${N} requests failed or reached another app`);
    assert.equal(intruderApp.seen.length, 0, 'nothing reached the app behind the intruder');
    const clientMetrics = await (await fetch(`http://127.0.0.1:${client.admin}/metrics`)).text();
    assert.match(clientMetrics, /weft_certificate_expiry_seconds \d+/, 'the client holds a certificate');
    const serverMetrics = await (await fetch(`http://127.0.0.1:${server.admin}/metrics`)).text();
    assert.match(serverMetrics, /weft_inbound_connections_total\{security="mtls"\} [1-9]/, 'the hop was mutual TLS');

    // The refused proxies have no configuration: their outbound answers 503 NO_CONFIGURATION.
    const fromIntruder = await viaProxy(intruder.outbound, 'echo');
    assert.equal(fromIntruder.status, 503);
    assert.equal(fromIntruder.error, 'NO_CONFIGURATION');
    const fromForger = await viaProxy(forger.outbound, 'echo');
    assert.equal(fromForger.error, 'NO_CONFIGURATION');
    const workloads = ((await (await cp.api('/api/v1/resources?kind=Workload')).json()) as { items: Array<{ metadata: { name: string } }> }).items.map((e) => e.metadata.name).sort();
    assert.deepEqual(workloads, ['client', 'echo-1'], 'only the authenticated proxies registered');

    // Counted by reason, shown by proxy-status with the reason, logged by the proxy without spinning.
    await eventually(() => /: config stream refused: no credential: .*; retrying in \d+ ms/.test(intruder.stderr()), 5000, 'the intruder logs why');
    await new Promise((r) => setTimeout(r, 4000));
    const watched = (Date.now() - watchFrom) / 1000;
    const cpMetrics = await (await fetch(`${cp.url}/metrics`)).text();
    const noCredential = series(cpMetrics, 'weft_control_streams_refused_total{reason="no_credential"}');
    const badToken = series(cpMetrics, 'weft_control_streams_refused_total{reason="bad_token"}');
    assert.ok(noCredential >= 2, `the intruder retried (${noCredential} refusals)`);
    assert.ok(badToken >= 2, `the forger retried (${badToken} refusals)`);
    // Backoff from 100 ms doubling to 5 s with full jitter: about a dozen attempts in this window; a spin would be hundreds.
    assert.ok(noCredential <= 25 && badToken <= 25, `no spinning: ${noCredential} and ${badToken} refusals in ${watched.toFixed(1)} s`);
    const logged = intruder.stderr().split('\n').filter((l) => l.includes('config stream refused')).length;
    assert.ok(logged >= 1 && logged <= Math.ceil(noCredential / 5) + 1, `the intruder logged ${logged} lines for ${noCredential} refusals`);
    assert.match(forger.stderr(), /: config stream refused: token 000000000000: unknown/);
    const cpLogged = cp.stderr().split('\n').filter((l) => l.includes('proxy default/intruder') && l.includes('stream refused (no_credential)')).length;
    assert.ok(cpLogged >= 2 && cpLogged <= noCredential, `the control plane logs once per connect (${cpLogged} lines, ${noCredential} refusals)`);

    const status = await runWeft(['proxy-status'], cp.url);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /default\/intruder\s+no .*REFUSED/);
    assert.match(status.stdout, /default\/intruder: config stream refused: no credential/);
    assert.match(status.stdout, /default\/forger: config stream refused: token 000000000000: unknown/);
    assert.match(status.stdout, /default\/client\s+yes\s+mtls/);
    const check = await runWeft(['check'], cp.url);
    assert.match(check.stdout, /√ config streams need a credential \(--stream-auth required\)/);

    console.log(
      `stream-auth: ${ok}/${N} requests over mTLS ok (error rate ${((N - ok) / N).toFixed(3)}), intruder app saw ${intruderApp.seen.length}; ` +
        `refused in ${watched.toFixed(1)} s: no_credential ${noCredential}, bad_token ${badToken}; intruder logged ${logged} line(s), control plane ${cpLogged}`,
    );
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await cp.stop();
    await app.close();
    await intruderApp.close();
  }
});
