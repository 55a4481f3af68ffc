import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ClusterConfig, Endpoint, ReportedEndpoint } from '../../model/index.js';
import { EndpointHealthStore } from './endpoint-health-store.js';

const ep = (workload: string, port: number): Endpoint => ({ workload, address: '10.0.0.1', port, appPort: port, proxied: false, identity: '', labels: {} });
const config = { name: 'web.default:80', service: 'web', namespace: 'default', port: 80, protocol: 'HTTP', loadBalancer: 'RoundRobin', connectTimeoutMs: 1000, healthCheck: {} } as unknown as ClusterConfig;
const clusters = [{ config, endpoints: [ep('default/web-a', 8001), ep('default/web-b', 8002)] }];
const reported = (workload: string, port: number, health: ReportedEndpoint['health'], reason: string | null = null, until: string | null = null): ReportedEndpoint =>
  ({ workload, address: `10.0.0.1:${port}`, health, reason, ejectedUntil: until, lastCheck: null });

test('an endpoint is HEALTHY until a caller excludes it; excluded by N of M callers, with who and why', () => {
  const s = new EndpointHealthStore();
  let v = s.serviceHealth('default', 'web', clusters);
  assert.deepEqual(v.endpoints.map((e) => [e.health, e.checked, e.summary]), [['HEALTHY', false, 'not checked'], ['HEALTHY', false, 'not checked']]);
  assert.deepEqual(v.policy, { outlierDetection: false, healthCheck: true });

  const until = new Date(Date.now() + 5000).toISOString();
  assert.ok(s.ingest('default/c1', { clusters: [{ name: 'web.default:80', outlierDetection: true, healthCheck: true, partial: false, endpoints: [reported('default/web-a', 8001, 'EJECTED', 'consecutive_5xx', until), reported('default/web-b', 8002, 'HEALTHY')] }] }));
  assert.ok(s.ingest('default/c2', { clusters: [{ name: 'web.default:80', outlierDetection: false, healthCheck: true, partial: false, endpoints: [reported('default/web-a', 8001, 'HEALTHY'), reported('default/web-b', 8002, 'HEALTHY')] }] }));
  v = s.serviceHealth('default', 'web', clusters);
  const a = v.endpoints[0]!;
  assert.equal(a.health, 'EJECTED');
  assert.deepEqual(a.by, [{ proxy: 'default/c1', health: 'EJECTED', reason: 'consecutive_5xx', until }]);
  assert.equal(a.summary, 'excluded by 1 of 2 callers that check it');
  assert.equal(v.endpoints[1]!.health, 'HEALTHY');
  assert.equal(v.endpoints[1]!.summary, 'checked by 2 callers');
  assert.deepEqual(v.reporting, ['default/c1', 'default/c2']);

  // A tie between an ejection and failing checks reads FAILING_HEALTH_CHECKS.
  s.ingest('default/c2', { clusters: [{ name: 'web.default:80', outlierDetection: false, healthCheck: true, partial: false, endpoints: [reported('default/web-a', 8001, 'FAILING_HEALTH_CHECKS', 'status 503')] }] });
  assert.equal(s.serviceHealth('default', 'web', clusters).endpoints[0]!.health, 'FAILING_HEALTH_CHECKS');

  // A proxy's view goes with it; an empty view withdraws it too.
  s.drop('default/c1');
  s.ingest('default/c2', { clusters: [] });
  assert.equal(s.size, 0);
  assert.ok(s.serviceHealth('default', 'web', clusters).endpoints.every((e) => e.health === 'HEALTHY' && !e.checked));
});

test('a partial view lists only what is excluded: the rest of its cluster counts as checked and HEALTHY', () => {
  const s = new EndpointHealthStore();
  s.ingest('default/c1', { clusters: [{ name: 'web.default:80', outlierDetection: true, healthCheck: false, partial: true, endpoints: [reported('default/web-b', 8002, 'FAILING_HEALTH_CHECKS', 'timeout')] }] });
  const v = s.serviceHealth('default', 'web', clusters);
  assert.deepEqual(v.endpoints.map((e) => [e.health, e.checkedBy, e.excludedBy]), [['HEALTHY', 1, 0], ['FAILING_HEALTH_CHECKS', 1, 1]]);
});

test('malformed reports are refused and counted, the view held stays', () => {
  const s = new EndpointHealthStore();
  s.ingest('default/c1', { clusters: [{ name: 'web.default:80', outlierDetection: true, healthCheck: false, partial: false, endpoints: [] }] });
  assert.equal(s.ingest('default/c1', { clusters: 'no' }), false);
  assert.equal(s.ingest('default/c1', { clusters: [{ name: 'x', endpoints: [{ workload: 'w', address: 'a', health: 'SICK' }] }] }), false);
  assert.equal(s.counters.malformed, 2);
  assert.equal(s.forProxy('default/c1')?.clusters.length, 1);
});

test('a caller that reaches the service through another cluster holding its endpoints (a route backend) counts', () => {
  const v1 = { ...config, name: 'web-v1.default:80', service: 'web-v1', healthCheck: undefined, outlierDetection: {} } as unknown as ClusterConfig;
  const all = [...clusters, { config: v1, endpoints: [ep('default/web-a', 8001)] }];
  const s = new EndpointHealthStore();
  s.ingest('default/c1', { clusters: [{ name: 'web-v1.default:80', outlierDetection: true, healthCheck: false, partial: false, endpoints: [reported('default/web-a', 8001, 'EJECTED', 'consecutive_5xx')] }] });
  const v = s.serviceHealth('default', 'web', all);
  assert.deepEqual(v.policy, { outlierDetection: true, healthCheck: true });
  assert.deepEqual(v.endpoints.map((e) => [e.workload, e.health, e.checkedBy]), [['default/web-a', 'EJECTED', 1], ['default/web-b', 'HEALTHY', 0]]);
});
