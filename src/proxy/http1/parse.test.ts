import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedDecoder, ParseError, parseRequestHead, parseResponseHead } from './parse.js';

const req = (lines: string[]): string => lines.join('\r\n');

test('parses a request line and fields, lowercasing names', () => {
  const h = parseRequestHead(req(['GET /a?b=1 HTTP/1.1', 'Host: echo', 'X-Thing:  v  ', 'Content-Length: 5']));
  assert.equal(h.method, 'GET');
  assert.equal(h.target, '/a?b=1');
  assert.equal(h.minor, 1);
  assert.equal(h.host, 'echo');
  assert.equal(h.contentLength, 5);
  assert.deepEqual(h.headers, ['host', 'echo', 'x-thing', 'v', 'content-length', '5']);
});

function refuses(lines: string[], code: string, pattern: RegExp): void {
  assert.throws(
    () => parseRequestHead(req(lines)),
    (e: unknown) => e instanceof ParseError && e.code === code && pattern.test(e.message),
  );
}

test('refuses smuggling vectors and malformed fields', () => {
  refuses(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 3', 'Transfer-Encoding: chunked'], 'BAD_REQUEST', /both Content-Length and Transfer-Encoding/);
  refuses(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 3', 'Content-Length: 4'], 'BAD_REQUEST', /conflicting/);
  refuses(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 3, 4'], 'BAD_REQUEST', /conflicting/);
  refuses(['POST / HTTP/1.1', 'Host: a', 'Content-Length: +3'], 'BAD_REQUEST', /invalid Content-Length/);
  refuses(['POST / HTTP/1.1', 'Host: a', 'X: a', ' folded'], 'BAD_REQUEST', /folding/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'X: a\nY: b'], 'BAD_REQUEST', /invalid byte in value of header "X"/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'X: a\rb'], 'BAD_REQUEST', /invalid byte/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'Bad Name: a'], 'BAD_REQUEST', /invalid header name/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'X : a'], 'BAD_REQUEST', /invalid header name/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], 'BAD_REQUEST', /more than one Transfer-Encoding/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'Transfer-Encoding: gzip, chunked'], 'NOT_IMPLEMENTED', /unsupported Transfer-Encoding/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'Host: b'], 'BAD_REQUEST', /more than one Host/);
  refuses(['GET / HTTP/1.1', 'X: a'], 'BAD_REQUEST', /missing Host/);
  refuses(['GET  / HTTP/1.1', 'Host: a'], 'BAD_REQUEST', /malformed request line/);
  refuses(['GET / HTTP/2.0', 'Host: a'], 'VERSION_NOT_SUPPORTED', /unsupported version/);
  refuses(['GET / HTTP/1.1', 'Host: a', 'Expect: 200-ok'], 'EXPECTATION_FAILED', /unsupported expectation/);
  refuses(['POST / HTTP/1.0', 'Transfer-Encoding: chunked'], 'BAD_REQUEST', /HTTP\/1.0/);
});

test('a header count over the limit is HEADERS_TOO_LARGE', () => {
  const lines = ['GET / HTTP/1.1', 'Host: a'];
  for (let i = 0; i < 100; i++) lines.push(`x-${i}: v`);
  refuses(lines, 'HEADERS_TOO_LARGE', /more than 100/);
});

test('parses status lines, with and without a reason', () => {
  const r = parseResponseHead(req(['HTTP/1.1 204 No Content', 'Connection: close']));
  assert.equal(r.status, 204);
  assert.deepEqual(r.connection, ['close']);
  assert.equal(parseResponseHead('HTTP/1.1 200').status, 200);
  assert.throws(() => parseResponseHead('HTTP/1.1 2000 OK'), /malformed status/);
  assert.throws(() => parseResponseHead(req(['HTTP/1.1 200 OK', 'Content-Length: 1', 'Content-Length: 2'])), (e: unknown) => e instanceof ParseError && e.code === 'UPSTREAM_PROTOCOL_ERROR');
});

function decode(parts: string[]): { data: string; trailers: string[] | null; end: number; part: number } {
  let data = '';
  let trailers: string[] | null = null;
  const d = new ChunkedDecoder({ data: (c) => (data += c.toString('latin1')), end: (t) => (trailers = t) });
  for (let i = 0; i < parts.length; i++) {
    const end = d.push(Buffer.from(parts[i]!, 'latin1'), 0);
    if (end !== -1) return { data, trailers, end, part: i };
  }
  return { data, trailers, end: -1, part: -1 };
}

test('decodes chunked bodies split anywhere, with extensions and trailers', () => {
  const whole = '5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 1\r\n\r\nNEXT';
  for (let cut = 1; cut < whole.length - 4; cut++) {
    const r = decode([whole.slice(0, cut), whole.slice(cut)]);
    assert.equal(r.data, 'hello world', `cut at ${cut}`);
    assert.deepEqual(r.trailers, ['x-sum', '1']);
    assert.equal(r.part, 1);
    assert.equal(whole.slice(cut).slice(r.end), 'NEXT', `cut at ${cut}`);
  }
  const plain = decode(['3\r\nabc\r\n0\r\n\r\n']);
  assert.equal(plain.trailers, null);
  assert.equal(plain.end, '3\r\nabc\r\n0\r\n\r\n'.length);
});

test('refuses bad chunk framing', () => {
  for (const bad of ['x\r\n', '\r\n', '5\nhello', '3\r\nabcX\r\n', '1234567890abc\r\n', '-1\r\n', '3 x\r\n']) {
    assert.throws(() => decode([bad]), ParseError, JSON.stringify(bad));
  }
});
