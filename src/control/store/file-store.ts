/**
 * The embedded store of the control plane: a key → JSON value map kept in memory and made durable
 * by an append-only log in the data dir. A write is acknowledged only after its log record is on
 * disk (fdatasync), so an acknowledged write survives `kill -9` or power loss. Writes that arrive
 * while a sync is under way are committed together with the next one (group commit).
 *
 * Log records are JSON lines `{"rev","op","key","value"?,"sum"}`; `sum` guards against a torn last
 * line, which is dropped on open (it was never acknowledged). When the log grows, the state is
 * written to a snapshot (temp file, fsync, rename) and the log starts again.
 */
import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, existsSync, ftruncateSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

/** One change, as watchers see it. */
export interface StoreEvent {
  rev: number;
  op: 'put' | 'delete';
  key: string;
  value?: unknown;
}

interface LogRecord extends StoreEvent {
  sum: string;
}


function checksum(e: StoreEvent): string {
  return createHash('sha256').update(`${e.rev}\0${e.op}\0${e.key}\0${JSON.stringify(e.value ?? null)}`).digest('hex').slice(0, 16);
}

/** A durable key-value store in one folder. */
export class FileStore {
  private readonly dir: string;
  private readonly data = new Map<string, unknown>();
  private rev = 0;
  private fd: number;
  private records = 0;
  private pending: Array<{ line: string; event: StoreEvent; resolve: (rev: number) => void; reject: (e: Error) => void }> = [];
  private flushing = false;
  private readonly watchers = new Set<(e: StoreEvent) => void>();
  private readonly compactAfter: number;

  private constructor(dir: string, compactAfter: number) {
    this.dir = dir;
    this.fd = -1;
    this.compactAfter = compactAfter;
  }

  /** Opens (or creates) the store in `dir`, replaying snapshot and log. */
  static open(dir: string, opts: { compactAfter?: number } = {}): FileStore {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const s = new FileStore(dir, opts.compactAfter ?? 10_000);
    s.load();
    return s;
  }

  private get logPath(): string {
    return join(this.dir, 'store.log');
  }

  private get snapshotPath(): string {
    return join(this.dir, 'store.snapshot.json');
  }

  private load(): void {
    if (existsSync(this.snapshotPath)) {
      const snap = JSON.parse(readFileSync(this.snapshotPath, 'utf8')) as { rev: number; data: Record<string, unknown> };
      this.rev = snap.rev;
      for (const [k, v] of Object.entries(snap.data)) this.data.set(k, v);
    }
    this.fd = openSync(this.logPath, 'a+', 0o600);
    const text = existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
    let good = 0; // bytes of whole, valid records
    let pos = 0;
    while (pos < text.length) {
      const nl = text.indexOf('\n', pos);
      if (nl === -1) break; // a torn last line: never acknowledged
      const line = text.slice(pos, nl);
      let rec: LogRecord;
      try {
        rec = JSON.parse(line) as LogRecord;
      } catch {
        if (text.indexOf('\n', nl + 1) === -1) break;
        throw new Error(`${this.logPath}: corrupt record at byte ${pos}`);
      }
      if (rec.sum !== checksum(rec)) {
        if (text.indexOf('\n', nl + 1) === -1) break;
        throw new Error(`${this.logPath}: checksum mismatch at byte ${pos}`);
      }
      if (rec.rev > this.rev) this.apply(rec);
      this.records++;
      pos = nl + 1;
      good += Buffer.byteLength(line) + 1;
    }
    if (good < Buffer.byteLength(text)) {
      ftruncateSync(this.fd, good);
      fdatasyncSync(this.fd);
    }
  }

  private apply(e: StoreEvent): void {
    this.rev = e.rev;
    if (e.op === 'put') this.data.set(e.key, e.value);
    else this.data.delete(e.key);
  }

  /** The revision of the last acknowledged write. */
  get revision(): number {
    return this.rev;
  }

  get(key: string): unknown {
    return this.data.get(key);
  }

  /** Entries whose key starts with `prefix`, in key order. */
  list(prefix = ''): Array<[string, unknown]> {
    return [...this.data.entries()].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Stores `value` under `key`; resolves with the revision once it is on disk. */
  put(key: string, value: unknown): Promise<number> {
    return this.write({ rev: 0, op: 'put', key, value });
  }

  /** Removes `key`; resolves with the revision once it is on disk. */
  delete(key: string): Promise<number> {
    return this.write({ rev: 0, op: 'delete', key });
  }

  /** Calls `fn` for every acknowledged change; returns the unsubscribe function. */
  watch(fn: (e: StoreEvent) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  private write(e: StoreEvent): Promise<number> {
    if (this.fd === -1) return Promise.reject(new Error('store is closed'));
    // Revisions are assigned in call order; the in-memory state changes only once durable.
    e.rev = this.rev + this.pending.length + 1;
    const line = `${JSON.stringify({ ...e, sum: checksum(e) })}\n`;
    return new Promise((resolve, reject) => {
      this.pending.push({ line, event: e, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Writes and syncs every pending record in one go, then acknowledges them. */
  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    try {
      writeSync(this.fd, batch.map((b) => b.line).join(''));
      fdatasyncSync(this.fd);
    } catch (err) {
      this.flushing = false;
      for (const b of batch) b.reject(err as Error);
      return;
    }
    for (const b of batch) {
      this.apply(b.event);
      this.records++;
      for (const w of this.watchers) w(b.event);
      b.resolve(b.event.rev);
    }
    if (this.records >= this.compactAfter) this.compact();
    if (this.pending.length > 0) setImmediate(() => this.flush());
    else this.flushing = false;
  }

  /** Writes the whole state as a snapshot and starts an empty log. */
  private compact(): void {
    const tmp = `${this.snapshotPath}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    writeSync(fd, JSON.stringify({ rev: this.rev, data: Object.fromEntries(this.data) }));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.snapshotPath);
    const dirFd = openSync(this.dir, 'r');
    fsyncSync(dirFd);
    closeSync(dirFd);
    // The snapshot holds every record now; the log can start over.
    ftruncateSync(this.fd, 0);
    fdatasyncSync(this.fd);
    this.records = 0;
  }

  close(): void {
    if (this.fd !== -1) closeSync(this.fd);
    this.fd = -1;
  }
}
