// The first join over TLS with the control plane's root pinned (docs/identity.md): a real `weft control`,
// the pin from `weft token create`, and `weft proxy --control-plane https://… --ca-cert-hash …`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apiFetch, eventually, proxyMetrics, runWeft, startControl, startProxyWith, type RunningControl, type RunningProxy } from './harness.js';

const SERVICE = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
`;

async function proxyStatus(cp: RunningControl, id: string): Promise<any> {
  const { items } = (await (await apiFetch(`${cp.url}/api/v1/proxies`)).json()) as { items: any[] };
  return items.find((p) => p.id === id) ?? null;
}

async function tokenFor(cp: RunningControl, sa: string): Promise<{ token: string; hint: string }> {
  const r = await runWeft(['token', 'create', '--service-account', sa, '--ttl', '1h'], cp.url);
  assert.equal(r.code, 0, r.stderr);
  return { token: r.stdout.trim(), hint: r.stderr };
}

test('a proxy joins over https with the pin from "weft token create"; one with a wrong pin never sends its token', async () => {
  const cp = await startControl();
  const procs: RunningProxy[] = [];
  try {
    await runWeft(['apply', '-f', '-'], cp.url, SERVICE);
    const https = cp.url.replace('http://', 'https://');

    // The pin comes with the token, in a command ready to paste; `weft ca pins` and the JSON agree.
    const good = await tokenFor(cp, 'client');
    assert.match(good.token, /^weft-[0-9a-f]{12}\.\S+$/, 'stdout is the token alone');
    const pin = /root pin: (sha256:[0-9a-f]{64})/.exec(good.hint)?.[1];
    assert.ok(pin !== undefined, good.hint);
    assert.ok(good.hint.includes(`weft proxy --control-plane ${https} --ca-cert-hash ${pin} --token "$TOKEN" --namespace default --service-account client`), good.hint);
    const pins = await runWeft(['ca', 'pins', '-o', 'json'], cp.url);
    assert.equal(pins.code, 0, pins.stderr);
    assert.deepEqual((JSON.parse(pins.stdout) as { pins: Array<{ pin: string; role: string }> }).pins.map((p) => [p.pin, p.role]), [[pin, 'presented']]);
    const asJson = await runWeft(['token', 'create', '--service-account', 'other', '-o', 'json'], cp.url);
    assert.deepEqual((JSON.parse(asJson.stdout) as { caCertHashes: string[] }).caCertHashes, [pin]);

    // https:// with no pin, or a pin with http://, does not start.
    const noPin = await runWeft(['proxy', '--control-plane', https, '--workload', 'x', '--token', good.token], cp.url);
    assert.equal(noPin.code, 2);
    assert.match(noPin.stderr, /--control-plane https:\/\/127\.0\.0\.1:\d+: give the control plane's root pin with --ca-cert-hash sha256:<hex>.*never trusted on first use/);
    const pinHttp = await runWeft(['proxy', '--control-plane', cp.url, '--ca-cert-hash', pin!, '--workload', 'x'], cp.url);
    assert.equal(pinHttp.code, 2);
    assert.match(pinHttp.stderr, /--ca-cert-hash needs an https:\/\/ --control-plane/);
    const badPin = await runWeft(['proxy', '--control-plane', https, '--ca-cert-hash', 'sha1:abcd', '--workload', 'x'], cp.url);
    assert.match(badPin.stderr, /--ca-cert-hash: "sha1:abcd" is not sha256:<hex>/);

    // The right pin: joins over TLS, gets its certificate and configuration, then moves to mTLS.
    const t0 = Date.now();
    const client = await startProxyWith(['--control-plane', https, '--ca-cert-hash', pin!, '--workload', 'client-1', '--register', '--service-account', 'client', '--token', good.token]);
    procs.push(client);
    await eventually(async () => {
      const p = await proxyStatus(cp, 'default/client-1');
      return p?.connected === true && p.transport === 'mtls' && p.certificate?.installed === true && p.types.routes.state === 'SYNCED';
    }, 15_000, 'the pinned proxy joined, on mTLS, with a certificate and its configuration');
    const joinedMs = Date.now() - t0;
    assert.match(cp.stderr(), /proxy default\/client-1 connected from [^ ]+ \(tls\)/, 'the join (with the token) came over TLS');
    assert.match(cp.stderr(), /proxy default\/client-1 connected from [^ ]+ \(mtls\)/);
    assert.doesNotMatch(cp.stderr(), /proxy default\/client-1 connected from [^ ]+ \(plaintext\)/);
    assert.match(client.stderr(), /joined with the token; moving the config stream to mTLS/);
    assert.match(await proxyMetrics(client), /weft_config_reloads_total\{result="applied"\} [1-9]/);

    // A wrong pin: the proxy retries with backoff and logs what did not match; the control plane never hears from it.
    const intruder = await tokenFor(cp, 'intruder');
    const wrong = `sha256:${'0'.repeat(64)}`;
    const bad = await startProxyWith(['--control-plane', https, '--ca-cert-hash', wrong, '--workload', 'intruder-1', '--register', '--service-account', 'intruder', '--token', intruder.token]);
    procs.push(bad);
    await eventually(() => bad.stderr().includes('refused the server, the join token was not sent'), 10_000, 'the mismatch in the proxy log');
    // Several attempts go by (backoff from 100 ms, the first logged and every fifth).
    await new Promise((r) => setTimeout(r, 2000));
    const line = bad.stderr().split('\n').find((l) => l.includes('refused the server'))!;
    assert.ok(line.includes(`no CA certificate the server presented matches --ca-cert-hash ${wrong}; its chain: `), line);
    assert.ok(line.includes(`${pin} (O=cluster.local, CN=Weft root 1)`), `the presented root's pin is named: ${line}`);
    assert.match(line, /retrying in \d+ ms/);
    assert.equal(await proxyStatus(cp, 'default/intruder-1'), null, 'no stream, no hello, no token reached the control plane');
    assert.doesNotMatch(cp.stderr(), /intruder/);
    const certs = (await (await apiFetch(`${cp.url}/api/v1/certificates`)).json()) as { items: Array<{ proxy: string }> };
    assert.deepEqual(certs.items.map((i) => i.proxy), ['default/client-1']);
    const status = await runWeft(['proxy-status'], cp.url);
    assert.ok(status.stdout.includes('default/client-1') && !status.stdout.includes('intruder'), status.stdout);
    const refusals = (bad.stderr().match(/refused the server/g) ?? []).length;
    console.log(`join-tls: pinned proxy joined over TLS and moved to mTLS in ${joinedMs} ms; wrong-pin proxy: ${refusals} logged refusal(s) in ~2 s, 0 hellos and 0 certificates at the control plane (proxies known: ${certs.items.length})`);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await cp.stop();
  }
});
