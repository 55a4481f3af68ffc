import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeCommand, RespError, RespParser, type RespValue } from './resp.js';

function parseAll(...chunks: Array<string | Buffer>): RespValue[] {
  const out: RespValue[] = [];
  const p = new RespParser((v) => out.push(v));
  for (const c of chunks) p.push(typeof c === 'string' ? Buffer.from(c) : c);
  return out;
}

describe('RESP', () => {
  test('encodes a command as an array of bulk strings, lengths in bytes', () => {
    assert.equal(encodeCommand(['SET', 'k', 'é', 12]).toString(), '*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n$2\r\n12\r\n');
  });

  test('simple strings, errors, integers, bulk strings, nil bulk, arrays, nil arrays', () => {
    assert.deepEqual(parseAll('+OK\r\n:42\r\n:-3\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n'), ['OK', 42, -3, 'hello', '', null, null, []]);
    const [err] = parseAll('-NOSCRIPT No matching script. Please use EVAL.\r\n');
    assert.ok(err instanceof RespError);
    assert.equal(err.message, 'NOSCRIPT No matching script. Please use EVAL.');
    assert.deepEqual(parseAll('*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n'), [[1, ['a', null], 'x']]);
  });

  test('a bulk string may hold CRLF; its length decides', () => {
    assert.deepEqual(parseAll('$4\r\na\r\nb\r\n'), ['a\r\nb']);
  });

  test('replies split anywhere come out whole, once, in order', () => {
    const wire = '*2\r\n:7\r\n:1500\r\n$3\r\nabc\r\n-ERR x\r\n+PONG\r\n';
    const whole = parseAll(wire);
    assert.equal(whole.length, 4);
    for (let i = 1; i < wire.length; i++) {
      for (const j of [i + 1, i + 3, wire.length]) {
        if (j > wire.length) continue;
        const parts = [wire.slice(0, i), wire.slice(i, j), wire.slice(j)].filter((s) => s !== '');
        assert.deepEqual(parseAll(...parts), whole, `split at ${i} and ${j}`);
      }
    }
    // Byte by byte, with a multi-byte character split across chunks.
    const utf = Buffer.from('$2\r\né\r\n');
    assert.deepEqual(parseAll(...[...utf].map((b) => Buffer.from([b]))), ['é']);
  });

  test('a malformed stream throws (the connection is then re-made)', () => {
    assert.throws(() => parseAll('?what\r\n'), /unexpected type byte/);
    assert.throws(() => parseAll(':12x\r\n'), /bad integer/);
    assert.throws(() => parseAll('$3\r\nabcd\r\n'), /not followed by CRLF/);
  });
});
