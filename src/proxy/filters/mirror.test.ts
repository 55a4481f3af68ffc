import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MeshError } from '../../core/errors.js';
import { Body } from '../body.js';
import { newRequestContext, type Handler, type ProxyRequest, type ProxyResponse, type RequestContext } from '../message.js';
import { mirrorLayer, shadowAuthority, type MirrorResult } from './mirror.js';

function ctx(): RequestContext {
  return newRequestContext({ direction: 'outbound', requestId: 'r', clientAddress: '127.0.0.1', start: 0, route: 'rt', destination: 'echo.default' });
}
const get = (authority = 'echo:80'): ProxyRequest => ({ method: 'GET', path: '/a?b=1', authority, headers: ['x-request-id', 'r1'], body: null });

/** Reads a body whole (null for none). */
function read(body: Body | null): Promise<{ text: string; trailers: string[] | null } | null> {
  if (body === null) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    body.pipe({ data: (c) => (parts.push(c), true), end: (trailers) => resolve({ text: Buffer.concat(parts).toString(), trailers }), error: reject });
  });
}

/** The real backend: answers 200 after reading the request body. */
const primary: Handler = async (req) => {
  const got = await read(req.body);
  return { status: 200, headers: ['x-from', 'primary'], body: Body.of(Buffer.from(`primary ${got?.text ?? ''}`)) };
};

/** A mirror backend that records what it got, answering as `answer` says. */
function recorder(answer: (req: ProxyRequest) => Promise<ProxyResponse> = async () => ({ status: 503, headers: [], body: Body.of(Buffer.from('shadow')) })) {
  const seen: Array<{ req: ProxyRequest; body: string | null; trailers: string[] | null }> = [];
  const handler: Handler = async (req) => {
    const got = await read(req.body);
    seen.push({ req, body: got?.text ?? null, trailers: got?.trailers ?? null });
    return answer(req);
  };
  return { handler, seen };
}

