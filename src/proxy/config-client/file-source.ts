/**
 * Configuration from a resource file (`weft proxy --file`), watched for edits. A valid edit is
 * compiled and swapped in; an edit with any load or validation error is refused as a whole and the
 * last good configuration keeps serving, because half of an edit can route traffic somewhere the
 * whole edit never meant.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { configApplied, configRejected, configWarnings } from '../../core/diagnostics.js';
import { compileProxySnapshot, formatResourceError, loadResources } from '../../model/index.js';
import type { ProxySnapshot } from '../../model/snapshot.js';

/** A compiled file, or why it was refused. */
export type FileLoad =
  | { ok: true; snapshot: ProxySnapshot; warnings: string[] }
  | { ok: false; errors: string[] };

/** Reads, validates and compiles `file` for one workload. */
export function loadSnapshotFile(file: string, workload: string, namespace: string): FileLoad {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, errors: [`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`] };
  }
  const loaded = loadResources(text, basename(file));
  if (loaded.errors.length > 0) return { ok: false, errors: loaded.errors.map(formatResourceError) };
  const compiled = compileProxySnapshot(loaded.resources, { workload, namespace });
  if (compiled.snapshot === null) return { ok: false, errors: compiled.errors.map(formatResourceError) };
  return { ok: true, snapshot: compiled.snapshot, warnings: compiled.errors.map(formatResourceError) };
}

/** Watches a resource file and applies every good version of it. */
export class FileConfigSource {
  private readonly file: string;
  private readonly workload: string;
  private readonly namespace: string;
  private readonly apply: (s: ProxySnapshot) => void;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private version = '';

  constructor(file: string, workload: string, namespace: string, apply: (s: ProxySnapshot) => void) {
    this.file = resolve(file);
    this.workload = workload;
    this.namespace = namespace;
    this.apply = apply;
  }

  /** Loads once; throws with every error when the first load fails. */
  load(): ProxySnapshot {
    const r = loadSnapshotFile(this.file, this.workload, this.namespace);
    if (!r.ok) throw new Error(r.errors.join('\n'));
    this.accept(r.snapshot, r.warnings);
    return r.snapshot;
  }

  private accept(snapshot: ProxySnapshot, warnings: string[]): void {
    if (warnings.length > 0) configWarnings.publish({ source: this.file, warnings });
    if (snapshot.version === this.version) return;
    this.version = snapshot.version;
    this.apply(snapshot);
    configApplied.publish({ source: this.file, version: snapshot.version });
  }

  /** Re-reads the file shortly after it changes. Editors often replace files, so the folder is watched. */
  watch(): void {
    const name = basename(this.file);
    this.watcher = watch(dirname(this.file), (_event, changed) => {
      if (changed !== null && changed !== name) return;
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload(), 50);
    });
  }

  /** Applies the file now if it is good; otherwise keeps the last good configuration. */
  reload(): void {
    this.timer = null;
    const r = loadSnapshotFile(this.file, this.workload, this.namespace);
    if (r.ok) this.accept(r.snapshot, r.warnings);
    else configRejected.publish({ source: this.file, errors: r.errors });
  }

  close(): void {
    this.watcher?.close();
    if (this.timer !== null) clearTimeout(this.timer);
  }
}
