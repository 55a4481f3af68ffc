import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { countInWindow, redisKey } from './global-counter.js';
import { RedisClient, RedisCommandError } from './redis-client.js';
import { RespError } from './resp.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A real redis-server on a free loopback port, no persistence; resolves once it answers. */
async function startRedis(port?: number): Promise<{ port: number; proc: ChildProcess; stop(): Promise<void> }> {
  const p = port ?? (await freePort());
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const probe = new RedisClient({ host: '127.0.0.1', port: p, initialBackoffMs: 10, maxBackoffMs: 20 });
  try {
    const deadline = Date.now() + 5000;
    for (;;) {
      if ((await probe.command(['PING'], 200).catch(() => null)) === 'PONG') break;
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    probe.close();
  }
  return {
    port: p,
    proc,
    stop: () => new Promise<void>((r) => (proc.exitCode !== null ? r() : (proc.once('exit', () => r()), proc.kill('SIGKILL')))),
  };
}

describe('Redis client', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  test('pipelined commands get their own replies, in order; error replies are values', async () => {
    const c = new RedisClient({ host: '127.0.0.1', port: redis.port });
    try {
      const replies = await Promise.all(Array.from({ length: 200 }, () => c.command(['INCR', 'weft:test:n'], 1000)));
      assert.deepEqual(replies, Array.from({ length: 200 }, (_, i) => i + 1));
      const err = await c.command(['NOSUCHCOMMAND'], 1000);
      assert.ok(err instanceof RespError);
      assert.equal(await c.command(['GET', 'weft:test:missing'], 1000), null);
    } finally {
      c.close();
    }
  });

  test('fixed window: exact count, EVALSHA falling back to EVAL after SCRIPT FLUSH, key expires with the window', async () => {
    const c = new RedisClient({ host: '127.0.0.1', port: redis.port });
    try {
      assert.equal(await c.command(['SCRIPT', 'FLUSH'], 1000), 'OK');
      const key = redisKey('default/limit', 'spiffe://cluster.local/ns/default/sa/a');
      assert.equal(key, 'weft:rl:default/limit:spiffe://cluster.local/ns/default/sa/a');
      const counts = await Promise.all(Array.from({ length: 20 }, () => countInWindow(c, key, 300, performance.now() + 1000)));
      assert.deepEqual(counts.map((w) => w.count).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
      for (const w of counts) assert.ok(w.ttlMs > 0 && w.ttlMs <= 300, String(w.ttlMs));
      await new Promise((r) => setTimeout(r, 350));
      assert.equal((await countInWindow(c, key, 300, performance.now() + 1000)).count, 1, 'a new window');
      const ttl = await c.command(['PTTL', key], 1000);
      assert.ok(typeof ttl === 'number' && ttl > 0 && ttl <= 300, 'the key expires');
    } finally {
      c.close();
    }
  });

  test('a server that never answers: each command times out on time; a hung connection is re-made', async () => {
    const sockets = new Set<Socket>();
    let connections = 0;
    const silent = createServer((s) => {
      connections++;
      sockets.add(s);
      s.on('data', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const c = new RedisClient({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port, staleMs: 200, initialBackoffMs: 10, maxBackoffMs: 20 });
    try {
      const start = performance.now();
      const e = await c.command(['PING'], 50).catch((x: unknown) => x);
      const took = performance.now() - start;
      assert.ok(e instanceof RedisCommandError && e.reason === 'timeout', String(e));
      assert.ok(took >= 45 && took < 300, `timed out after ${took} ms`);
      // Keep asking for a while: once the oldest command is 200 ms old, the connection is dropped and re-made.
      for (let i = 0; i < 40 && connections < 2; i++) await c.command(['PING'], 50).catch(() => new Promise((r) => setTimeout(r, 10)));
      assert.ok(connections >= 2, `connections: ${connections}`);
    } finally {
      c.close();
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  test('nothing listening: commands fail fast; once Redis is there, the client reconnects by itself', async () => {
    const port = await freePort();
    const c = new RedisClient({ host: '127.0.0.1', port, initialBackoffMs: 20, maxBackoffMs: 100 });
    let late: Awaited<ReturnType<typeof startRedis>> | undefined;
    try {
      const e = await c.command(['PING'], 500).catch((x: unknown) => x);
      assert.ok(e instanceof RedisCommandError && e.reason === 'unavailable', String(e));
      const start = performance.now();
      const again = await c.command(['PING'], 500).catch((x: unknown) => x);
      assert.ok(again instanceof RedisCommandError, String(again));
      assert.ok(performance.now() - start < 100, 'in backoff, a command fails at once');
      late = await startRedis(port);
      const deadline = Date.now() + 3000;
      let reply: unknown = null;
      while (Date.now() < deadline && reply !== 'PONG') {
        reply = await c.command(['PING'], 200).catch(() => null);
        if (reply !== 'PONG') await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(reply, 'PONG');
    } finally {
      c.close();
      await late?.stop();
    }
  });

  test('the number of commands waiting is bounded', async () => {
    const c = new RedisClient({ host: '127.0.0.1', port: redis.port, maxInFlight: 4 });
    try {
      const all = await Promise.allSettled(Array.from({ length: 6 }, () => c.command(['PING'], 1000)));
      assert.deepEqual(all.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected']);
      assert.match(String((all[4] as PromiseRejectedResult).reason), /4 commands already wait/);
    } finally {
      c.close();
    }
  });
});
