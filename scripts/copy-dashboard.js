// Copies the dashboard (src/dashboard: HTML, CSS, JavaScript modules, SVG) to dist/src/dashboard, since
// tsc copies only what it compiles. Run by `npm run build` before tsc.
import { cpSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const to = join(root, 'dist/src/dashboard');
rmSync(to, { recursive: true, force: true });
cpSync(join(root, 'src/dashboard'), to, { recursive: true });
