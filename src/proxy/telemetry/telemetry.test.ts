import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ProxySnapshot } from '../../model/snapshot.js';
import { newRequestContext, type Handler, type ProxyRequest, type RequestContext } from '../message.js';
import { encodeExport, int, str, unixNanos } from './otlp.js';
import { Telemetry } from './telemetry.js';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const S = '00f067aa0ba902b7';

const ctx = (direction: 'inbound' | 'outbound' = 'outbound'): RequestContext => newRequestContext({ direction, requestId: 'r1', clientAddress: '127.0.0.1', start: 0, route: 'rt', destination: 'echo.default' });
const req = (headers: string[]): ProxyRequest => ({ method: 'GET', path: '/a?b=1', authority: 'echo', headers, body: null });

function snapshot(telemetry: ProxySnapshot['telemetry']): ProxySnapshot {
  return {
    version: 'v', workload: { name: 'w', namespace: 'default', address: '127.0.0.1', serviceAccount: 'default', identity: 'spiffe://cluster.local/ns/default/sa/default', labels: { app: 'web' }, ports: {} },
    inbound: { appAddress: '127.0.0.1', ports: {}, appProtocols: {}, defaultPort: null, mtlsMode: 'STRICT', authorization: { policies: [] } },
    virtualHosts: [], tcpServices: [], clusters: [],
    ...(telemetry === undefined ? {} : { telemetry }),
  };
}

/** Runs one exchange through telemetry; returns the headers the next hop got. */
async function through(tel: Telemetry, headers: string[], c = ctx()): Promise<string[]> {
  let seen: string[] = [];
  const next: Handler = async (r) => {
    seen = [...r.headers];
    return { status: 200, headers: [], body: null };
  };
  await tel.handle(req(headers), c, next);
  return seen;
}
const get = (h: string[], n: string): string | undefined => h[h.indexOf(n) + 1] !== undefined && h.includes(n) ? h[h.indexOf(n) + 1] : undefined;

const noReports = { spans: () => {}, accessLogDropped: () => {} };

