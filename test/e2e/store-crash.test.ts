// The embedded store survives kill -9: every write acknowledged before the kill is there after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../src/control/store/file-store.js';
import { root } from './harness.js';

test('every acknowledged write survives SIGKILL at arbitrary moments (5 kills, compaction included)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-crash-'));
  const acked: string[] = [];
  for (let run = 0; run < 5; run++) {
    const child = spawn(process.execPath, [join(root, 'dist/test/e2e/fixtures/store-writer.js'), dir, `r${run}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    // Kill once it has acknowledged a first write (a loaded machine may take a while to start it),
    // then at a moment that differs per run.
    const deadline = Date.now() + 15_000;
    while (!out.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50 + run * 97));
    child.kill('SIGKILL');
    await exited;
    // Only whole lines: a key is acknowledged once its line was printed in full.
    const lines = out.split('\n');
    lines.pop();
    assert.ok(lines.length > 0, `run ${run} acknowledged nothing`);
    acked.push(...lines);
    const store = FileStore.open(dir);
    const missing = acked.filter((k) => (store.get(k) as { key?: string } | undefined)?.key !== k);
    store.close();
    assert.deepEqual(missing.slice(0, 5), [], `run ${run}: ${missing.length} of ${acked.length} acknowledged writes lost`);
  }
});
