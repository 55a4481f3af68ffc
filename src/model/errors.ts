/** Errors about resources, located by file, line and field path, in one printable format. */
import { lineAt, type SourceInfo } from './source.js';

/** A problem with one resource (or with the file it came from), reported while the rest still applies. */
export interface ResourceError {
  file: string | null;
  line: number | null;
  /** Empty when the document could not be read far enough to know it. */
  kind: string;
  namespace: string;
  name: string;
  /** Field path such as `spec.rules[0].matches[0].path.value`; empty for the whole resource. */
  path: string;
  message: string;
}

/** The identity a resource error names. */
export interface ResourceId {
  kind: string;
  namespace: string;
  name: string;
}

/** Builds an error at `path` of a resource, with the line of that field when the source is known. */
export function resourceError(id: ResourceId, source: SourceInfo | undefined, path: string, message: string): ResourceError {
  return {
    file: source?.file ?? null,
    line: source === undefined ? null : lineAt(source, path),
    kind: id.kind,
    namespace: id.namespace,
    name: id.name,
    path,
    message,
  };
}

/** `mesh.yaml:14 HTTPRoute/shop/echo: spec.rules[0].matches[0].path.value: must start with "/"` */
export function formatResourceError(e: ResourceError): string {
  const where = e.file !== null ? (e.line !== null ? `${e.file}:${e.line}` : e.file) : e.line !== null ? `line ${e.line}` : '';
  const ns = e.namespace !== '' && e.namespace !== 'default' ? `${e.namespace}/` : '';
  const what = e.kind === '' ? '' : e.name === '' ? e.kind : `${e.kind}/${ns}${e.name}`;
  const head = [where, what].filter((s) => s !== '').join(' ');
  const body = e.path === '' ? e.message : `${e.path}: ${e.message}`;
  return head === '' ? body : `${head}: ${body}`;
}
