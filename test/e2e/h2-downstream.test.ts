// HTTP/2 clients of a real `weft proxy` outbound listener (the engine WEFT_HTTP2_ENGINE picks, Weft's
// own by default): many streams on one connection to an HTTP/1.1 upstream, and streams the client
// resets in the middle of their response, which must reach the upstream as an abort (its request
// closes before the response was finished) while the other streams complete.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, constants } from 'node:http2';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eventually, freePort, meshYaml, proxyMetrics, startProxy, tempFile } from './harness.js';

test('HTTP/2 through the outbound listener: streams reset mid-response abort upstream, the rest complete', async () => {
  const STREAMS = 40;
  const outcomes = { finished: 0, aborted: 0 };
  // The upstream streams each answer in two halves, 300 ms apart: a reset between them is an abort.
  const upstream = createServer((req, res) => {
    let ended = false;
    res.on('close', () => {
      if (!ended) outcomes.aborted++;
    });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write(`first half of ${req.url}\n`);
    setTimeout(() => {
      if (res.destroyed) return;
      ended = true;
      outcomes.finished++;
      res.end('second half\n');
    }, 300);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const port = (upstream.address() as AddressInfo).port;
  const proxy = await startProxy(tempFile('mesh.yaml', meshYaml({ v1: port, v2: port, tcp: await freePort() })), 'client-1');
  const session = connect(`http://127.0.0.1:${proxy.outbound}`);
  session.on('error', () => {});
  try {
    const results = await Promise.all(
      Array.from({ length: STREAMS }, (_, i) =>
        new Promise<{ status: number; body: string; rst: number | undefined }>((resolve) => {
          const s = session.request({ ':path': `/s${i}`, ':authority': 'echo' });
          let status = 0;
          let body = '';
          s.on('response', (h) => (status = Number(h[':status'])));
          s.on('data', (c: Buffer) => {
            body += c.toString();
            // Every other stream is reset once its first half arrived.
            if (i % 2 === 1 && !s.closed) s.close(constants.NGHTTP2_CANCEL);
          });
          s.on('error', () => {});
          s.on('close', () => resolve({ status, body, rst: s.rstCode }));
        }),
      ),
    );
    const complete = results.filter((r, i) => i % 2 === 0 && r.status === 200 && r.body === `first half of /s${i}\nsecond half\n`).length;
    assert.equal(complete, STREAMS / 2, 'the streams not reset completed whole');
    await eventually(() => outcomes.aborted + outcomes.finished === STREAMS, 5000, 'the upstream saw every request end');
    assert.equal(outcomes.aborted, STREAMS / 2, 'each reset reached the upstream as an abort');
    assert.equal(outcomes.finished, STREAMS / 2);
    const metrics = await proxyMetrics(proxy);
    const counted = [...metrics.matchAll(/^weft_requests_total\{direction="outbound",[^}]*destination_service="echo\.default",[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(counted, STREAMS, 'every stream was reported once');
    console.log(`# ${STREAMS} streams on one HTTP/2 connection (engine ${process.env.WEFT_HTTP2_ENGINE ?? 'weft'}): ${complete} complete, ${outcomes.aborted} resets reached the upstream as aborts, ${counted} exchanges counted`);
  } finally {
    session.destroy();
    await proxy.stop();
    upstream.closeAllConnections();
    upstream.close();
  }
});
