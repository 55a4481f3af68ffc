/** Reading resources from multi-document YAML (or JSON) text, validated, each remembering its source lines. */
import { isMap, isNode, isScalar, isSeq, LineCounter, parseAllDocuments } from 'yaml';
import { resourceError, type ResourceError } from './errors.js';
import type { Resource } from './resources.js';
import { joinPath, rememberSource, type SourceInfo } from './source.js';
import { validateResource } from './validate.js';

/** What one load produced: the valid resources, and every problem with the others. */
export interface LoadResult {
  resources: Resource[];
  errors: ResourceError[];
}

/**
 * Loads every document of `text`; `file` is only used to name it in errors. A document that fails
 * validation is reported with all its errors and left out, while the others still load.
 */
export function loadResources(text: string, file: string | null): LoadResult {
  const lineCounter = new LineCounter();
  const result: LoadResult = { resources: [], errors: [] };
  const seen = new Set<string>();
  let mesh: string | null = null;
  for (const doc of parseAllDocuments(text, { lineCounter })) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const line = e.linePos?.[0].line ?? lineCounter.linePos(e.pos[0]).line;
        // yaml's messages end with " at line L, column C:" and a code excerpt; the location is printed separately.
        const message = e.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '');
        result.errors.push({ file, line, kind: '', namespace: '', name: '', path: '', message });
      }
      continue;
    }
    const value = dropNulls(doc.toJS({ maxAliasCount: 100 }));
    if (value === undefined) continue;
    const lines = new Map<string, number>();
    walk(doc.contents, '', lines, lineCounter);
    const start = doc.contents?.range?.[0];
    const source: SourceInfo = { file, line: start === undefined ? 1 : lineCounter.linePos(start).line, lines };
    const id = identity(value);
    const problems = validateResource(value);
    if (problems.length > 0) {
      for (const p of problems) result.errors.push(resourceError(id, source, p.path, p.message));
      continue;
    }
    const key = `${id.kind}/${id.namespace}/${id.name}`;
    if (seen.has(key)) {
      result.errors.push(resourceError(id, source, 'metadata.name', 'duplicate: already defined earlier in this input'));
      continue;
    }
    if (id.kind === 'Mesh' && mesh !== null) {
      result.errors.push(resourceError(id, source, 'kind', `only one Mesh is allowed; Mesh/${mesh} is defined earlier`));
      continue;
    }
    if (id.kind === 'Mesh') mesh = id.name;
    seen.add(key);
    const resource = normalize(value as Resource);
    rememberSource(resource, source);
    result.resources.push(resource);
  }
  return result;
}

/** The kind, namespace and name of a document, as far as it has them. */
function identity(v: unknown): { kind: string; namespace: string; name: string } {
  const o = (typeof v === 'object' && v !== null ? v : {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const str = (x: unknown, fallback: string): string => (typeof x === 'string' ? x : fallback);
  return { kind: str(o.kind, ''), namespace: str(o.metadata?.namespace, 'default'), name: str(o.metadata?.name, '') };
}

/** Fills in metadata defaults; specs keep what was written (the compiler applies their defaults). */
function normalize(r: Resource): Resource {
  r.metadata.namespace ??= 'default';
  r.metadata.labels ??= {};
  return r;
}

// Kubernetes treats `field: null` (or an empty `field:`) as absent; doing so here lets the schema and the
// compiler see one shape. Nulls inside lists stay, to be reported.
function dropNulls(v: unknown): unknown {
  if (v === null) return undefined;
  if (Array.isArray(v)) return v.map((x) => (x === null ? null : dropNulls(x)));
  if (typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== null) out[k] = dropNulls(x);
  return out;
}

/** Records the line of every map key and list item under `node`, by field path. */
function walk(node: unknown, path: string, lines: Map<string, number>, lc: LineCounter): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isScalar(pair.key) || pair.key.range == null) continue;
      const p = joinPath(path, String(pair.key.value));
      lines.set(p, lc.linePos(pair.key.range[0]).line);
      walk(pair.value, p, lines, lc);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const p = `${path}[${i}]`;
      if (isNode(item) && item.range) lines.set(p, lc.linePos(item.range[0]).line);
      walk(item, p, lines, lc);
    });
  }
}
