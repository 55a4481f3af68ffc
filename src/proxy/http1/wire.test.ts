import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRequestHead } from './parse.js';
import { requestedUpgrade } from './wire.js';

const upgradeOf = (...lines: string[]): string | null => requestedUpgrade(parseRequestHead(['GET / HTTP/1.1', 'Host: a', ...lines].join('\r\n')));

test('an upgrade is asked for with Connection: upgrade and an Upgrade field, on a bodyless HTTP/1.1 request', () => {
  assert.equal(upgradeOf('Connection: Upgrade', 'Upgrade: websocket'), 'websocket');
  assert.equal(upgradeOf('Connection: keep-alive, upgrade', 'Upgrade: WebSocket'), 'WebSocket');
  assert.equal(upgradeOf('Connection: upgrade', 'Upgrade: foo/2, bar', 'Upgrade: baz'), 'foo/2, bar, baz');
  assert.equal(upgradeOf('Connection: upgrade', 'Upgrade: websocket', 'Content-Length: 0'), 'websocket');
});

test('no upgrade without both fields, with content, in HTTP/1.0, or for h2c alone', () => {
  assert.equal(upgradeOf('Upgrade: websocket'), null, 'Upgrade not named by Connection');
  assert.equal(upgradeOf('Connection: upgrade'), null, 'no Upgrade field');
  assert.equal(upgradeOf('Connection: upgrade', 'Upgrade: websocket', 'Content-Length: 5'), null);
  assert.equal(upgradeOf('Connection: upgrade', 'Upgrade: websocket', 'Transfer-Encoding: chunked'), null);
  assert.equal(upgradeOf('Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA'), null);
  assert.equal(upgradeOf('Connection: Upgrade', 'Upgrade: H2C, websocket'), 'websocket', 'h2c is dropped from a list');
  assert.equal(requestedUpgrade(parseRequestHead('GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket')), null);
});
