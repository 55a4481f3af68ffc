// The HTTP/2 listener's head limit through a real `weft proxy`: a request head over 60 KiB gets the
// same coded 431 as on HTTP/1.1 (`weft-error: HEADERS_TOO_LARGE`), is counted in
// weft_requests_total like it, and the HTTP/2 connection goes on serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { freePort, meshYaml, proxyMetrics, rawExchange, startEcho, startProxy, tempFile } from './harness.js';

/** One request on `session`: its head and body once the stream closes. */
function h2Get(session: ClientHttp2Session, headers: Record<string, string>): Promise<{ head: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':path': '/', ':authority': 'echo', ...headers });
    let head: IncomingHttpHeaders = {};
    let body = '';
    const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
    s.on('response', (h) => (head = h));
    s.on('data', (c: Buffer) => (body += c.toString()));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ head, body });
    });
  });
}

/** The weft_requests_total count of the outbound 431 HEADERS_TOO_LARGE series. */
function tooLargeCount(metrics: string): number {
  return [...metrics.matchAll(/^weft_requests_total\{direction="outbound",[^}]*response_code="431",[^}]*error_code="HEADERS_TOO_LARGE"[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

test('a request head over 60 KiB: the same coded, counted 431 on HTTP/1.1 and HTTP/2', async () => {
  const v1 = await startEcho('v1');
  const v2 = await startEcho('v2');
  const proxy = await startProxy(tempFile('mesh.yaml', meshYaml({ v1: v1.port, v2: v2.port, tcp: await freePort() })), 'client-1');
  const session = connect(`http://127.0.0.1:${proxy.outbound}`);
  session.on('error', () => {});
  try {
    const big = 'a'.repeat(61 * 1024);
    const h1 = await rawExchange(proxy.outbound, `GET / HTTP/1.1\r\nHost: echo\r\nX-Big: ${big}\r\n\r\n`);
    assert.match(h1.text, /^HTTP\/1\.1 431 /);
    assert.match(h1.text, /weft-error: HEADERS_TOO_LARGE\r\n/);
    const afterH1 = tooLargeCount(await proxyMetrics(proxy));
    assert.equal(afterH1, 1, 'the HTTP/1.1 431 is counted');

    const h2 = await h2Get(session, { 'x-big': big });
    assert.equal(h2.head[':status'], 431);
    assert.equal(h2.head['weft-error'], 'HEADERS_TOO_LARGE');
    assert.equal((JSON.parse(h2.body) as { code: string }).code, 'HEADERS_TOO_LARGE');
    const ok = await h2Get(session, { 'x-small': 'b' });
    assert.equal(ok.head[':status'], 200, 'the HTTP/2 connection goes on');
    const afterH2 = tooLargeCount(await proxyMetrics(proxy));
    assert.equal(afterH2, 2, 'the HTTP/2 431 is counted the same way');
    console.log(`# 61 KiB head: HTTP/1.1 ${h1.text.slice(9, 12)} ${/weft-error: (\w+)/.exec(h1.text)?.[1]}, HTTP/2 ${String(h2.head[':status'])} ${String(h2.head['weft-error'])}; weft_requests_total{431,HEADERS_TOO_LARGE} = ${afterH2}; next HTTP/2 stream ${String(ok.head[':status'])}`);
  } finally {
    session.destroy();
    await proxy.stop();
    await v1.close();
    await v2.close();
  }
});
