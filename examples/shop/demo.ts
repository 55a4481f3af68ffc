// `npm run demo`: the shop on one machine. `weft up` starts a control plane, a sidecar for each app
// and the apps themselves (examples/shop/mesh.yaml); a table of golden signals follows every 2 s
// until Ctrl-C, which stops every process it started.
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const mesh = join(root, 'examples/shop/mesh.yaml');
const canary = relative(process.cwd(), join(root, 'examples/shop/canary-50.yaml')) || 'examples/shop/canary-50.yaml';
const weft = relative(process.cwd(), join(root, 'bin/weft.js'));
const server = 'http://127.0.0.1:15010';

console.log(`The shop: loadgen → web → catalog → reviews (v1 90% / v2 10%) → ratings, each app beside its own sidecar.
In another terminal, while it runs:
  WEFT_SERVER=${server} node ${weft} apply -f ${canary}   # shift reviews to 50/50, live
  WEFT_SERVER=${server} node ${weft} proxy-status
  WEFT_SERVER=${server} node ${weft} check
`);
const code = await main(['up', '-f', mesh, '--stats', '--stats-note', `reviews split: change it live with "WEFT_SERVER=${server} node ${weft} apply -f ${canary}"`]);
process.exitCode = code;
setTimeout(() => process.exit(code), 1000).unref();
