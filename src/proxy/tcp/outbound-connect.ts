/**
 * `CONNECT` on the outbound listener, so an app with `HTTPS_PROXY` pointing at its sidecar reaches
 * mesh services: `CONNECT <service>[.<namespace>]:<port>` where the authority names a Service port
 * becomes opaque TCP to that port's endpoints, through their proxies (the same tunnels as a
 * `--upstream` port), whatever the port's protocol — the app may well speak TLS end to end, which
 * the mesh cannot look into. Any other authority is refused with `404 NO_ROUTE`: the sidecar is no
 * open proxy and has no egress. The app gets `200` only once the destination accepted the tunnel,
 * so a refusal (DENIED, MTLS_REQUIRED, a connect failure, …) reaches it as a coded HTTP answer.
 */
import { MeshError } from '../../core/errors.js';
import type { ConnectTunnel } from '../http1/server.js';
import type { ConnectTable } from '../route/connect-table.js';
import { connectTarget, refuseTunnel } from './inbound-tunnel.js';
import { forwardTcp, type TcpForwarding } from './tcp-proxy.js';

/**
 * Serves one CONNECT handed over by the outbound listener. `table` is null before the first
 * configuration. `onEnd` runs once, when the connection is done with.
 */
export function connectOutbound(t: ConnectTunnel, table: ConnectTable | null, fwd: TcpForwarding, onEnd: () => void): void {
  const socket = t.socket;
  socket.on('error', () => {});
  const refuse = (e: MeshError): void => {
    fwd.report({ service: '', transport: null, endpoint: '', errorCode: e.code, message: e.message });
    socket.once('close', onEnd);
    refuseTunnel(socket, e);
  };
  if (table === null) return refuse(new MeshError('NO_CONFIGURATION', 'this proxy has not received its configuration yet'));
  const where = connectTarget(t.head);
  if (where instanceof MeshError) return refuse(where);
  const target = table.lookup(where.host, where.port);
  if (target === null) {
    const shown = JSON.stringify(t.head.target.slice(0, 80));
    return refuse(new MeshError('NO_ROUTE', `CONNECT ${shown}: no mesh service port has that authority (this proxy tunnels only to mesh services)`));
  }
  forwardTcp(socket, target.name, target.pickCluster, fwd, onEnd, { rest: t.rest });
}
