import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { compileProxySnapshot } from './compile.js';
import { formatResourceError } from './errors.js';
import { loadResources } from './load.js';

// From dist/src/model/ back to the repository root.
const file = new URL('../../../examples/echo/mesh.yaml', import.meta.url);

test('examples/echo/mesh.yaml loads and compiles for client-1 without errors', () => {
  const loaded = loadResources(readFileSync(file, 'utf8'), 'mesh.yaml');
  assert.deepEqual(loaded.errors.map(formatResourceError), []);
  const { snapshot, errors } = compileProxySnapshot(loaded.resources, { workload: 'client-1' });
  assert.deepEqual(errors.map(formatResourceError), []);
  assert.ok(snapshot);
  assert.deepEqual(snapshot.virtualHosts.map((v) => v.name), ['echo.default:80', 'echo-v1.default:80', 'echo-v2.default:80']);
  assert.deepEqual(
    snapshot.virtualHosts[0]!.routes.map((r) => [r.match.headers, r.action]),
    [
      [[{ name: 'x-canary', type: 'Exact', value: '1' }], { type: 'forward', backends: [{ cluster: 'echo-v2.default:80', weight: 1 }] }],
      [[], { type: 'forward', backends: [{ cluster: 'echo-v1.default:80', weight: 90 }, { cluster: 'echo-v2.default:80', weight: 10 }] }],
    ],
  );
  const endpoints = (name: string) => snapshot.clusters.find((c) => c.name === name)!.endpoints.map((e) => `${e.workload} ${e.address}:${e.port}`);
  assert.deepEqual(endpoints('echo.default:80'), ['default/echo-1 127.0.0.1:9001', 'default/echo-2 127.0.0.1:9002']);
  assert.deepEqual(endpoints('echo-v1.default:80'), ['default/echo-1 127.0.0.1:9001']);
  assert.deepEqual(endpoints('echo-v2.default:80'), ['default/echo-2 127.0.0.1:9002']);
  assert.deepEqual(endpoints('tcp-echo.default:9000'), ['default/tcp-echo-1 127.0.0.1:9003']);
  assert.deepEqual(snapshot.tcpServices.map((t) => t.backends), [[{ cluster: 'tcp-echo.default:9000', weight: 1 }]]);
  assert.equal(snapshot.inbound.defaultPort, 9100);
});
