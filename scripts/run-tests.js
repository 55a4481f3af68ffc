// Runs every compiled test: unit tests beside the code, then the end-to-end tests.
// node 20's runner takes directories and finds *.test.js inside them.
import { spawnSync } from 'node:child_process';

// No single test may hang the suite: each gets at most 60 s.
const args = ['--test', '--test-reporter=spec', '--test-timeout=60000', ...process.argv.slice(2)];
if (process.argv.length <= 2) args.push('dist/src/', 'dist/test/');
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