function build(percent: number, mirror: Handler, opts: { random?: () => number; maxInFlight?: number; maxBodyBytes?: number; timeoutMs?: number } = {}) {
  const counts: Partial<Record<MirrorResult, number>> = {};
  const layer = mirrorLayer(percent, mirror, { route: 'rt', report: (_r, result) => void (counts[result] = (counts[result] ?? 0) + 1), timeoutMs: opts.timeoutMs ?? 1000, ...opts });
  return { handler: layer(primary), counts };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('mirror layer', () => {
  test('shadow authority: -shadow after the host, before any port', () => {
    assert.equal(shadowAuthority('echo'), 'echo-shadow');
    assert.equal(shadowAuthority('echo.default:8080'), 'echo.default-shadow:8080');
    assert.equal(shadowAuthority('[::1]:80'), '[::1]-shadow:80');
    assert.equal(shadowAuthority('[::1]'), '[::1]-shadow');
  });

  test('a copy goes to the mirror with the -shadow host; the caller gets the real answer, never the mirror\'s', async () => {
    const m = recorder();
    const { handler, counts } = build(100, m.handler);
    const res = await handler(get(), ctx());
    assert.equal(res.status, 200);
    assert.equal((await read(res.body))!.text, 'primary ');
    await tick();
    assert.equal(m.seen.length, 1);
    assert.deepEqual([m.seen[0]!.req.method, m.seen[0]!.req.path, m.seen[0]!.req.authority, m.seen[0]!.req.headers], ['GET', '/a?b=1', 'echo-shadow:80', ['x-request-id', 'r1']]);
    assert.deepEqual(counts, { sent: 1 });
  });

  test('the request body (and trailers) is copied while it streams to the real backend, and sent once complete', async () => {
    const m = recorder();
    const { handler, counts } = build(100, m.handler);
    const body = new Body(-1);
    const pending = handler({ ...get(), method: 'POST', body }, ctx());
    body.push(Buffer.from('hello '));
    await tick();
    assert.equal(m.seen.length, 0, 'not before the body is complete');
    body.push(Buffer.from('world'));
    body.end(['grpc-status', '0']);
    const res = await pending;
    assert.equal((await read(res.body))!.text, 'primary hello world');
    await tick();
    assert.deepEqual([m.seen[0]!.body, m.seen[0]!.trailers, m.seen[0]!.req.body!.length], ['hello world', ['grpc-status', '0'], -1]);
    assert.deepEqual(counts, { sent: 1 });
  });

  test('a body over the bound is not mirrored (known length at once, chunked once it grows past it), and counted', async () => {
    const m = recorder();
    const { handler, counts } = build(100, m.handler, { maxBodyBytes: 8 });
    await handler({ ...get(), method: 'PUT', body: Body.of(Buffer.from('123456789')) }, ctx());
    const chunked = new Body(-1);
    const pending = handler({ ...get(), method: 'PUT', body: chunked }, ctx());
    chunked.push(Buffer.from('12345'));
    chunked.push(Buffer.from('67890'));
    chunked.end(null);
    assert.equal((await read((await pending).body))!.text, 'primary 1234567890', 'the real backend still gets all of it');
    await handler({ ...get(), method: 'PUT', body: Body.of(Buffer.from('12345678')) }, ctx());
    await tick();
    assert.deepEqual(m.seen.map((s) => s.body), ['12345678']);
    assert.deepEqual(counts, { too_large: 2, sent: 1 });
  });

  test('the configured share of requests is mirrored', async () => {
    const m = recorder(async () => ({ status: 200, headers: [], body: null }));
    let i = 0;
    const { handler, counts } = build(30, m.handler, { random: () => (i++ % 10) / 10 });
    for (let k = 0; k < 100; k++) await handler(get(), ctx());
    await tick();
    assert.equal(m.seen.length, 30);
    assert.deepEqual(counts, { sent: 30 });
    const none = build(0, m.handler);
    await none.handler(get(), ctx());
    assert.deepEqual(none.counts, {});
  });

  test('a mirror that hangs, fails or throws changes nothing for the caller; in-flight mirrors are bounded and time out', async () => {
    const hang: Handler = (_req, c) => new Promise((_resolve, reject) => c.abortHandlers.push(reject));
    const { handler, counts } = build(100, hang, { maxInFlight: 2, timeoutMs: 50 });
    const t0 = performance.now();
    for (let k = 0; k < 5; k++) assert.equal((await handler(get(), ctx())).status, 200);
    assert.ok(performance.now() - t0 < 40, 'the caller never waits for the mirror');
    assert.deepEqual(counts, { overflow: 3 });
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(counts, { overflow: 3, failed: 2 }, 'the hung mirrors timed out and freed their slots');
    await handler(get(), ctx());
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(counts, { overflow: 3, failed: 3 });

    const failing = build(100, () => Promise.reject(new MeshError('UPSTREAM_CONNECT_FAILURE', 'refused')));
    const throwing = build(100, () => {
      throw new Error('bug');
    });
    assert.equal((await failing.handler(get(), ctx())).status, 200);
    assert.equal((await throwing.handler(get(), ctx())).status, 200);
    await tick();
    assert.deepEqual([failing.counts, throwing.counts], [{ failed: 1 }, { failed: 1 }]);
  });

  test('a request body the real backend gives up on is not mirrored; upgrades are never mirrored', async () => {
    const m = recorder();
    const refuse: Handler = async (req) => {
      req.body?.abort(new Error('not wanted'));
      return { status: 413, headers: [], body: null };
    };
    const counts: Partial<Record<MirrorResult, number>> = {};
    const handler = mirrorLayer(100, m.handler, { route: 'rt', report: (_r, r) => void (counts[r] = (counts[r] ?? 0) + 1), timeoutMs: 1000 })(refuse);
    const body = new Body(-1);
    body.push(Buffer.from('part'));
    assert.equal((await handler({ ...get(), method: 'POST', body }, ctx())).status, 413);
    await handler({ ...get(), upgrade: 'websocket' }, ctx());
    await tick();
    assert.equal(m.seen.length, 0);
    assert.deepEqual(counts, { failed: 1 });
  });
});
