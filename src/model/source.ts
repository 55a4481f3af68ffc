/** Field paths (`spec.rules[0].matches[0].path.value`) and where a loaded resource's fields sit in its file. */

/** Where a loaded resource came from: its file and the line of each field path. */
export interface SourceInfo {
  file: string | null;
  /** Line of the document's first field. */
  line: number;
  /** 1-based line of every field path present in the document (map keys and list items). */
  lines: ReadonlyMap<string, number>;
}

// Kept beside the resource rather than inside it, so resources stay plain data that serialise cleanly.
const sources = new WeakMap<object, SourceInfo>();

/** Records where a resource was loaded from. */
export function rememberSource(resource: object, info: SourceInfo): void {
  sources.set(resource, info);
}

/** Where a resource was loaded from, if it came from `loadResources`. */
export function sourceOf(resource: object): SourceInfo | undefined {
  return sources.get(resource);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Appends a map key to a field path; keys that are not plain words are quoted: `labels["app.kubernetes.io/name"]`. */
export function joinPath(path: string, key: string): string {
  if (!IDENTIFIER.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === '' ? key : `${path}.${key}`;
}

const LAST_SEGMENT = /(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\]|^[A-Za-z_][A-Za-z0-9_-]*)$/;

/** Line of a field path, or of its nearest ancestor present in the source (a missing field reports its parent's line). */
export function lineAt(info: SourceInfo, path: string): number {
  for (let p = path; p !== ''; ) {
    const line = info.lines.get(p);
    if (line !== undefined) return line;
    const next = p.replace(LAST_SEGMENT, '');
    if (next === p) break;
    p = next;
  }
  return info.line;
}
