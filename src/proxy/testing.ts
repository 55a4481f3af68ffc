/**
 * Small helpers the proxy's unit tests share (real sockets on loopback); the proxy itself never
 * imports this module.
 */
import type { AddressInfo, Server } from 'node:net';
import type { ProxyResponse } from './message.js';

/** Starts `server` on 127.0.0.1 on a port the OS picks, and returns that port. */
export async function listenOnLoopback(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** Reads a response's whole body as text ('' when it has none); rejects when the body fails. */
export async function readBody(res: ProxyResponse): Promise<string> {
  if (res.body === null) return '';
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => res.body!.pipe({ data: (c) => (chunks.push(c), true), end: () => resolve(), error: reject }));
  return Buffer.concat(chunks).toString();
}
