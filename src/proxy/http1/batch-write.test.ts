// Writes gathered per event-loop turn: held until the turn's check phase, then sent in order; sent
// at once by sendNow (a destroy without it drops them); and a listener's answer to a client that
// half-closed still goes out before the connection is destroyed. Gathering only under load: after a
// run of lone bursts writes go out at once, until a run of close writes shows load again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Body } from '../body.js';
import { pacing, sendNow, writeInTurn, writingAtOnce } from './batch-write.js';
import { defaultHeadLimits } from './parse.js';
import { Http1ServerConnection } from './server.js';

/** `n` connected pairs: [the accepted side, the client side with everything it received]. */
async function pairs(n: number): Promise<{ server: Server; accepted: Socket[]; clients: Array<{ socket: Socket; text: () => string; closed: Promise<unknown> }> }> {
  const accepted: Socket[] = [];
  const server = createServer((s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const clients = [];
  for (let i = 0; i < n; i++) {
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('error', () => {});
    clients.push({ socket, text: () => text, closed: once(socket, 'close') });
    await once(socket, 'connect');
  }
  while (accepted.length < n) await new Promise((r) => setImmediate(r));
  return { server, accepted, clients };
}

async function until(fn: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 2 s`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('writes of one turn are held until its check phase, then sent, in order, on every socket', async () => {
  const { server, accepted, clients } = await pairs(3);
  try {
    for (const [i, s] of accepted.entries()) {
      writeInTurn(s, `a${i} `, 'latin1');
      writeInTurn(s, Buffer.from(`b${i} `));
      s.write(`c${i}`); // a plain write in the same turn queues behind them
    }
    // Still held: nothing has reached the kernel yet.
    assert.deepEqual(accepted.map((s) => s.writableLength > 0), [true, true, true]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(accepted.map((s) => s.writableCorked), [0, 0, 0], 'uncorked at the end of the turn');
    await until(() => clients.every((c, i) => c.text() === `a${i} b${i} c${i}`), 'all three in order');
  } finally {
    for (const c of clients) c.socket.destroy();
    server.close();
  }
});

test('sendNow sends what is held before a destroy; a destroy without it drops it', async () => {
  const { server, accepted, clients } = await pairs(2);
  try {
    writeInTurn(accepted[0]!, 'kept', 'latin1');
    sendNow(accepted[0]!);
    accepted[0]!.destroy();
    writeInTurn(accepted[1]!, 'dropped', 'latin1');
    accepted[1]!.destroy();
    await Promise.all(clients.map((c) => c.closed));
    assert.equal(clients[0]!.text(), 'kept');
    assert.equal(clients[1]!.text(), '', 'the hazard sendNow exists for');
  } finally {
    server.close();
  }
});

test('a listener answers a client that sent its request and half-closed, then closes', async () => {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    // The answer comes after the client's FIN was seen: it is written, then the connection destroyed, in one turn.
    const late = async () => {
      await new Promise((r) => setTimeout(r, 30));
      return { status: 200, headers: [], body: Body.of(Buffer.from('answer')) };
    };
    new Http1ServerConnection(socket, late, {
      direction: 'inbound', limits: defaultHeadLimits, requestHeaderTimeoutMs: 5000, idleTimeoutMs: 5000,
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const c = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true });
    let text = '';
    c.on('data', (b: Buffer) => (text += b.toString('latin1')));
    c.on('error', () => {});
    await once(c, 'connect');
    c.end('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    await once(c, 'close');
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nanswer$/);
  } finally {
    server.close();
  }
});

test('pipelined answers leave in order, and the last one before the connection ends (Connection: close) whole', async () => {
  const server = createServer((socket) => {
    new Http1ServerConnection(socket, async (req) => ({ status: 200, headers: [], body: Body.of(Buffer.from(`answer ${req.path}`)) }), {
      direction: 'inbound', limits: defaultHeadLimits, requestHeaderTimeoutMs: 5000, idleTimeoutMs: 5000,
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const c = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
    let text = '';
    c.on('data', (b: Buffer) => (text += b.toString('latin1')));
    c.on('error', () => {});
    await once(c, 'connect');
    c.write('GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\nGET /3 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    await once(c, 'close');
    const bodies = [...text.matchAll(/\r\n\r\n(answer \/\d)/g)].map((m) => m[1]);
    assert.deepEqual(bodies, ['answer /1', 'answer /2', 'answer /3']);
    assert.match(text, /connection: close\r\n\r\nanswer \/3$/);
  } finally {
    server.close();
  }
});

test('after a run of lone bursts writes go out at once; a run of close writes gathers again; order holds throughout', async () => {
  const saved = { ...pacing };
  // Small counts, and a wide gap so a slow machine cannot make back-to-back writes look quiet.
  Object.assign(pacing, { lonelyBursts: 3, closeWrites: 4, quietGapMs: 50 });
  const { server, accepted, clients } = await pairs(1);
  const s = accepted[0]!;
  try {
    // The earlier tests left it gathering (their last turns wrote to several sockets, or to one:
    // the count of lone bursts may have started).
    assert.equal(writingAtOnce(), false, 'gathering');
    let lone = 0;
    while (!writingAtOnce()) {
      writeInTurn(s, `L${lone} `, 'latin1');
      assert.equal(s.writableCorked, 1, `lone write ${lone} is held while gathering`);
      await new Promise((r) => setImmediate(r));
      assert.ok(++lone <= 3, 'three bursts of one socket in a row: writes go out at once');
    }
    writeInTurn(s, 'Q ', 'latin1');
    assert.equal(s.writableCorked, 0);
    assert.equal(s.writableLength, 0, 'handed to the kernel before writeInTurn returned');
    await new Promise((r) => setTimeout(r, 120));
    // Six writes back to back: the first after a quiet gap, then close ones; the fourth close one
    // (the fifth write) ends writing at once and is held with the rest of the turn.
    const held: number[] = [];
    for (let i = 0; i < 6; i++) {
      writeInTurn(s, `C${i} `, 'latin1');
      held.push(s.writableCorked);
    }
    assert.deepEqual(held, [0, 0, 0, 0, 1, 1]);
    assert.equal(writingAtOnce(), false, 'load seen again: gathering');
    await new Promise((r) => setImmediate(r));
    assert.equal(s.writableCorked, 0, 'uncorked at the end of the turn');
    const lones = Array.from({ length: lone }, (_, i) => `L${i} `).join('');
    await until(() => clients[0]!.text() === `${lones}Q C0 C1 C2 C3 C4 C5 `, 'every write, in order');
  } finally {
    Object.assign(pacing, saved);
    for (const c of clients) c.socket.destroy();
    server.close();
  }
});
