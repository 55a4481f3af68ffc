/**
 * A watched directory of resource files (`weft control --config-dir`). Each `.yaml`, `.yml` or
 * `.json` file is a source of its own: its valid documents apply, its invalid ones are reported. An
 * edit that breaks a resource that was good keeps the last good version of that resource, so a typo
 * never deletes a route that carried traffic.
 */
import { readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { join, resolve } from 'node:path';
import { formatResourceError, loadResources, type ResourceError } from '../../model/index.js';
import type { Resource } from '../../model/resources.js';
import { resourceKey, type ResourceIndex } from '../resource-index.js';

const RESOURCE_FILE = /\.(ya?ml|json)$/;

/** Problems of one file, as of its last read. */
export interface FileProblems {
  file: string;
  errors: string[];
}

export class ConfigDirSource {
  private readonly dir: string;
  private readonly index: ResourceIndex;
  private readonly log: (msg: string) => void;
  private readonly good = new Map<string, Resource[]>();
  private readonly problems = new Map<string, string[]>();
  private watcher: FSWatcher | null = null;
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(dir: string, index: ResourceIndex, log: (msg: string) => void) {
    this.dir = resolve(dir);
    this.index = index;
    this.log = log;
  }

  /** Reads every file once, then follows changes. */
  start(): void {
    for (const name of readdirSync(this.dir).sort()) if (RESOURCE_FILE.test(name)) this.read(name);
    this.watcher = watch(this.dir, (_event, name) => {
      if (name === null || !RESOURCE_FILE.test(name)) return;
      clearTimeout(this.timers.get(name));
      this.timers.set(name, setTimeout(() => this.read(name), 50));
    });
  }

  /** Files with problems. */
  fileProblems(): FileProblems[] {
    return [...this.problems.entries()].filter(([, e]) => e.length > 0).map(([file, errors]) => ({ file, errors }));
  }

  private read(name: string): void {
    this.timers.delete(name);
    const path = join(this.dir, name);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      // Removed: everything the file defined goes with it.
      this.good.delete(name);
      this.problems.delete(name);
      this.index.setFile(name, []);
      this.log(`${name}: removed`);
      return;
    }
    const loaded = loadResources(text, name);
    const previous = new Map((this.good.get(name) ?? []).map((r) => [resourceKey(r), r]));
    const loadedKeys = new Set(loaded.resources.map(resourceKey));
    const kept = new Map<string, Resource>();
    for (const e of loaded.errors) {
      const old = previous.get(errorKey(e));
      if (old !== undefined && !loadedKeys.has(errorKey(e))) kept.set(errorKey(e), old);
    }
    const resources = [...loaded.resources, ...kept.values()];
    const conflicts = this.index.setFile(name, resources);
    this.good.set(name, resources);
    const errors = [...loaded.errors.map(formatResourceError), ...conflicts.map((c) => `${name}: ${c}`)];
    if (kept.size > 0) errors.push(`${name}: kept the last good version of ${[...kept.keys()].join(', ')}`);
    this.problems.set(name, errors);
    this.log(`${name}: ${loaded.resources.length} resources${errors.length > 0 ? `, problems:\n  ${errors.join('\n  ')}` : ''}`);
  }

  close(): void {
    this.watcher?.close();
    for (const t of this.timers.values()) clearTimeout(t);
  }
}

function errorKey(e: ResourceError): string {
  return `${e.kind}/${e.namespace}/${e.name}`;
}
