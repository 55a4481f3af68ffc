/** `weft control`: the control plane. */
import { isIP } from 'node:net';
import { ControlPlane } from '../control/control-plane.js';
import { STREAM_AUTH_MODES, type StreamAuthMode } from '../control/serve/config-server.js';
import { UsageError, duration, port, version, type Command } from './command.js';
import { saveAdminToken } from './credentials.js';

export const DEFAULT_API_PORT = 15010;

export const controlCommand: Command = {
  summary: 'run the control plane (API, config server, store)',
  usage: 'weft control [--data-dir DIR] [--api-port PORT] [--config-dir DIR] [--stream-auth required|optional]',
  options: {
    'data-dir': { type: 'string', default: '.weft' },
    'api-port': { type: 'string', default: String(DEFAULT_API_PORT) },
    'api-address': { type: 'string', default: '127.0.0.1' },
    'config-dir': { type: 'string' },
    'lease-ttl': { type: 'string', default: '10s' },
    'ca-cert': { type: 'string' },
    'ca-key': { type: 'string' },
    'ca-bundle': { type: 'string' },
    'stream-auth': { type: 'string' },
  },
  help: `Options:
      --data-dir DIR       where the durable store lives (default .weft)
      --api-port PORT      API, dashboard and config stream port (default ${DEFAULT_API_PORT}; 0 = chosen by the OS)
      --api-address ADDR   address the API binds (default 127.0.0.1)
      --config-dir DIR     also read resources from the YAML files in DIR, watched
      --lease-ttl DURATION how long a registered workload outlives its proxy's silence (default 10s)
      --stream-auth MODE   required: a proxy's config stream must carry a valid join token or a certificate
                           this control plane issued, else it gets no configuration and registers nothing;
                           optional (default): proxies without a credential get configuration too.
                           Also WEFT_STREAM_AUTH. Use required when the API is reachable from other hosts.
The API needs the admin token made on first start (DATA-DIR/admin-token, mode 0600); the weft CLI on
this machine finds it in its credentials file, elsewhere set WEFT_ADMIN_TOKEN.
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
    const streamAuth = streamAuthMode(v['stream-auth'] as string | undefined);
    const cp = new ControlPlane({
      streamAuth,
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
    const address = v['api-address'] as string;
    const local = `http://${address === '0.0.0.0' || address === '::' ? '127.0.0.1' : address.includes(':') ? `[${address}]` : address}:${bound}`;
    if (cp.adminToken.created !== null) log(`made the API admin token; it is shown this once (and kept, mode 0600, in ${cp.adminToken.file}): ${cp.adminToken.created}`);
    try {
      log(`admin token for ${local} saved for the weft CLI in ${saveAdminToken(local, cp.adminToken.token)}`);
    } catch (err) {
      log(`could not save the admin token for the CLI (${(err as Error).message}); set WEFT_ADMIN_TOKEN`);
    }
    console.log(JSON.stringify({ event: 'listening', apiPort: bound }));
    log(`serving on ${local} (data in ${v['data-dir'] as string}; proxies reconnect over mTLS on the same port; config streams: credential ${streamAuth})`);
    if (streamAuth === 'optional' && !isLoopbackAddress(address)) {
      log(`warning: --api-address ${address} is not loopback and --stream-auth is optional: whoever reaches port ${bound} can read the mesh's configuration and register endpoints; use --stream-auth required`);
    }
    return new Promise((resolve) => {
      const stop = (): void => void cp.stop().then(() => resolve(0));
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  },
};

/** `--stream-auth`, else WEFT_STREAM_AUTH, else optional. */
function streamAuthMode(flag: string | undefined): StreamAuthMode {
  const [text, from] = flag !== undefined ? [flag, '--stream-auth'] : [process.env.WEFT_STREAM_AUTH, 'WEFT_STREAM_AUTH'];
  if (text === undefined || (text === '' && from === 'WEFT_STREAM_AUTH')) return 'optional';
  if (!(STREAM_AUTH_MODES as readonly string[]).includes(text)) throw new UsageError(`${from}: ${JSON.stringify(text)} is not one of ${STREAM_AUTH_MODES.join(', ')}`);
  return text as StreamAuthMode;
}

/** Whether the API binds only loopback (127.0.0.0/8, ::1, localhost). */
export function isLoopbackAddress(address: string): boolean {
  if (address === 'localhost' || address === '::1') return true;
  return isIP(address) === 4 && address.startsWith('127.');
}
