import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlPlaneClient } from './control-plane-client.js';
import type { WorkloadIdentity } from '../tls/workload-identity.js';

/** What a client logs when started, without connecting anywhere (it is closed first). */
async function startupLog(url: string, withToken: boolean): Promise<string[]> {
  const lines: string[] = [];
  const client = new ControlPlaneClient({
    url,
    workload: 'w',
    namespace: 'default',
    registration: () => null,
    apply: () => {},
    log: (m) => lines.push(m),
    identity: withToken ? { holder: {} as WorkloadIdentity, token: 'weft-000000000000.secret' } : null,
  });
  await client.close(false);
  client.start();
  return lines;
}

test('a token sent over plaintext http:// to another host is warned about once; loopback and https:// are not', async () => {
  const warned = await startupLog('http://10.1.2.3:15010', true);
  assert.equal(warned.length, 1);
  assert.match(warned[0]!, /^warning: http:\/\/10\.1\.2\.3:15010 is plaintext HTTP to another host: the join token crosses the network in the clear.*--control-plane https:\/\/10\.1\.2\.3:15010 --ca-cert-hash sha256:<hex>/);
  assert.doesNotMatch(warned[0]!, /weft-000000000000/, 'the warning does not show the token');
  assert.deepEqual(await startupLog('http://127.0.0.1:15010', true), []);
  assert.deepEqual(await startupLog('http://localhost:15010', true), []);
  assert.deepEqual(await startupLog('https://10.1.2.3:15010', true), []);
  assert.deepEqual(await startupLog('http://10.1.2.3:15010', false), [], 'no token, nothing to leak');
});
