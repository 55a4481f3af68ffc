import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { SPAN_KIND_SERVER, STATUS_UNSET, type OtlpSpan } from './otlp.js';
import { SpanExporter, collectorTarget } from './span-exporter.js';

const span = (i: number): OtlpSpan => ({
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: (0x1000 + i).toString(16).padStart(16, '0'), name: 'GET echo', kind: SPAN_KIND_SERVER,
  startTimeUnixNano: '1', endTimeUnixNano: '2', attributes: [], status: { code: STATUS_UNSET },
});

/** An OTLP receiver on raw sockets: answers each post with `status`, counts connections and spans. */
async function receiver(status: () => number): Promise<{ url: string; connections: () => number; spans: () => number; close(): Promise<void> }> {
  let connections = 0;
  let spans = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buf = '';
    socket.on('data', (c: Buffer) => {
      buf += c.toString();
      const end = buf.indexOf('\r\n\r\n');
      const len = Number(/content-length: (\d+)/.exec(buf)?.[1] ?? -1);
      if (end === -1 || len < 0 || buf.length < end + 4 + len) return;
      assert.match(buf, /^POST \/v1\/traces HTTP\/1\.1\r\n/);
      assert.match(buf, /\r\ncontent-type: application\/json\r\n/);
      spans += (JSON.parse(buf.slice(end + 4, end + 4 + len)) as any).resourceSpans[0].scopeSpans[0].spans.length;
      buf = buf.slice(end + 4 + len);
      const s = status();
      socket.write(`HTTP/1.1 ${s} X\r\ncontent-length: 2\r\nkeep-alive: timeout=5\r\n\r\n{}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    connections: () => connections,
    spans: () => spans,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

test('batches go out on one keep-alive connection; a non-2xx answer or no receiver counts as failed', async () => {
  let answer = 200;
  const rx = await receiver(() => answer);
  const counts = new Map<string, number>();
  const exporter = new SpanExporter((target, result, n) => counts.set(`${target}/${result}`, (counts.get(`${target}/${result}`) ?? 0) + n));
  exporter.targets = [collectorTarget(rx.url)];
  try {
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 10; i++) exporter.add(span(i));
      exporter.flush();
      const want = (round + 1) * 10;
      for (let i = 0; i < 100 && (counts.get('otlp/exported') ?? 0) < want; i++) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(counts.get('otlp/exported'), 30);
    assert.equal(rx.spans(), 30);
    assert.equal(rx.connections(), 1, 'three posts, one connection');

    answer = 503;
    exporter.add(span(1));
    await exporter.close();
    assert.equal(counts.get('otlp/failed'), 1);
  } finally {
    await rx.close();
  }
  // Nobody listens any more: the post fails (counted), nothing throws.
  exporter.add(span(2));
  await exporter.close();
  assert.equal(counts.get('otlp/failed'), 2);
});
