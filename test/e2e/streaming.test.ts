// Bodies stream through the proxy with backpressure: a slow reader holds the writer back instead
// of the proxy buffering the whole body, and large bodies arrive intact both ways.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { freePort, meshYaml, startProxy, tempFile } from './harness.js';

test('a 32 MiB upload and download arrive intact; a paused upstream holds the client back', async () => {
  const payload = randomBytes(32 * 1024 * 1024);
  const digest = createHash('sha256').update(payload).digest('hex');
  let pauseMs = 0;
  const upstream = createServer((req, res) => {
    if (req.url === '/download') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(payload);
      return;
    }
    const hash = createHash('sha256');
    req.pause();
    setTimeout(() => {
      req.on('data', (c: Buffer) => hash.update(c));
      req.on('end', () => res.end(hash.digest('hex')));
      req.resume();
    }, pauseMs);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const port = (upstream.address() as AddressInfo).port;
  const file = tempFile('mesh.yaml', meshYaml({ v1: port, v2: port, tcp: await freePort() }));
  const proxy = await startProxy(file, 'client-1');
  try {
    // Download: chunked from the upstream, streamed to the client.
    const down = await new Promise<string>((resolve, reject) => {
      request({ host: '127.0.0.1', port: proxy.outbound, path: '/download', headers: { host: 'echo' } }, (res) => {
        const h = createHash('sha256');
        res.on('data', (c: Buffer) => h.update(c));
        res.on('end', () => resolve(h.digest('hex')));
      }).on('error', reject).end();
    });
    assert.equal(down, digest);

    // Upload against an upstream that does not read for 1.5 s: count what the client gets to write.
    pauseMs = 1500;
    const s = connect(proxy.outbound, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write(`POST /upload HTTP/1.1\r\nHost: echo\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n`);
    let reply = '';
    s.on('data', (c: Buffer) => (reply += c.toString()));
    const closed = new Promise((r) => s.once('close', r));
    const t0 = Date.now();
    let offset = 0;
    let writtenDuringPause = -1;
    const slice = 64 * 1024;
    while (offset < payload.length) {
      const ok = s.write(payload.subarray(offset, offset + slice));
      offset += slice;
      if (!ok) await new Promise((r) => s.once('drain', r));
      if (writtenDuringPause === -1 && Date.now() - t0 > 1000) writtenDuringPause = offset;
    }
    if (writtenDuringPause === -1) writtenDuringPause = offset;
    await closed;
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.ok(reply.endsWith(digest), 'upload digest matches');
    // Kernel socket buffers on both hops hold a few MiB; without backpressure all 32 MiB would go.
    assert.ok(writtenDuringPause < 16 * 1024 * 1024, `client wrote ${writtenDuringPause} bytes while the upstream was paused`);
  } finally {
    await proxy.stop();
    upstream.closeAllConnections();
    upstream.close();
  }
});
