import { test } from 'node:test';
import assert from 'node:assert/strict';
// The test process may load node:http: only the proxy process must not.
import { STATUS_CODES as NODE_STATUS_CODES } from 'node:http';
import { STATUS_CODES, statusText } from './status.js';

test('reason phrases are node:http\'s, for every code it knows', () => {
  for (const [code, phrase] of Object.entries(NODE_STATUS_CODES)) assert.equal(STATUS_CODES[Number(code)], phrase, `status ${code}`);
  let ours = 0;
  for (let code = 0; code < 600; code++) if (STATUS_CODES[code] !== undefined) ours++;
  assert.equal(ours, Object.keys(NODE_STATUS_CODES).length);
});

test('a code without a phrase is Unknown', () => {
  assert.equal(statusText(404), 'Not Found');
  assert.equal(statusText(299), 'Unknown');
  assert.equal(statusText(999), 'Unknown');
  assert.equal(STATUS_CODES[299], undefined);
});
