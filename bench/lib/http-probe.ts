/**
 * Readiness probing: poll until an HTTP request succeeds, bounded in time.
 */
import http from 'node:http';
import type { Launched } from './processes.js';

/** One GET with a fresh connection; resolves with the status code, rejects on any error. */
export async function httpGet(port: number, path: string, hostHeader: string, timeoutMs = 1000): Promise<number> {
  return (await httpGetText(port, path, hostHeader, timeoutMs)).status;
}

/** One GET with a fresh connection; resolves with status and body (first 64 KiB). */
export function httpGetText(port: number, path: string, hostHeader: string, timeoutMs = 1000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path, agent: false, headers: { host: hostHeader }, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < 65536) body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export interface WaitOptions {
  port: number;
  path?: string;
  hostHeader?: string;
  timeoutMs?: number;
  /** Give up early, with its output, if this process exits. */
  process?: Launched;
}

/** The upstream's answer: a 200 with any other body means a proxy answered by itself. */
export const UPSTREAM_BODY = 'hello world\n';

/** Poll until GET returns 200 with the upstream's body; throws with the last error (and the
 *  process's output) otherwise. */
export async function waitUntilServing(opts: WaitOptions): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last = 'no attempt';
  while (Date.now() < deadline) {
    if (opts.process?.hasExited()) {
      const code = await opts.process.exited;
      throw new Error(`${opts.process.name} exited (${code}) before serving: ${oneLine(opts.process.outputTail())}`);
    }
    try {
      const { status, body } = await httpGetText(opts.port, opts.path ?? '/', opts.hostHeader ?? 'upstream');
      if (status === 200 && body === UPSTREAM_BODY) return;
      last = `HTTP ${status} ${JSON.stringify(body.slice(0, 80))}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const out = opts.process ? `; output: ${oneLine(opts.process.outputTail())}` : '';
  throw new Error(`not serving on port ${opts.port} after ${(opts.timeoutMs ?? 10_000) / 1000} s (${last})${out}`);
}

/** The last ~160 characters of some output, on one line, for a table cell. */
export function oneLine(text: string, max = 160): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `…${flat.slice(-max)}` : flat || '(no output)';
}

/** Waits until `proc` serves on `port`, stopping it if it never does; the running row's handle. */
export async function servedBy(proc: Launched, port: number): Promise<{ port: number; pids: number[]; stop(): Promise<void> }> {
  try {
    await waitUntilServing({ port, process: proc });
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { port, pids: [proc.pid], stop: () => proc.stop() };
}
