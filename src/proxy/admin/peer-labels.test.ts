import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newRequestContext, type RequestContext } from '../message.js';
import { DESTINATION_SERVICE_HEADER, SOURCE_SERVICE_HEADER, takePeerLabels, tunnelSourceService } from './peer-labels.js';

function ctx(peerIdentity: string | null): RequestContext {
  return newRequestContext({ direction: 'inbound', requestId: 'r', clientAddress: '127.0.0.1', peerIdentity, start: 0, route: 'inbound', destination: 'web-1.shop' });
}
const PEER = 'spiffe://cluster.local/ns/shop/sa/loadgen';

test('an mTLS peer names its own service and ours; the headers never reach the app', () => {
  const headers = ['accept', '*/*', SOURCE_SERVICE_HEADER, 'evil.shop', SOURCE_SERVICE_HEADER, 'loadgen.shop', DESTINATION_SERVICE_HEADER, 'web.shop'];
  const c = ctx(PEER);
  takePeerLabels(headers, c, 'shop');
  assert.deepEqual(headers, ['accept', '*/*']);
  assert.equal(c.sourceService, 'loadgen.shop', 'the last value: the one the peer proxy appended');
  assert.equal(c.destination, 'web.shop');
});

test('labels outside the peer\'s namespace or ours, or not service names, are ignored', () => {
  const cases: Array<[string, string]> = [['loadgen.billing', 'web.billing'], ['Bad_Name.shop', 'web.shop.extra'], ['.shop', 'x'.repeat(70) + '.shop']];
  for (const [source, destination] of cases) {
    const headers = [SOURCE_SERVICE_HEADER, source, DESTINATION_SERVICE_HEADER, destination];
    const c = ctx(PEER);
    takePeerLabels(headers, c, 'shop');
    assert.deepEqual(headers, []);
    assert.equal(c.sourceService, '', source);
    assert.equal(c.destination, 'web-1.shop', destination);
  }
});

test('a plaintext caller\'s labels are dropped unread', () => {
  const headers = [SOURCE_SERVICE_HEADER, 'loadgen.shop', DESTINATION_SERVICE_HEADER, 'web.shop'];
  const c = ctx(null);
  takePeerLabels(headers, c, 'shop');
  assert.deepEqual(headers, []);
  assert.equal(c.sourceService, '');
  assert.equal(c.destination, 'web-1.shop');
});

test('node:http2 joins a repeated field with ", ": the last element is the peer proxy\'s value', () => {
  const headers = [SOURCE_SERVICE_HEADER, 'evil.shop, loadgen.shop', DESTINATION_SERVICE_HEADER, 'other.shop, web.shop'];
  const c = ctx(PEER);
  takePeerLabels(headers, c, 'shop');
  assert.equal(c.sourceService, 'loadgen.shop');
  assert.equal(c.destination, 'web.shop');
});

test('a tunnel\'s source, under the same rule: mTLS peer only, its own namespace only, the last value', () => {
  const head = (...values: string[]): string[] => ['host', '127.0.0.1:5432', 'weft-service', 'db.shop:9000', ...values.flatMap((v) => [SOURCE_SERVICE_HEADER, v])];
  assert.equal(tunnelSourceService(head('loadgen.shop'), PEER), 'loadgen.shop');
  assert.equal(tunnelSourceService(head('loadgen.shop'), null), '', 'a plaintext caller\'s header is ignored');
  assert.equal(tunnelSourceService(head('loadgen.billing'), PEER), '', 'a service of another namespace is ignored');
  assert.equal(tunnelSourceService(head('loadgen.shop', 'web.shop'), PEER), 'web.shop', 'the last value wins');
  assert.equal(tunnelSourceService(head('web.shop', 'loadgen.billing'), PEER), '', 'the last value, even when it is not believed');
  assert.equal(tunnelSourceService(head('evil.shop, loadgen.shop'), PEER), 'loadgen.shop', 'as joined by node:http2');
  for (const bad of ['', 'shop', '.shop', 'Loadgen.shop', 'load_gen.shop', `${'x'.repeat(64)}.shop`, 'a.b.shop', 'loadgen.shop\r\nx: y']) {
    assert.equal(tunnelSourceService(head(bad), PEER), '', JSON.stringify(bad));
  }
  assert.equal(tunnelSourceService(head(), PEER), '', 'no header');
  assert.equal(tunnelSourceService(head('loadgen.shop'), 'spiffe://cluster.local/sa/loadgen'), '', 'an identity without a namespace');
});
