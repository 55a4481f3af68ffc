import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newRequestContext, type RequestContext } from '../message.js';
import { DESTINATION_SERVICE_HEADER, SOURCE_SERVICE_HEADER, takePeerLabels } from './peer-labels.js';

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
