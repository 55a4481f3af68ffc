/**
 * Weft's sidecar proxy, outbound direction: the client sends origin-form requests with
 * `Host: upstream` to the outbound port, Weft resolves the `upstream` Service to its Workload.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { launch } from '../lib/processes.js';
import { freePorts } from '../lib/ports.js';
import { httpGet, waitUntilServing } from '../lib/http-probe.js';
import type { BenchRow } from './types.js';

/** The smallest mesh: one HTTP Service backed by the upstream, and the client workload. */
export function meshYaml(upstreamPort: number): string {
  return `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: upstream }
spec: { selector: { app: upstream }, ports: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: upstream-1, labels: { app: upstream } }
spec: { address: 127.0.0.1, ports: { http: ${upstreamPort} } }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: 1 } }
`;
}

export const weftRow: BenchRow = {
  name: 'weft',
  description: 'Weft sidecar proxy, outbound listener with Host: upstream (`node bin/weft.js proxy --file mesh.yaml --workload client-1 …`)',
  requires: [],
  start: async (ctx) => {
    // bin/weft.js is the package's entry point (it calls main() of dist/src/cli/main.js, which
    // does not run by itself when executed directly).
    const main = path.join(ctx.repoRoot, 'dist', 'src', 'cli', 'main.js');
    if (!existsSync(main)) throw new Error('dist/src/cli/main.js not found (Weft CLI not built yet)');
    const bin = path.join(ctx.repoRoot, 'bin', 'weft.js');
    const cli = existsSync(bin) ? bin : main;
    const mesh = path.join(ctx.tmpDir, 'mesh.yaml');
    writeFileSync(mesh, meshYaml(ctx.upstreamPort));
    const [outbound, inbound, admin] = (await freePorts(3)) as [number, number, number];
    const proc = launch(
      'weft',
      process.execPath,
      [
        cli,
        'proxy',
        '--file',
        mesh,
        '--workload',
        'client-1',
        '--outbound-port',
        String(outbound),
        '--inbound-port',
        String(inbound),
        '--admin-port',
        String(admin),
      ],
      { core: ctx.proxyCore, cwd: ctx.repoRoot },
    );
    const notes: string[] = [];
    try {
      await waitUntilServing({ port: outbound, hostHeader: 'upstream', process: proc });
      const ready = await httpGet(admin, '/ready', '127.0.0.1').catch((err: Error) => err.message);
      if (ready !== 200) notes.push(`admin /ready answered ${ready} while traffic flowed`);
    } catch (err) {
      await proc.stop();
      throw err;
    }
    return { port: outbound, pids: [proc.pid], stop: () => proc.stop(), notes };
  },
};
