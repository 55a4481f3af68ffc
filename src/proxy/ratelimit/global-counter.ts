/**
 * Global rate limiting: a fixed window per key in Redis, shared by every proxy that enforces the
 * policy. One atomic Lua script counts the request and opens the window (its expiry) on the first
 * one, so the count of a window is exact whatever the number of proxies: at most `requests` get
 * through per window. Keys are `weft:rl:<namespace>/<policy>:<key>` and expire with their window.
 */
import { createHash } from 'node:crypto';
import { RedisCommandError, type RedisClient } from './redis-client.js';
import { RespError } from './resp.js';

/** KEYS[1] the counter, ARGV[1] the window (ms); returns { count in this window, ms left of it }. */
export const FIXED_WINDOW_SCRIPT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}`;
const SCRIPT_SHA = createHash('sha1').update(FIXED_WINDOW_SCRIPT).digest('hex');

/** The Redis key of one bucket of one policy (`namespace/name`). */
export const redisKey = (policy: string, key: string): string => `weft:rl:${policy}:${key}`;

/** A window's count after this request, and the milliseconds until it closes. */
export interface WindowCount {
  count: number;
  ttlMs: number;
}

/**
 * Counts one request in `key`'s window of `windowMs`. Waits at most until `deadline`
 * (performance.now() ms), a NOSCRIPT retry included; rejects with a RedisCommandError (no reply in
 * time, no connection) or an Error (an unexpected reply).
 */
export async function countInWindow(client: RedisClient, key: string, windowMs: number, deadline: number): Promise<WindowCount> {
  let reply = await client.command(['EVALSHA', SCRIPT_SHA, 1, key, windowMs], remaining(deadline));
  // A fresh (or flushed) server does not know the script yet: EVAL sends it, and caches it for next time.
  if (reply instanceof RespError && reply.message.startsWith('NOSCRIPT')) reply = await client.command(['EVAL', FIXED_WINDOW_SCRIPT, 1, key, windowMs], remaining(deadline));
  if (reply instanceof RespError) throw new Error(`Redis ${client.address} answered ${reply.message}`);
  if (!Array.isArray(reply) || typeof reply[0] !== 'number' || typeof reply[1] !== 'number') throw new Error(`Redis ${client.address}: unexpected reply ${JSON.stringify(reply)}`);
  return { count: reply[0], ttlMs: reply[1] };
}

/**
 * Connects ahead of the first request and loads the script, so a cold proxy's first check is one
 * round trip, not a connect, a NOSCRIPT and an EVAL within the request's timeout. Failures are left
 * to the requests to find.
 */
export function prepare(client: RedisClient): void {
  client.command(['SCRIPT', 'LOAD', FIXED_WINDOW_SCRIPT], 1000).catch(() => {});
}

function remaining(deadline: number): number {
  const left = Math.ceil(deadline - performance.now());
  if (left <= 0) throw new RedisCommandError('timeout', 'no time left to ask Redis');
  return left;
}
