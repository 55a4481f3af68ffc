// Runs every compiled test file (*.test.js): unit tests beside the code under dist/src, then the
// end-to-end tests under dist/test. Files are listed explicitly: given a folder, node 20's runner
// would also run every .js file under any folder named "test" (fixtures and helpers too).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function testFiles(path) {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true }).flatMap((e) => {
    const p = join(path, e.name);
    if (e.isDirectory()) return testFiles(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  });
}

const targets = process.argv.length > 2 ? process.argv.slice(2) : ['dist/src', 'dist/test'];
// No single test may hang the suite: each gets at most 60 s.
const args = ['--test', '--test-reporter=spec', '--test-timeout=60000', ...targets.flatMap(testFiles)];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
