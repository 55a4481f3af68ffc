/**
 * Simulated proxies for the control-plane benchmark (`bench/control-plane.ts` forks a few of these).
 *
 * Each holds many config streams, speaks the real stream protocol (hello, ACK each update, answer
 * pings) and applies nothing: it ACKs an update as soon as its line is complete, so what is measured
 * is the control plane, not a proxy. It reads only the head of each line (type and version), so a
 * process can carry hundreds of streams.
 *
 * Messages from the parent: { start: { url, namespace, workloads[] } }, { mark: string }, { report: true },
 * { stop: true }. To the parent: { connected, synced, failed, bytes }, { seen: { workload: receivedAtMs } }.
 */
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';

const PROTOCOL = 'weft-config/1';
const TYPES = ['clusters', 'endpoints', 'workload', 'routes'];
const HEAD = /^\{"t":"(\w+)"(?:,"type":"(\w+)","version":"([^"]+)")?/;
const CONNECT_CONCURRENCY = 25;

interface Stream {
  workload: string;
  socket: Duplex | null;
  chunks: Buffer[];
  got: Set<string>;
  /** When a line holding the current mark arrived (wall clock, ms). */
  seenAt: number | null;
}

const now = (): number => performance.timeOrigin + performance.now();

let mark: Buffer | null = null;
let failed = 0;
let bytes = 0;
const streams: Stream[] = [];

function send(msg: unknown): void {
  process.send?.(msg);
}

function onLine(s: Stream, line: Buffer): void {
  const m = HEAD.exec(line.subarray(0, 160).toString('latin1'));
  if (m === null) return;
  if (m[1] === 'ping') {
    s.socket?.write('{"t":"heartbeat"}\n');
    return;
  }
  if (m[1] !== 'update' || m[2] === undefined) return;
  s.socket?.write(`{"t":"ack","type":"${m[2]}","version":"${m[3]}"}\n`);
  s.got.add(m[2]);
  if (mark !== null && s.seenAt === null && line.includes(mark)) s.seenAt = now();
}

function onData(s: Stream, chunk: Buffer): void {
  bytes += chunk.length;
  let start = 0;
  let nl: number;
  while ((nl = chunk.indexOf(10, start)) !== -1) {
    const piece = chunk.subarray(start, nl);
    const line = s.chunks.length === 0 ? piece : Buffer.concat([...s.chunks, piece]);
    s.chunks = [];
    onLine(s, line);
    start = nl + 1;
  }
  if (start < chunk.length) s.chunks.push(chunk.subarray(start));
}

function open(url: string, namespace: string, s: Stream): Promise<void> {
  return new Promise((resolve) => {
    const req = request(new URL('/api/v1/stream', url), { agent: false, headers: { connection: 'Upgrade', upgrade: PROTOCOL } });
    req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
      s.socket = socket;
      socket.setNoDelay(true);
      socket.on('data', (c: Buffer) => onData(s, c));
      socket.on('error', () => {});
      socket.on('close', () => {
        if (s.socket === socket) s.socket = null;
      });
      socket.write(JSON.stringify({ t: 'hello', workload: s.workload, namespace, register: null, have: {}, haveEndpoints: {} }) + '\n');
      if (head.length > 0) onData(s, head);
      resolve();
    });
    req.on('response', (res) => {
      res.resume();
      failed++;
      resolve();
    });
    req.on('error', () => {
      failed++;
      resolve();
    });
    req.end();
  });
}

async function start(url: string, namespace: string, workloads: string[]): Promise<void> {
  for (const w of workloads) streams.push({ workload: w, socket: null, chunks: [], got: new Set(), seenAt: null });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < streams.length) await open(url, namespace, streams[next++]!);
  };
  await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
}

function status(): unknown {
  let connected = 0;
  let synced = 0;
  for (const s of streams) {
    if (s.socket !== null) connected++;
    if (TYPES.every((t) => s.got.has(t))) synced++;
  }
  return { connected, synced, failed, bytes };
}

setInterval(() => send(status()), 100).unref();

process.on('message', (msg: { start?: { url: string; namespace: string; workloads: string[] }; mark?: string; report?: boolean; stop?: boolean }) => {
  if (msg.start !== undefined) void start(msg.start.url, msg.start.namespace, msg.start.workloads);
  if (msg.mark !== undefined) {
    mark = Buffer.from(msg.mark);
    for (const s of streams) s.seenAt = null;
  }
  if (msg.report === true) send({ seen: Object.fromEntries(streams.map((s) => [s.workload, s.seenAt])) });
  if (msg.stop === true) {
    for (const s of streams) s.socket?.destroy();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
