/**
 * `node-relay-mtls`, a `bench:ab` side: two Node processes in the positions of Weft's two sidecars
 * that only relay bytes, each connection over its own mutual-TLS connection (bench/peers/node-relay.ts).
 * No HTTP parsing, pooling, routing, metrics or tracing: what any proxy written on Node 20 pays per
 * request before doing anything of its own (reading and writing a TCP and a TLS socket through Node's
 * streams, and the kernel), measured beside Weft and nginx in the same run.
 */
import path from 'node:path';
import { freePort } from '../lib/ports.js';
import { launch } from '../lib/processes.js';
import type { RunningRow } from '../rows/types.js';
import { pairRow } from './pair.js';
import { makeCertificates } from './nginx-mtls-pair.js';

/** Starts the pair (`repoRoot`: where dist/ is); load goes to `port` (the client side), `pids` is [client, server]. */
export async function startNodeRelayPair(dir: string, repoRoot: string, upstreamPort: number, core: number | null): Promise<RunningRow> {
  makeCertificates(dir);
  const script = path.join(repoRoot, 'dist', 'bench', 'peers', 'node-relay.js');
  const serverPort = await freePort();
  const clientPort = await freePort();
  const server = launch('node relay, server side', process.execPath, [script, 'server', String(serverPort), String(upstreamPort), dir], { core });
  const client = launch('node relay, client side', process.execPath, [script, 'client', String(clientPort), String(serverPort), dir], { core });
  return pairRow(client, server, clientPort);
}
