// The `weft` command itself: version, help, exit codes, validation output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, tempFile, weftBin } from './harness.js';

const weft = (...args: string[]): { code: number | null; out: string; err: string } => {
  const r = spawnSync(process.execPath, [weftBin, ...args], { encoding: 'utf8', timeout: 10_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('weft --version prints the package version', () => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const r = weft('--version');
  assert.equal(r.code, 0);
  assert.equal(r.out.trim(), `weft ${version}`);
});

test('help for every command; unknown commands and flags exit 2', () => {
  const top = weft('--help');
  assert.equal(top.code, 0);
  for (const cmd of ['proxy', 'validate', 'version']) {
    assert.match(top.out, new RegExp(`\\n  ${cmd} `));
    const r = weft(cmd, '--help');
    assert.equal(r.code, 0, cmd);
    assert.match(r.out, new RegExp(`^Usage: weft ${cmd}`));
  }
  assert.match(weft('proxy', '--help').out, /--upstream SVC:PORT=LOCAL/);
  assert.equal(weft('frobnicate').code, 2);
  const bad = weft('proxy', '--nope');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--nope/);
});

test('weft validate names file, line, resource and field; exit 1', () => {
  const file = tempFile('bad.yaml', `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo }
spec:
  parentRefs: [{ kind: Service, name: echo }]
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: nope
`);
  const r = weft('validate', '-f', file);
  assert.equal(r.code, 1);
  assert.match(r.err, /bad\.yaml:10 HTTPRoute\/echo: spec\.rules\[0\]\.matches\[0\]\.path\.value: must start with "\/"/);
  const good = weft('validate', '-f', join(root, 'examples/echo/mesh.yaml'));
  assert.equal(good.code, 0, good.err);
});

test('weft proxy refuses a workload the file does not declare, naming it', () => {
  const r = weft('proxy', '--file', join(root, 'examples/echo/mesh.yaml'), '--workload', 'ghost', '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0');
  assert.equal(r.code, 1);
  assert.match(r.err, /ghost/);
});