describe('propagation', () => {
  test('off: headers untouched, nothing set on the context', async () => {
    const tel = new Telemetry(noReports);
    tel.apply(snapshot(undefined));
    const c = ctx();
    const h = ['traceparent', 'garbage', 'b3', 'x'];
    assert.deepEqual(await through(tel, h, c), h);
    assert.equal(c.telemetry, undefined);
  });

  test('a W3C caller: same trace, our span as the next parent, tracestate kept', async () => {
    const tel = new Telemetry(noReports);
    tel.apply(snapshot({ tracing: { samplingPercent: 0, otlpEndpoint: null }, accessLog: null }));
    const c = ctx();
    const out = await through(tel, ['traceparent', `00-${T}-${S}-01`, 'tracestate', 'congo=t61rcWkgMzE'], c);
    const tp = get(out, 'traceparent')!;
    assert.match(tp, new RegExp(`^00-${T}-[0-9a-f]{16}-01$`));
    assert.notEqual(tp.slice(36, 52), S);
    assert.equal(tp.slice(36, 52), c.telemetry!.spanId);
    assert.equal(c.telemetry!.parentId, S);
    assert.equal(c.telemetry!.sampled, true, "the caller's sampled flag wins over sampling 0");
    assert.equal(get(out, 'tracestate'), 'congo=t61rcWkgMzE');
    assert.equal(get(out, 'b3'), undefined, 'no B3 added for a W3C caller');
  });

  test('an unsampled caller stays unsampled at sampling 100', async () => {
    const tel = new Telemetry(noReports);
    tel.apply(snapshot({ tracing: { samplingPercent: 100, otlpEndpoint: null }, accessLog: null }));
    const out = await through(tel, ['traceparent', `00-${T}-${S}-00`]);
    assert.match(get(out, 'traceparent')!, new RegExp(`^00-${T}-[0-9a-f]{16}-00$`));
  });

  test('an invalid traceparent starts a new trace and drops its tracestate', async () => {
    const tel = new Telemetry(noReports);
    tel.apply(snapshot({ tracing: { samplingPercent: 100, otlpEndpoint: null }, accessLog: null }));
    const c = ctx();
    const out = await through(tel, ['traceparent', `00-${T.toUpperCase()}-${S}-01`, 'tracestate', 'a=b'], c);
    assert.equal(out.filter((x) => x === 'traceparent').length, 1);
    assert.notEqual(c.telemetry!.traceId, T.toLowerCase());
    assert.equal(c.telemetry!.parentId, '');
    assert.equal(get(out, 'tracestate'), undefined);
    // Two traceparent fields are as good as none.
    const c2 = ctx();
    await through(tel, ['traceparent', `00-${T}-${S}-01`, 'traceparent', `00-${T}-${S}-01`], c2);
    assert.notEqual(c2.telemetry!.traceId, T);
  });

  test('B3 single and multi callers: trace continues, B3 goes on in the same form beside traceparent', async () => {
    const tel = new Telemetry(noReports);
    tel.apply(snapshot({ tracing: { samplingPercent: 0, otlpEndpoint: null }, accessLog: null }));
    const c = ctx();
    const out = await through(tel, ['b3', `${T}-${S}-1`], c);
    const span = c.telemetry!.spanId;
    assert.equal(get(out, 'traceparent'), `00-${T}-${span}-01`);
    assert.equal(get(out, 'b3'), `${T}-${span}-1-${S}`);
    const c2 = ctx();
    const multi = await through(tel, ['x-b3-traceid', T, 'x-b3-spanid', S, 'x-b3-sampled', '1'], c2);
    const span2 = c2.telemetry!.spanId;
    assert.equal(get(multi, 'traceparent'), `00-${T}-${span2}-01`);
    assert.equal(get(multi, 'x-b3-traceid'), T);
    assert.equal(get(multi, 'x-b3-spanid'), span2);
    assert.equal(get(multi, 'x-b3-parentspanid'), S);
    assert.equal(get(multi, 'x-b3-sampled'), '1');
    assert.equal(get(multi, 'b3'), undefined);
  });

  test('a root trace is sampled by percent', async () => {
    const tel = new Telemetry(noReports);
    tel.apply(snapshot({ tracing: { samplingPercent: 30, otlpEndpoint: null }, accessLog: null }));
    let sampled = 0;
    const n = 4000;
    for (let i = 0; i < n; i++) {
      const c = ctx();
      await through(tel, [], c);
      if (c.telemetry!.sampled) sampled++;
    }
    console.log(`root sampling at 30%: ${sampled}/${n} sampled`);
    assert.ok(Math.abs(sampled / n - 0.3) < 0.04, `${sampled}/${n}`);
  });
});

describe('OTLP JSON', () => {
  test('encoding: hex ids, nanoseconds as strings, int attributes as strings, kinds as numbers', () => {
    assert.equal(unixNanos(1700000000123.5), '1700000000123500000');
    assert.equal(unixNanos(1700000000123), '1700000000123000000');
    assert.equal(unixNanos(0), '0');
    const body = JSON.parse(encodeExport({ attributes: [str('service.name', 'web')] }, [
      { traceId: T, spanId: S, name: 'GET echo.default', kind: 3, startTimeUnixNano: '1', endTimeUnixNano: '2', attributes: [int('http.response.status_code', 200)], status: { code: 0 } },
    ]));
    assert.deepEqual(body, {
      resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'web' } }] },
        scopeSpans: [{ scope: { name: 'weft', version: '0.1.0' }, spans: [{ traceId: T, spanId: S, name: 'GET echo.default', kind: 3, startTimeUnixNano: '1', endTimeUnixNano: '2', attributes: [{ key: 'http.response.status_code', value: { intValue: '200' } }], status: { code: 0 } }] }],
      }],
    });
  });
});
