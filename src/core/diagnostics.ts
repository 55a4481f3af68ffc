/**
 * The channels through which the data plane and control plane report what they do. Parts publish;
 * the CLI (or a test) subscribes to log or count. Nothing in the core imports a logger.
 */
import diagnostics_channel from 'node:diagnostics_channel';

/** Configuration applied: `{ source, version }`. */
export const configApplied = diagnostics_channel.channel('weft:config:applied');
/** Configuration refused, last good kept: `{ source, errors: string[] }`. */
export const configRejected = diagnostics_channel.channel('weft:config:rejected');
/** Configuration applied with problems in some resources: `{ source, warnings: string[] }`. */
export const configWarnings = diagnostics_channel.channel('weft:config:warnings');
/** Lifecycle events of a proxy: `{ event: 'listening' | 'draining' | 'stopped', detail }`. */
export const proxyLifecycle = diagnostics_channel.channel('weft:proxy:lifecycle');
/**
 * A TCP connection the proxy could not carry: `{ direction: 'outbound', service, endpoint, transport,
 * code, message }` — no endpoint, a failed dial, or a tunnel the destination's proxy refused.
 */
export const tcpConnectionFailed = diagnostics_channel.channel('weft:proxy:tcp:failed');
