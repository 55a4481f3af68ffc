/**
 * A row of the benchmark table: something that listens on a port and forwards HTTP/1.1 requests to
 * the upstream. Add a row (an HTTP/2 or gRPC proxy, another peer) by writing one file with a
 * `BenchRow` and listing it in rows/index.ts.
 */

/** What a row gets to start its proxy. */
export interface RowContext {
  /** Port of the upstream server on 127.0.0.1. */
  upstreamPort: number;
  /** A fresh directory for this row's config, pid and log files; removed after the run. */
  tmpDir: string;
  /** Core to pin the proxy to (`taskset -c`), or null when pinning is unavailable. */
  proxyCore: number | null;
  /** Repository root (where package.json lives); compiled files are under dist/. */
  repoRoot: string;
}

/** A started row: where to send load, which processes to measure, how to stop it. */
export interface RunningRow {
  port: number;
  /** Root pids of the proxy; CPU and RSS are summed over them and all their descendants. */
  pids: number[];
  stop(): Promise<void>;
  /** Remarks worth putting in the results (e.g. a readiness endpoint that did not answer). */
  notes?: string[];
  /**
   * Called after the measurements, before `stop`: more remarks (e.g. a helper process's own CPU),
   * and a failure reason when the row turned out not to measure what it claims (the row is then
   * reported as failed).
   */
  finalCheck?(): Promise<{ notes: string[]; failure?: string }>;
}

/** One row of the table. `start` throws (with a readable message) when the row cannot run. */
export interface BenchRow {
  name: string;
  /** One line for the results file: what is measured. */
  description: string;
  /** Commands that must be installed for this row (installed with apt-get when missing). */
  requires: string[];
  start(ctx: RowContext): Promise<RunningRow>;
}
