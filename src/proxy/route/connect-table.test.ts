import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProxySnapshot } from '../../model/snapshot.js';
import type { ClusterRuntime } from '../upstream/cluster.js';
import { ConnectTable } from './connect-table.js';

const cluster = (name: string): ClusterRuntime => ({ config: { name } }) as unknown as ClusterRuntime;

/** Only what the table reads of a snapshot: virtual hosts' names and domains, TCP services, the workload's namespace. */
const snapshot = {
  workload: { namespace: 'default' },
  virtualHosts: [
    { name: 'web.default:8443', domains: ['web', 'web:8443', 'web.default', 'web.default:8443', 'web.default.svc:8443'] },
    { name: 'api.shop:80', domains: ['api.shop', 'api.shop:80'] },
  ],
  tcpServices: [
    { name: 'db.default:5432', service: 'db', namespace: 'default', port: 5432 },
    { name: 'db.shop:5432', service: 'DB', namespace: 'shop', port: 5432 },
  ],
} as unknown as ProxySnapshot;

const clusters = new Map([['web.default:8443', cluster('web.default:8443')], ['api.shop:80', cluster('api.shop:80')]]);
const tcp = new Map([
  ['db.default:5432', { pickCluster: () => cluster('db-v2.default:5432') }],
  ['db.shop:5432', { pickCluster: () => cluster('db.shop:5432') }],
]);
const table = new ConnectTable(snapshot, clusters, tcp);
const where = (host: string, port: number): string | null => {
  const t = table.lookup(host, port);
  return t === null ? null : `${t.name} -> ${t.pickCluster()?.config.name ?? 'none'}`;
};

test('an HTTP-like Service port is reached by its authorities with a port, at its own cluster', () => {
  assert.equal(where('web', 8443), 'web.default:8443 -> web.default:8443');
  assert.equal(where('WEB.default', 8443), 'web.default:8443 -> web.default:8443');
  assert.equal(where('web.default.svc', 8443), 'web.default:8443 -> web.default:8443');
  assert.equal(where('api.shop', 80), 'api.shop:80 -> api.shop:80');
  assert.equal(where('web', 80), null);
  assert.equal(where('api', 80), null, 'the bare name of another namespace is not ours');
});

test('a TCP Service port is reached by its four names, through its TCPRoute pick; nothing else is a target', () => {
  assert.equal(where('db', 5432), 'db.default:5432 -> db-v2.default:5432');
  for (const h of ['db.default', 'db.default.svc', 'db.default.svc.cluster.local']) assert.equal(where(h, 5432), 'db.default:5432 -> db-v2.default:5432', h);
  assert.equal(where('db.shop.svc.cluster.local', 5432), 'db.shop:5432 -> db.shop:5432');
  for (const [h, p] of [['db', 5433], ['example.com', 443], ['127.0.0.1', 5432], ['db.other', 5432]] as const) assert.equal(where(h, p), null, `${h}:${p}`);
});
