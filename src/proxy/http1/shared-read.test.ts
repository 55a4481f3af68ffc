// Accepted connections adopted to read into the shared buffer behave as plain sockets: bytes in order,
// pause and resume, unshift, half-close, and the server closes without waiting for them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { adoptWithSharedReads } from './shared-read.js';

async function acceptOne(): Promise<{ server: ReturnType<typeof createServer>; client: Socket; accepted: Socket }> {
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [raw] = (await once(server, 'connection')) as [Socket];
  return { server, client, accepted: adoptWithSharedReads(raw, true) };
}

test('an adopted connection reads into the shared buffer, every byte in order', async () => {
  const { server, client, accepted } = await acceptOne();
  assert.notEqual(accepted.remoteAddress, undefined, 'the adopted socket knows its peer');
  const chunks: Buffer[] = [];
  accepted.on('data', (c: Buffer) => chunks.push(c));
  const sent = Buffer.alloc(300_000);
  for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + (i >> 9)) & 0xff;
  client.end(sent);
  await once(accepted, 'end');
  assert.deepEqual(Buffer.concat(chunks), sent);
  // The adoption took: the socket carries Node's `onread` state (a user buffer), which a socket
  // reading on its own does not, and which falling back to the accepted socket would not give.
  const userBuffer = (s: Socket): unknown => {
    const key = Object.getOwnPropertySymbols(s).find((k) => k.description === 'kBuffer');
    return key === undefined ? undefined : (s as unknown as Record<symbol, unknown>)[key];
  };
  assert.ok(userBuffer(accepted) instanceof Uint8Array, 'the adopted socket does not read into the shared buffer');
  assert.ok(!(userBuffer(client) instanceof Uint8Array), 'a plain socket reads into a user buffer: the check above proves nothing');
  accepted.end();
  await once(client, 'close');
  await new Promise<void>((r) => server.close(() => r()));
});

test('pause stops reading, unshift puts bytes back, resume delivers them first; half-close both ways', async () => {
  const { server, client, accepted } = await acceptOne();
  const first = await new Promise<Buffer>((resolve) => {
    accepted.once('data', (c: Buffer) => {
      accepted.pause();
      resolve(c);
    });
    client.write('hello ');
  });
  assert.equal(first.toString(), 'hello ');
  accepted.unshift(first);
  client.write('world');
  // Paused: nothing arrives however long the bytes wait in the kernel.
  let early = 0;
  const count = (): void => void early++;
  accepted.on('data', count);
  accepted.pause();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(early, 0, 'a paused adopted socket emitted data');
  accepted.off('data', count);
  const got: Buffer[] = [];
  accepted.on('data', (c: Buffer) => got.push(c));
  accepted.resume();
  client.end();
  await once(accepted, 'end');
  assert.equal(Buffer.concat(got).toString(), 'hello world');
  // allowHalfOpen: the adopted side still writes after the client's FIN.
  const reply = once(client, 'data');
  accepted.end('bye');
  assert.equal(String((await reply)[0]), 'bye');
  await once(client, 'close');
  await new Promise<void>((r) => server.close(() => r()));
});

test('the server closes while an adopted connection is still open', async () => {
  const { server, client, accepted } = await acceptOne();
  let closed = false;
  server.close(() => (closed = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(closed, 'server.close waited for an adopted connection');
  // The connection still works after its server stopped listening.
  const echo = once(client, 'data');
  accepted.on('data', (c: Buffer) => accepted.write(c));
  client.write('ping');
  assert.equal(String((await echo)[0]), 'ping');
  client.destroy();
  accepted.destroy();
});
