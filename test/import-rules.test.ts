// The layout is the map: model imports nothing of ours; core only model; proxy and control import
// model and core and never each other; dashboard is served by control; only cli wires everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const src = join(root, 'src');

const allowed: Record<string, readonly string[]> = {
  model: [],
  core: ['model'],
  proxy: ['model', 'core'],
  control: ['model', 'core', 'dashboard'],
  dashboard: ['model', 'core'],
  cli: ['model', 'core', 'proxy', 'control', 'dashboard'],
};

function* files(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else if (e.name.endsWith('.ts')) yield p;
  }
}

/** Every relative import or export-from specifier in a TypeScript file. */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|(?:^|[\s;])import\s*\(?\s*['"](\.[^'"]+)['"]/g;
  for (const m of text.matchAll(re)) out.push((m[1] ?? m[2])!);
  return out;
}

/** The rule violations in the tree under `srcDir`. */
export function violations(srcDir: string): string[] {
  const found: string[] = [];
  for (const file of files(srcDir)) {
    const part = relative(srcDir, file).split('/')[0]!;
    const rules = allowed[part];
    if (rules === undefined) {
      found.push(`${relative(srcDir, file)}: src/${part} is not a part of the architecture`);
      continue;
    }
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const target = relative(srcDir, resolve(dirname(file), spec)).split('/')[0]!;
      if (target !== part && !rules.includes(target)) found.push(`${relative(srcDir, file)} imports ${spec}: ${part} may not import ${target}`);
    }
  }
  return found;
}

test('every import in src/ follows the layering rules', () => {
  assert.deepEqual(violations(src), []);
});

test('the checker catches a forbidden import', () => {
  assert.deepEqual(importsOf(`import { x } from '../proxy/a.js';\nexport * from "./b.js";\nconst m = await import('../control/c.js');`), [
    '../proxy/a.js',
    './b.js',
    '../control/c.js',
  ]);
  const fake = join(root, 'dist', 'import-rules-fixture');
  // A model file that reaches into the proxy must be reported.
  rmSync(fake, { recursive: true, force: true });
  mkdirSync(join(fake, 'model'), { recursive: true });
  mkdirSync(join(fake, 'proxy'), { recursive: true });
  writeFileSync(join(fake, 'model', 'bad.ts'), "import { Proxy } from '../proxy/proxy.js';\n");
  writeFileSync(join(fake, 'proxy', 'ok.ts'), "import type { X } from '../model/bad.js';\n");
  try {
    assert.deepEqual(violations(fake), ['model/bad.ts imports ../proxy/proxy.js: model may not import proxy']);
  } finally {
    rmSync(fake, { recursive: true, force: true });
  }
});
