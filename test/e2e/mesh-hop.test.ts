// Two proxies in a row, as in a mesh: client app → its proxy (outbound) → the server workload's
// proxy (inbound) → the server app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { rawExchange, startEcho, startProxy, tempFile, type Seen } from './harness.js';

test('outbound → inbound → app through two proxy processes', async () => {
  const app = await startEcho('server-app');
  // The server's inbound port is chosen by the OS; clients learn it from the file written after.
  const mesh = (inboundPort: number | null): string => `apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: api }
spec: { selector: { app: api }, ports: [{ name: http, port: 8080, protocol: HTTP }] }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: api-1, labels: { app: api } }
spec: { address: 127.0.0.1, ports: { http: ${app.port} }${inboundPort === null ? '' : `, proxy: { inboundPort: ${inboundPort} }`} }
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client-1, labels: { app: client } }
spec: { address: 127.0.0.1, ports: { http: 1 } }
`;
  const file = tempFile('mesh.yaml', mesh(null));
  const server = await startProxy(file, 'api-1');
  writeFileSync(file, mesh(server.inbound));
  const client = await startProxy(file, 'client-1').catch(async (err) => {
    await server.stop();
    await app.close();
    throw err;
  });
  try {
    // `api` has one HTTP port, so the authority needs no port.
    const r = await rawExchange(client.outbound, 'GET http://api/items HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    const seen = JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)) as Seen;
    assert.equal(seen.url, '/items');
    assert.equal(seen.headers['weft-app-port'], undefined, 'the inbound side removes the port header');
    assert.equal(seen.headers['weft-source-service'], undefined, 'and the metrics label headers');
    assert.equal(seen.headers['weft-destination-service'], undefined);
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1, 127.0.0.1', 'each hop appends its peer');
    assert.equal(app.seen.length, 1);

    const metrics = await rawExchange(server.admin, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    // Plaintext hop: the caller's service is unknown and the destination is the workload's canonical service (its app label).
    assert.match(metrics.text, /weft_requests_total\{direction="inbound",source_service="",source_identity="",destination_service="api.default",destination_identity="",route="inbound",response_code="200",grpc_status="",error_code="",mtls="false"\} 1/);

    const wrongPort = await rawExchange(server.inbound, 'GET / HTTP/1.1\r\nHost: api\r\nweft-app-port: 9\r\nConnection: close\r\n\r\n');
    assert.match(wrongPort.text, /^HTTP\/1\.1 404 /);
    assert.match(wrongPort.text, /weft-error: NO_ROUTE/);
    assert.match(wrongPort.text, /port 9 is not a port of this workload/);
  } finally {
    await client.stop();
    await server.stop();
    await app.close();
  }
});
