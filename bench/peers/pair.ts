/** What the peers that are two proxies in the sidecars' positions share. */
import { servedBy } from '../lib/http-probe.js';
import type { Launched } from '../lib/processes.js';
import type { RunningRow } from '../rows/types.js';

/**
 * The started pair as a row, once the client side serves on `clientPort`: load goes there, `pids`
 * is [client, server], and stopping stops both. When it never serves, both are stopped and it throws.
 */
export async function pairRow(client: Launched, server: Launched, clientPort: number): Promise<RunningRow> {
  let ready: Awaited<ReturnType<typeof servedBy>>;
  try {
    ready = await servedBy(client, clientPort);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    port: ready.port,
    pids: [client.pid, server.pid],
    stop: async () => {
      await client.stop();
      await server.stop();
    },
  };
}
