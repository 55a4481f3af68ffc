/**
 * Access logs: one JSON line per exchange, with Envoy's field names where Envoy has one, to stdout
 * or a file. Lines are gathered and written once per turn of the event loop through an fs stream
 * (its writes run on libuv's thread pool, so a slow disk or a full stdout pipe never blocks the
 * loop); past MAX_PENDING_BYTES not yet written, lines are dropped and counted.
 */
import { createWriteStream, type WriteStream } from 'node:fs';

/** Bytes accepted but not yet written past which new lines are dropped. */
const MAX_PENDING_BYTES = 4 << 20;

/** Envoy's `%RESPONSE_FLAGS%` for the mesh errors that have one; `weft_error` carries the exact code. */
export const RESPONSE_FLAGS: Readonly<Record<string, string>> = {
  NO_ROUTE: 'NR',
  NO_HEALTHY_UPSTREAM: 'UH',
  UPSTREAM_CONNECT_FAILURE: 'UF',
  UPSTREAM_TLS_FAILURE: 'UF',
  UPSTREAM_TIMEOUT: 'UT',
  STREAM_IDLE_TIMEOUT: 'SI',
  UPSTREAM_RESET: 'UR',
  UPSTREAM_PROTOCOL_ERROR: 'UPE',
  CIRCUIT_OPEN: 'UO',
  RATE_LIMITED: 'RL',
  DENIED: 'RBAC',
  FAULT_INJECTED: 'FI',
  NO_CONFIGURATION: 'NC',
  INVALID_BACKEND: 'NC',
  REQUEST_TIMEOUT: 'DT',
};

/** One exchange as logged. Field order is the line's order. */
export interface AccessLogEntry {
  start_time: string;
  direction: 'inbound' | 'outbound';
  method: string;
  path: string;
  protocol: string;
  response_code: number;
  response_flags: string;
  weft_error: string | null;
  grpc_status: string | null;
  bytes_received: number;
  bytes_sent: number;
  /** Milliseconds, head received to response complete. */
  duration: number;
  upstream_host: string | null;
  upstream_cluster: string | null;
  route_name: string | null;
  authority: string;
  request_id: string;
  trace_id: string | null;
  downstream_remote_address: string;
  downstream_peer_identity: string | null;
  user_agent: string | null;
  x_forwarded_for: string | null;
}

/** Where lines go: stdout (path null) or a file opened for appending. */
export class AccessLogWriter {
  private path: string | null | undefined = undefined;
  private stream: WriteStream | null = null;
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled = false;

  constructor(private readonly dropped: () => void) {}

  /** Points the log at `path` (null: stdout); reopens only when it changed. */
  open(path: string | null): void {
    if (path === this.path && this.stream !== null) return;
    this.flush();
    this.closeStream();
    this.path = path;
    const s = path === null ? createWriteStream('', { fd: 1, autoClose: false }) : createWriteStream(path, { flags: 'a' });
    // A log that cannot be written (a bad path, stdout closed) must not take the proxy down.
    s.on('error', () => {
      if (this.stream === s) this.stream = null;
    });
    this.stream = s;
  }

  /** Queues one line (without its newline); dropped and counted when too much is waiting. */
  write(line: string): void {
    const s = this.stream;
    if (s === null || this.pendingBytes + s.writableLength > MAX_PENDING_BYTES) {
      this.dropped();
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length + 1;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushSoon);
    }
  }

  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /** Hands what is queued to the stream, as one write. */
  flush(): void {
    if (this.pending.length === 0) return;
    const text = `${this.pending.join('\n')}\n`;
    this.pending = [];
    this.pendingBytes = 0;
    this.stream?.write(text);
  }

  /** Writes what is queued and closes the file (stdout stays open). */
  async close(): Promise<void> {
    this.flush();
    const s = this.stream;
    this.stream = null;
    this.path = undefined;
    if (s !== null) await new Promise<void>((r) => s.end(r));
  }

  private closeStream(): void {
    const s = this.stream;
    this.stream = null;
    s?.end();
  }
}
