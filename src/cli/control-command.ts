/** `weft control`: the control plane. */
import { ControlPlane } from '../control/control-plane.js';
import { UsageError, duration, port, version, type Command } from './command.js';

export const DEFAULT_API_PORT = 15010;

export const controlCommand: Command = {
  summary: 'run the control plane (API, config server, store)',
  usage: 'weft control [--data-dir DIR] [--api-port PORT] [--config-dir DIR]',
  options: {
    'data-dir': { type: 'string', default: '.weft' },
    'api-port': { type: 'string', default: String(DEFAULT_API_PORT) },
    'api-address': { type: 'string', default: '127.0.0.1' },
    'config-dir': { type: 'string' },
    'lease-ttl': { type: 'string', default: '10s' },
    'ca-cert': { type: 'string' },
    'ca-key': { type: 'string' },
    'ca-bundle': { type: 'string' },
  },
  help: `Options:
      --data-dir DIR       where the durable store lives (default .weft)
      --api-port PORT      API, dashboard and config stream port (default ${DEFAULT_API_PORT}; 0 = chosen by the OS)
      --api-address ADDR   address the API binds (default 127.0.0.1)
      --config-dir DIR     also read resources from the YAML files in DIR, watched
      --lease-ttl DURATION how long a registered workload outlives its proxy's silence (default 10s)
CA (default: a root made on first start, kept in DATA-DIR/ca with its key mode 0600):
      --ca-cert FILE       sign with this CA certificate (PEM) instead: a root, or an intermediate
      --ca-key FILE        its private key (PEM)
      --ca-bundle FILE     the roots proxies trust (PEM); required for an intermediate
Prints {"event":"listening","apiPort":N} once serving. SIGTERM or Ctrl-C stops it.`,
  run: async (v) => {
    const apiPort = port(v['api-port'], 'api-port');
    if (apiPort === null) throw new UsageError('--api-port: the control plane needs its API');
    const leaseTtlMs = duration(v['lease-ttl'], 'lease-ttl');
    if (leaseTtlMs < 300) throw new UsageError('--lease-ttl: must be at least 300ms');
    const log = (msg: string): void => console.error(`weft control: ${msg}`);
    const caCert = v['ca-cert'] as string | undefined;
    const caKey = v['ca-key'] as string | undefined;
    if ((caCert === undefined) !== (caKey === undefined)) throw new UsageError('--ca-cert and --ca-key go together');
    if (v['ca-bundle'] !== undefined && caCert === undefined) throw new UsageError('--ca-bundle needs --ca-cert and --ca-key');
    const cp = new ControlPlane({
      ca: caCert === undefined ? null : { certFile: caCert, keyFile: caKey!, bundleFile: (v['ca-bundle'] as string | undefined) ?? null },
      dataDir: v['data-dir'] as string,
      apiHost: v['api-address'] as string,
      apiPort,
      configDir: (v['config-dir'] as string | undefined) ?? null,
      leaseTtlMs,
      version,
      log,
    });
    const bound = await cp.start();
    console.log(JSON.stringify({ event: 'listening', apiPort: bound }));
    log(`serving on http://${v['api-address'] as string}:${bound} (data in ${v['data-dir'] as string})`);
    return new Promise((resolve) => {
      const stop = (): void => void cp.stop().then(() => resolve(0));
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  },
};
