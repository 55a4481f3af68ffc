// AuthorizationPolicy enforced at the inbound side of a real proxy, with callers identified by their
// mTLS certificates: allow, deny, default-deny, globs, methods, paths, headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { eventually, runWeft, startControl, startEcho, startProxyWith, type RunningProxy, joinToken as token, applyYaml as apply } from './harness.js';

const SERVICE = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
`;

interface Answer {
  status: number;
  error: string | undefined;
  body: string;
}

function call(proxy: RunningProxy, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: proxy.outbound!, method, path: `http://echo${path}`, headers: { host: 'echo', ...headers } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, error: res.headers['weft-error'] as string | undefined, body }));
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message, body: '' }));
    req.end();
  });
}



test('AuthorizationPolicy: allow by identity glob, method and path; DENY wins; default deny; headers; ambiguous paths refused', async () => {
  const cp = await startControl();
  const app = await startEcho('echo-app');
  const proxies: RunningProxy[] = [];
  try {
    await apply(cp, SERVICE);
    const server = await startProxyWith(['--control-plane', cp.url, '--workload', 'echo-1', '--app-port', `http=${app.port}`, '--label', 'app=echo', '--service-account', 'echo', '--token', await token(cp, 'echo'), '-q']);
    const reader = await startProxyWith(['--control-plane', cp.url, '--workload', 'reader', '--register', '--service-account', 'reader', '--token', await token(cp, 'reader'), '-q']);
    const writer = await startProxyWith(['--control-plane', cp.url, '--workload', 'writer', '--register', '--service-account', 'writer', '--token', await token(cp, 'writer'), '-q']);
    proxies.push(server, reader, writer);
    await eventually(async () => (await call(reader, 'GET', '/')).status === 200 && (await call(writer, 'GET', '/')).status === 200, 10_000, 'both callers get through with no policy');
    // No policy: everything is allowed, whatever the method.
    assert.equal((await call(writer, 'DELETE', '/anything')).status, 200);

    await apply(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: readers }
spec:
  targetRefs: [{ kind: Service, name: echo }]
  rules:
  - from: [{ identities: ["spiffe://*/ns/default/sa/read*"] }]
    to: [{ methods: [GET, HEAD], paths: ["/public/*", "/status"] }]
  - from: [{ identities: ["spiffe://cluster.local/ns/default/sa/writer"] }]
    to: [{ methods: [POST] }]
    when: [{ header: x-role, values: ["admin-*"] }]
`,
    );
    await eventually(async () => (await call(writer, 'GET', '/public/a')).status === 403, 5000, 'the ALLOW policy in force');
    const expect = async (who: RunningProxy, method: string, path: string, status: number, headers: Record<string, string> = {}): Promise<Answer> => {
      const a = await call(who, method, path, headers);
      assert.equal(a.status, status, `${method} ${path} → ${a.status} ${a.error ?? ''} ${a.body}`);
      if (status === 403) assert.equal(a.error, 'DENIED');
      return a;
    };
    await expect(reader, 'GET', '/public/a', 200);
    await expect(reader, 'GET', '/public/a/b?x=1', 200);
    await expect(reader, 'HEAD', '/status', 200);
    await expect(reader, 'GET', '/status/x', 403); // exact path only
    await expect(reader, 'POST', '/public/a', 403); // method not allowed
    const byDefault = await expect(reader, 'GET', '/private', 403);
    assert.match(byDefault.body, /spiffe:\/\/cluster.local\/ns\/default\/sa\/reader may not GET \/private here: denied no ALLOW policy matched/);
    await expect(writer, 'GET', '/public/a', 403); // not a reader
    await expect(writer, 'POST', '/orders', 403); // header missing
    await expect(writer, 'POST', '/orders', 403, { 'x-role': 'user' });
    await expect(writer, 'POST', '/orders', 200, { 'x-role': 'admin-7' });

    // A DENY policy wins over the ALLOW that would let the reader in.
    await apply(
      cp,
      `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-secrets }
spec:
  targetRefs: [{ kind: Service, name: echo }]
  action: DENY
  rules:
  - from: [{ namespaces: ["def*"] }]
    to: [{ paths: ["/public/secret*"] }]
`,
    );
    await eventually(async () => (await call(reader, 'GET', '/public/secret')).status === 403, 5000, 'the DENY policy in force');
    const denied = await expect(reader, 'GET', '/public/secrets.txt', 403);
    assert.match(denied.body, /denied by AuthorizationPolicy default\/no-secrets/);
    await expect(reader, 'GET', '/public/open', 200);
    // Paths the app might resolve past the policy are refused outright.
    const sneaky = await call(reader, 'GET', '/public/x/../secret');
    assert.equal(sneaky.status, 400, sneaky.body);
    assert.equal((await call(reader, 'GET', '/public//secret')).status, 400);
    assert.equal((await call(reader, 'GET', '/public/%73ecret')).status, 200, 'an encoded letter is not ambiguous (the app decodes it, but so would a policy author)');

    // The policy's name is in the metrics of the proxy that refused.
    const metrics = await (await fetch(`http://127.0.0.1:${server.admin}/metrics`)).text();
    assert.match(metrics, /weft_requests_total\{[^}]*route="inbound:denied:default\/no-secrets"[^}]*error_code="DENIED"[^}]*\} [1-9]/);
    assert.match(metrics, /weft_requests_total\{[^}]*route="inbound:denied"[^}]*error_code="DENIED"[^}]*\} [1-9]/);

    // Deleting the ALLOW policy: no ALLOW covers the port any more, so only the DENY applies.
    assert.equal((await runWeft(['delete', 'authz', 'readers'], cp.url)).code, 0);
    await eventually(async () => (await call(writer, 'DELETE', '/x')).status === 200, 5000, 'allow-all again');
    await expect(reader, 'GET', '/public/secret', 403);
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await app.close();
    await cp.stop();
  }
});
