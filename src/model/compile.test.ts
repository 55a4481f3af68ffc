import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { compileProxySnapshot, compileWorkload, prepareWorkloadIndex } from './compile.js';
import { formatResourceError } from './errors.js';
import { loadResources } from './load.js';
import type { Resource } from './resources.js';
import type { ProxySnapshot } from './snapshot.js';

const W = 'weft.dev/v1alpha1';
const GW = 'gateway.networking.k8s.io/v1';

type Meta = { namespace?: string; labels?: Record<string, string>; creationTimestamp?: string };
const service = (name: string, spec: object = {}, meta: Meta = {}) => ({
  apiVersion: W,
  kind: 'Service',
  metadata: { name, ...meta },
  spec: { selector: { app: name }, ports: [{ name: 'http', port: 80 }], ...spec },
});
const workload = (name: string, labels: Record<string, string>, spec: object = {}, meta: Meta = {}) => ({
  apiVersion: W,
  kind: 'Workload',
  metadata: { name, labels, ...meta },
  spec: { address: '10.0.0.1', ports: { http: 8080 }, ...spec },
});
const httpRoute = (name: string, spec: object, meta: Meta = {}) => ({ apiVersion: GW, kind: 'HTTPRoute', metadata: { name, ...meta }, spec });
const onEcho = (rules: object[], meta: Meta = {}, name = 'r') => httpRoute(name, { parentRefs: [{ kind: 'Service', name: 'echo' }], rules }, meta);
const client = workload('client', { app: 'client' });

/** Loads resources written as objects (one YAML document each), failing on any load error. */
function load(...objs: object[]): Resource[] {
  const { resources, errors } = loadResources(objs.map((o) => JSON.stringify(o)).join('\n---\n'), 'test.yaml');
  assert.deepEqual(errors.map(formatResourceError), []);
  return resources;
}

function compile(objs: object[], workload = 'client', namespace?: string): { snapshot: ProxySnapshot; errors: string[] } {
  const { snapshot, errors } = compileProxySnapshot(load(...objs), { workload, namespace });
  assert.ok(snapshot);
  return { snapshot, errors: errors.map(formatResourceError) };
}

const vhost = (s: ProxySnapshot, name: string) => s.virtualHosts.find((v) => v.name === name)!;
const cluster = (s: ProxySnapshot, name: string) => s.clusters.find((c) => c.name === name)!;
const routeNames = (s: ProxySnapshot, host = 'echo.default:80') => vhost(s, host).routes.map((r) => r.name);

test('an unknown workload gives no snapshot and an error naming it', () => {
  const result = compileProxySnapshot(load(client), { workload: 'ghost', namespace: 'shop' });
  assert.equal(result.snapshot, null);
  assert.deepEqual(result.errors.map(formatResourceError), ['Workload/shop/ghost: workload not found; the proxy has nothing to stand beside']);
});

describe('workload and inbound', () => {
  test('describes the workload, with defaults', () => {
    const { snapshot } = compile([workload('client', { b: '2', a: '1' }, { address: 'client.local', ports: { metrics: 9090, http: 8080 } })]);
    assert.deepEqual(snapshot.workload, {
      name: 'client',
      namespace: 'default',
      address: 'client.local',
      serviceAccount: 'default',
      identity: 'spiffe://cluster.local/ns/default/sa/default',
      labels: { a: '1', b: '2' },
      ports: { http: 8080, metrics: 9090 },
    });
    assert.deepEqual(snapshot.inbound, {
      appAddress: 'client.local',
      ports: { http: 8080, metrics: 9090 },
      appProtocols: { 8080: 'HTTP', 9090: 'HTTP' },
      defaultPort: 8080,
      mtlsMode: 'STRICT',
      authorization: { policies: [] },
    });
  });

  test('identity and mTLS mode follow the Mesh: trust domain, namespace, service account', () => {
    const mesh = { apiVersion: W, kind: 'Mesh', metadata: { name: 'mesh' }, spec: { trustDomain: 'example.org', mtls: { mode: 'PERMISSIVE' } } };
    const { snapshot } = compile([mesh, workload('api', {}, { serviceAccount: 'api-sa' }, { namespace: 'shop' })], 'api', 'shop');
    assert.equal(snapshot.workload.identity, 'spiffe://example.org/ns/shop/sa/api-sa');
    assert.equal(snapshot.inbound.mtlsMode, 'PERMISSIVE');
    const disabled = compile([{ ...mesh, spec: { mtls: { mode: 'DISABLED' } } }, client]).snapshot;
    assert.equal(disabled.workload.identity, 'spiffe://cluster.local/ns/default/sa/default');
    assert.equal(disabled.inbound.mtlsMode, 'DISABLED');
  });

  test('telemetry follows the Mesh: absent when off, sampling defaults, Sampled access logs', () => {
    assert.equal(compile([client]).snapshot.telemetry, undefined);
    const mesh = (spec: object) => ({ apiVersion: W, kind: 'Mesh', metadata: { name: 'mesh' }, spec });
    assert.equal(compile([mesh({ accessLog: { mode: 'Off' } }), client]).snapshot.telemetry, undefined);
    assert.deepEqual(compile([mesh({ tracing: {} }), client]).snapshot.telemetry, { tracing: { samplingPercent: 1, otlpEndpoint: null }, accessLog: null });
    assert.deepEqual(compile([mesh({ tracing: { sampling: 100, otlp: { endpoint: 'http://c:4318/v1/traces' } }, accessLog: { mode: 'Sampled', sampling: 50, path: '/tmp/{workload}.log' } }), client]).snapshot.telemetry, {
      tracing: { samplingPercent: 100, otlpEndpoint: 'http://c:4318/v1/traces' },
      accessLog: { samplingPercent: 50, path: '/tmp/{workload}.log' },
    });
    assert.deepEqual(compile([mesh({ accessLog: { mode: 'On' } }), client]).snapshot.telemetry, { tracing: null, accessLog: { samplingPercent: 100, path: null } });
    // A change of the settings changes the snapshot's version, so proxies get it.
    assert.notEqual(compile([mesh({ tracing: { sampling: 1 } }), client]).snapshot.version, compile([mesh({ tracing: { sampling: 2 } }), client]).snapshot.version);
  });

  test('defaultPort: the only port, else the one named http, else none', () => {
    const defaultPort = (ports: object) => compile([workload('client', {}, { ports })]).snapshot.inbound.defaultPort;
    assert.equal(defaultPort({ grpc: 7000 }), 7000);
    assert.equal(defaultPort({ grpc: 7000, http: 8000 }), 8000);
    assert.equal(defaultPort({ grpc: 7000, admin: 8000 }), null);
    assert.equal(defaultPort({}), null);
  });
});

describe('clusters and endpoints', () => {
  test('endpoints are the workloads of the namespace whose labels match the selector', () => {
    const { snapshot } = compile([
      client,
      service('echo', { selector: { app: 'echo', tier: 'web' } }),
      workload('echo-b', { app: 'echo', tier: 'web', extra: 'x' }, { address: '10.0.0.2' }),
      workload('echo-a', { app: 'echo', tier: 'web' }, { address: '10.0.0.3', ports: { http: 8081 } }),
      workload('echo-c', { app: 'echo' }),
      workload('echo-d', { app: 'echo', tier: 'web' }, {}, { namespace: 'shop' }),
    ]);
    assert.deepEqual(cluster(snapshot, 'echo.default:80'), {
      name: 'echo.default:80',
      service: 'echo',
      namespace: 'default',
      port: 80,
      protocol: 'HTTP',
      loadBalancer: 'LeastRequest',
      connectTimeoutMs: 5000,
      endpoints: [
        { workload: 'default/echo-a', address: '10.0.0.3', port: 8081, appPort: 8081, proxied: false, identity: 'spiffe://cluster.local/ns/default/sa/default', labels: { app: 'echo', tier: 'web' } },
        { workload: 'default/echo-b', address: '10.0.0.2', port: 8080, appPort: 8080, proxied: false, identity: 'spiffe://cluster.local/ns/default/sa/default', labels: { app: 'echo', extra: 'x', tier: 'web' } },
      ],
    });
  });

  test('targetPort: the port name by default, a named workload port, or a number as is', () => {
    const { snapshot } = compile([
      client,
      service('echo', {
        ports: [
          { name: 'http', port: 80 },
          { name: 'admin', port: 81, targetPort: 'mgmt' },
          { name: 'raw', port: 82, protocol: 'TCP', targetPort: 7777 },
        ],
      }),
      workload('echo-1', { app: 'echo' }, { ports: { http: 8080, mgmt: 9000 } }),
      workload('echo-2', { app: 'echo' }, { ports: { web: 8080 } }),
    ]);
    const ports = (name: string) => cluster(snapshot, name).endpoints.map((e) => `${e.workload}:${e.appPort}`);
    assert.deepEqual(ports('echo.default:80'), ['default/echo-1:8080']);
    assert.deepEqual(ports('echo.default:81'), ['default/echo-1:9000']);
    assert.deepEqual(ports('echo.default:82'), ['default/echo-1:7777', 'default/echo-2:7777']);
    assert.equal(cluster(snapshot, 'echo.default:82').protocol, 'TCP');
  });

  test('a workload with a proxy is dialled on its inbound port', () => {
    const { snapshot } = compile([client, service('echo'), workload('echo-1', { app: 'echo' }, { proxy: { inboundPort: 15006 } })]);
    assert.deepEqual(cluster(snapshot, 'echo.default:80').endpoints.map(({ port, appPort, proxied }) => ({ port, appPort, proxied })), [
      { port: 15006, appPort: 8080, proxied: true },
    ]);
  });

  test("every endpoint carries its workload's SPIFFE ID, in the Mesh's trust domain", () => {
    const mesh = { apiVersion: W, kind: 'Mesh', metadata: { name: 'mesh' }, spec: { trustDomain: 'prod.example' } };
    const objs = [client, service('echo', {}, { namespace: 'shop' }), workload('echo-1', { app: 'echo' }, { serviceAccount: 'echo' }, { namespace: 'shop' }), workload('echo-2', { app: 'echo' }, {}, { namespace: 'shop' })];
    const identities = (s: ProxySnapshot) => cluster(s, 'echo.shop:80').endpoints.map((e) => e.identity);
    assert.deepEqual(identities(compile(objs).snapshot), ['spiffe://cluster.local/ns/shop/sa/echo', 'spiffe://cluster.local/ns/shop/sa/default']);
    assert.deepEqual(identities(compile([mesh, ...objs]).snapshot), ['spiffe://prod.example/ns/shop/sa/echo', 'spiffe://prod.example/ns/shop/sa/default']);
  });

  test('every service gets a cluster per port, sorted by namespace, name and port', () => {
    const { snapshot } = compile([
      client,
      service('b', { ports: [{ name: 'web', port: 90 }, { name: 'http', port: 80 }] }),
      service('a', {}, { namespace: 'shop' }),
      service('a'),
    ]);
    assert.deepEqual(snapshot.clusters.map((c) => c.name), ['a.default:80', 'b.default:80', 'b.default:90', 'a.shop:80']);
  });
});

describe('BackendPolicy and Mesh defaults', () => {
  const policy = (name: string, spec: object, meta: Meta = {}) => ({
    apiVersion: W,
    kind: 'BackendPolicy',
    metadata: { name, ...meta },
    spec: { targetRefs: [{ kind: 'Service', name: 'echo' }], ...spec },
  });
  const mesh = { apiVersion: W, kind: 'Mesh', metadata: { name: 'mesh' }, spec: { defaults: { loadBalancer: 'RoundRobin', connectTimeout: '2s' } } };
  const settings = (...objs: object[]) => {
    const s = compile([client, service('echo'), service('other'), ...objs]).snapshot;
    return ['echo.default:80', 'other.default:80'].map((n) => `${cluster(s, n).loadBalancer}/${cluster(s, n).connectTimeoutMs}`);
  };

  test('defaults: LeastRequest and 5s', () => {
    assert.deepEqual(settings(), ['LeastRequest/5000', 'LeastRequest/5000']);
  });

  test('Mesh defaults apply to every cluster', () => {
    assert.deepEqual(settings(mesh), ['RoundRobin/2000', 'RoundRobin/2000']);
  });

  test('a BackendPolicy overrides them for its target only', () => {
    assert.deepEqual(settings(mesh, policy('p', { loadBalancer: { type: 'LeastRequest' }, connectTimeout: '250ms' })), ['LeastRequest/250', 'RoundRobin/2000']);
    assert.deepEqual(settings(mesh, policy('p', { connectTimeout: '1s' })), ['RoundRobin/1000', 'RoundRobin/2000'], 'unset fields fall back to the Mesh');
  });

  test('of two policies, the oldest decides each field it sets', () => {
    const older = policy('z', { connectTimeout: '1s' }, { creationTimestamp: '2024-01-01T00:00:00Z' });
    const newer = policy('a', { connectTimeout: '3s', loadBalancer: { type: 'RoundRobin' } }, { creationTimestamp: '2024-06-01T00:00:00Z' });
    assert.deepEqual(settings(newer, older), ['RoundRobin/1000', 'LeastRequest/5000']);
  });

  test('of two Meshes (from separate loads) the oldest applies and the other is reported', () => {
    const other = { ...mesh, metadata: { name: 'a' }, spec: { defaults: { connectTimeout: '9s' } } };
    const resources = [...load(client, service('echo'), mesh), ...loadResources(JSON.stringify(other), 'other.yaml').resources];
    const { snapshot, errors } = compileProxySnapshot(resources, { workload: 'client' });
    assert.equal(cluster(snapshot!, 'echo.default:80').connectTimeoutMs, 9000, 'without timestamps, the first by name');
    assert.deepEqual(errors.map(formatResourceError), ['test.yaml:5 Mesh/mesh: ignored: only one Mesh is allowed; Mesh/a applies (the oldest, then first by name)']);
  });

  test('retryBudget: absent unless a policy sets it; unset fields take Linkerd\'s 20 % + 10/s', () => {
    const budgets = (...objs: object[]) => {
      const s = compile([client, service('echo'), service('other'), ...objs]).snapshot;
      return ['echo.default:80', 'other.default:80'].map((n) => cluster(s, n).retryBudget);
    };
    assert.deepEqual(budgets(), [undefined, undefined]);
    assert.deepEqual(budgets(policy('p', { retryBudget: { percent: 50 } })), [{ percent: 50, minRetriesPerSecond: 10 }, undefined]);
    assert.deepEqual(budgets(policy('p', { retryBudget: { percent: 0, minRetriesPerSecond: 0 } })), [{ percent: 0, minRetriesPerSecond: 0 }, undefined]);
  });

  test('circuitBreaker: absent unless a policy sets it; unset fields take Envoy\'s 1024; the oldest policy setting it decides', () => {
    const breakers = (...objs: object[]) => {
      const s = compile([client, service('echo'), service('other'), ...objs]).snapshot;
      return ['echo.default:80', 'other.default:80'].map((n) => cluster(s, n).circuitBreaker);
    };
    assert.deepEqual(breakers(), [undefined, undefined]);
    assert.deepEqual(breakers(policy('p', { circuitBreaker: { maxRequests: 5 } })), [{ maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 5, maxRetries: 1024 }, undefined]);
    assert.deepEqual(breakers(policy('p', { circuitBreaker: { maxConnections: 1, maxPendingRequests: 2, maxRequests: 3, maxRetries: 4 } })), [{ maxConnections: 1, maxPendingRequests: 2, maxRequests: 3, maxRetries: 4 }, undefined]);
  });

  test('outlierDetection: absent unless a policy sets it; Envoy\'s defaults; the oldest policy setting it decides', () => {
    const outliers = (...objs: object[]) => {
      const s = compile([client, service('echo'), service('other'), ...objs]).snapshot;
      return ['echo.default:80', 'other.default:80'].map((n) => cluster(s, n).outlierDetection);
    };
    assert.deepEqual(outliers(), [undefined, undefined]);
    const defaults = { consecutive5xx: 5, consecutiveGatewayErrors: 0, consecutiveConnectFailures: 5, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 10, successRate: null };
    assert.deepEqual(outliers(policy('p', { outlierDetection: {} })), [defaults, undefined]);
    assert.deepEqual(outliers(policy('p', { outlierDetection: { consecutive5xx: 3, baseEjectionTime: '1s', maxEjectionPercent: 50, successRate: { requestVolume: 20 } } })), [
      { ...defaults, consecutive5xx: 3, baseEjectionTimeMs: 1000, maxEjectionPercent: 50, successRate: { minimumHosts: 5, requestVolume: 20, stdevFactor: 1900 } },
      undefined,
    ]);
    assert.equal(outliers(policy('p', { outlierDetection: { baseEjectionTime: '10m' } }))[0]!.maxEjectionTimeMs, 600_000, 'an unset cap is never below the base');
    const older = policy('z', { outlierDetection: { consecutive5xx: 7 } }, { creationTimestamp: '2024-01-01T00:00:00Z' });
    const newer = policy('a', { outlierDetection: { consecutive5xx: 2 }, connectTimeout: '1s' }, { creationTimestamp: '2024-06-01T00:00:00Z' });
    assert.equal(outliers(newer, older)[0]!.consecutive5xx, 7);
  });

  test('healthCheck: absent unless a policy sets it; defaults 5s / 1s / 1 / 2', () => {
    const checks = (...objs: object[]) => {
      const s = compile([client, service('echo'), service('other'), ...objs]).snapshot;
      return ['echo.default:80', 'other.default:80'].map((n) => cluster(s, n).healthCheck);
    };
    assert.deepEqual(checks(), [undefined, undefined]);
    assert.deepEqual(checks(policy('p', { healthCheck: { tcp: {} } })), [{ probe: { type: 'tcp' }, intervalMs: 5000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 2 }, undefined]);
    assert.deepEqual(checks(policy('p', { healthCheck: { http: { path: '/healthz', expectedStatuses: [204] }, interval: '1s', timeout: '200ms', healthyThreshold: 2, unhealthyThreshold: 3 } })), [
      { probe: { type: 'http', path: '/healthz', expectedStatuses: [204] }, intervalMs: 1000, timeoutMs: 200, healthyThreshold: 2, unhealthyThreshold: 3 },
      undefined,
    ]);
  });

  test('a policy in another namespace does not apply; a missing target is reported', () => {
    const { snapshot, errors } = compile([client, service('echo'), policy('p', { connectTimeout: '1s' }, { namespace: 'shop' })]);
    assert.equal(cluster(snapshot, 'echo.default:80').connectTimeoutMs, 5000);
    assert.deepEqual(errors, ['test.yaml:5 BackendPolicy/shop/p: spec.targetRefs[0]: Service shop/echo not found']);
  });
});

describe('load balancing', () => {
  const policy = (spec: object, name = 'p') => ({ apiVersion: W, kind: 'BackendPolicy', metadata: { name }, spec: { targetRefs: [{ kind: 'Service', name: 'echo' }], ...spec } });
  const echo = (...objs: object[]) => cluster(compile([client, service('echo'), workload('echo-1', { app: 'echo' }), ...objs]).snapshot, 'echo.default:80');
  const lbOf = (c: ReturnType<typeof echo>) => ({ loadBalancer: c.loadBalancer, ewmaDecayMs: c.ewmaDecayMs, hash: c.hash, locality: c.locality });

  test('each balancer with its options, defaults filled in; other types carry none', () => {
    assert.deepEqual(lbOf(echo(policy({ loadBalancer: { type: 'PeakEWMA' } }))), { loadBalancer: 'PeakEWMA', ewmaDecayMs: 10_000, hash: undefined, locality: undefined });
    assert.deepEqual(lbOf(echo(policy({ loadBalancer: { type: 'PeakEWMA', decay: '2s' } }))).ewmaDecayMs, 2000);
    assert.deepEqual(echo(policy({ loadBalancer: { type: 'RingHash', hashOn: { header: { name: 'X-User' } } } })).hash, { on: { header: { name: 'x-user' } }, size: 1024 });
    assert.deepEqual(echo(policy({ loadBalancer: { type: 'RingHash', minimumRingSize: 64, hashOn: { sourceAddress: true } } })).hash, { on: { sourceAddress: true }, size: 64 });
    assert.deepEqual(echo(policy({ loadBalancer: { type: 'Maglev', hashOn: { cookie: { name: 'sid' } } } })).hash, { on: { cookie: { name: 'sid' } }, size: 65537 });
    assert.deepEqual(lbOf(echo(policy({ loadBalancer: { type: 'RoundRobin' } }))), { loadBalancer: 'RoundRobin', ewmaDecayMs: undefined, hash: undefined, locality: undefined });
  });

  test('a Mesh default PeakEWMA gets the default decay', () => {
    const mesh = { apiVersion: W, kind: 'Mesh', metadata: { name: 'mesh' }, spec: { defaults: { loadBalancer: 'PeakEWMA' } } };
    assert.deepEqual(lbOf(echo(mesh)), { loadBalancer: 'PeakEWMA', ewmaDecayMs: 10_000, hash: undefined, locality: undefined });
  });

  test('locality as a BackendPolicy sets it (absent otherwise: the proxy decides from its own labels)', () => {
    assert.deepEqual(echo(policy({ locality: { enabled: false } })).locality, { enabled: false, overprovisioningFactor: 140 });
    assert.deepEqual(echo(policy({ locality: { overprovisioningFactor: 200 } })).locality, { enabled: true, overprovisioningFactor: 200 });
  });

  test('Workload weight and topology labels reach the endpoints; the own workload keeps its labels', () => {
    const zone = { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'a' };
    const { snapshot } = compile([workload('client', { app: 'client', ...zone }), service('echo'), workload('echo-1', { app: 'echo', ...zone }, { weight: 3 }), workload('echo-2', { app: 'echo' }, { address: '10.0.0.2' })]);
    assert.deepEqual(cluster(snapshot, 'echo.default:80').endpoints.map((e) => [e.workload, e.weight, e.labels['topology.kubernetes.io/zone']]), [
      ['default/echo-1', 3, 'a'],
      ['default/echo-2', undefined, undefined],
    ]);
    assert.equal(snapshot.workload.labels['topology.kubernetes.io/zone'], 'a');
  });
});

describe('AuthorizationPolicy', () => {
  const authz = (name: string, spec: object, meta: Meta = {}) => ({
    apiVersion: W,
    kind: 'AuthorizationPolicy',
    metadata: { name, ...meta },
    spec: { targetRefs: [{ kind: 'Service', name: 'reviews' }], ...spec },
  });
  // Service port 80 → the workload's port named `http`; 81 → named `admin` via targetPort; 82 → 7000 as is.
  const reviews = service('reviews', {
    ports: [
      { name: 'http', port: 80 },
      { name: 'mgmt', port: 81, targetPort: 'admin' },
      { name: 'raw', port: 82, protocol: 'TCP', targetPort: 7000 },
    ],
  });
  const reviews1 = workload('reviews-1', { app: 'reviews' }, { ports: { http: 9080, admin: 9090 } });
  const table = (objs: object[], name = 'reviews-1', namespace?: string) => {
    const { snapshot, errors } = compile(objs, name, namespace);
    return { policies: snapshot.inbound.authorization.policies, errors };
  };

  test('compiles to the app ports of the workload, by port name and by number, with every rule field', () => {
    const policy = authz('p', {
      rules: [
        {
          from: [{ identities: ['spiffe://cluster.local/ns/default/sa/catalog'], namespaces: ['team-*'] }, { namespaces: ['default'] }],
          to: [{ ports: [81], methods: ['GET'], paths: ['/reviews/*'] }, { paths: ['*.json'] }],
          when: [{ header: 'X-User', values: ['alice', 'b*'] }, { header: 'x-team', notValues: ['red'] }],
        },
        {},
      ],
    });
    const { policies, errors } = table([reviews, reviews1, policy]);
    assert.deepEqual(errors, []);
    assert.deepEqual(policies, [
      {
        name: 'default/p',
        action: 'ALLOW',
        appPorts: [7000, 9080, 9090],
        rules: [
          {
            from: [
              { identities: ['spiffe://cluster.local/ns/default/sa/catalog'], namespaces: ['team-*'] },
              { identities: null, namespaces: ['default'] },
            ],
            to: [
              { appPorts: [9090], methods: ['GET'], paths: ['/reviews/*'] },
              { appPorts: null, methods: null, paths: ['*.json'] },
            ],
            when: [
              { header: 'x-user', values: ['alice', 'b*'], notValues: null },
              { header: 'x-team', values: null, notValues: ['red'] },
            ],
          },
          { from: null, to: null, when: [] },
        ],
      },
    ]);
  });

  test('a Service port whose targetPort the workload lacks covers nothing of it', () => {
    const { policies } = table([reviews, workload('reviews-1', { app: 'reviews' }, { ports: { http: 9080 } }), authz('p', { rules: [{ to: [{ ports: [81] }] }] })]);
    assert.deepEqual(policies.map((p) => [p.appPorts, p.rules[0]!.to![0]!.appPorts]), [[[7000, 9080], []]], 'port 81 leads nowhere on this workload: the entry matches nothing');
  });

  test('no rules match nothing; the action defaults to ALLOW', () => {
    const { policies } = table([reviews, reviews1, authz('p', {}), authz('q', { action: 'DENY', rules: [] })]);
    assert.deepEqual(policies.map((p) => `${p.name} ${p.action} ${p.rules.length}`), ['default/p ALLOW 0', 'default/q DENY 0']);
  });

  test('a workload that no targeted Service selects gets no policy', () => {
    const objs = [reviews, reviews1, service('ratings'), workload('ratings-1', { app: 'ratings' }), authz('p', {}), client];
    assert.deepEqual(table(objs, 'ratings-1').policies, []);
    assert.deepEqual(table(objs, 'client').policies, []);
    assert.equal(table(objs).policies.length, 1);
  });

  test('targetRefs resolve in the policy’s own namespace', () => {
    const shop = [service('reviews', {}, { namespace: 'shop' }), workload('reviews-1', { app: 'reviews' }, {}, { namespace: 'shop' })];
    assert.deepEqual(table([...shop, reviews, authz('p', {})], 'reviews-1', 'shop').policies, [], 'a policy of default does not reach shop/reviews');
    assert.deepEqual(table([...shop, authz('p', {}, { namespace: 'shop' })], 'reviews-1', 'shop').policies.map((p) => p.name), ['shop/p']);
  });

  test('ordered by age, then by namespace/name, whatever the action', () => {
    const objs = [
      reviews,
      reviews1,
      authz('b-new', {}),
      authz('a-old', { action: 'DENY' }, { creationTimestamp: '2024-01-01T00:00:00Z' }),
      authz('c-mid', { action: 'DENY' }, { creationTimestamp: '2024-06-01T00:00:00Z' }),
      authz('a-new', {}),
    ];
    assert.deepEqual(table(objs).policies.map((p) => p.name), ['default/a-old', 'default/c-mid', 'default/a-new', 'default/b-new']);
  });

  test('a policy on two Services that select the workload applies once, over the ports of both', () => {
    const admin = service('reviews-admin', { selector: { app: 'reviews' }, ports: [{ name: 'admin', port: 8443 }] });
    const policy = authz('p', { targetRefs: [{ kind: 'Service', name: 'reviews-admin' }, { kind: 'Service', name: 'reviews' }], rules: [{ to: [{ ports: [8443] }, { ports: [80] }] }] });
    const reviewsHttp = service('reviews');
    const { policies, errors } = table([reviewsHttp, admin, reviews1, policy]);
    assert.deepEqual(errors, [], 'each port belongs to one of the targets');
    assert.deepEqual(policies.map((p) => [p.appPorts, p.rules[0]!.to!.map((t) => t.appPorts)]), [[[9080, 9090], [[9090], [9080]]]]);
  });

  test('a missing Service is reported; the policy still applies through its other targets', () => {
    const policy = authz('p', { targetRefs: [{ kind: 'Service', name: 'ghost' }, { group: '', kind: 'Service', name: 'reviews' }] });
    const { policies, errors } = table([reviews, reviews1, policy]);
    assert.deepEqual(errors, ['test.yaml:5 AuthorizationPolicy/p: spec.targetRefs[0]: Service ghost not found']);
    assert.deepEqual(policies.map((p) => p.name), ['default/p']);
    const only = table([reviews, reviews1, authz('p', { targetRefs: [{ kind: 'Service', name: 'ghost' }], rules: [{ to: [{ ports: [80] }] }] })]);
    assert.deepEqual(only.errors, ['test.yaml:5 AuthorizationPolicy/p: spec.targetRefs[0]: Service ghost not found'], 'no port problems without a target to check against');
    assert.deepEqual(only.policies, []);
  });

  test('a to.ports value the Service does not have is reported, and fails closed: ignored in an ALLOW entry, the port condition dropped in a DENY entry', () => {
    const rules = [{ to: [{ ports: [80, 9080] }, { ports: [9080], methods: ['GET'] }] }];
    const { policies, errors } = table([reviews, reviews1, authz('a', { rules }), authz('d', { action: 'DENY', rules }, { creationTimestamp: '2024-01-01T00:00:00Z' })]);
    assert.deepEqual(errors, [
      "test.yaml:7 AuthorizationPolicy/d: spec.rules[0].to[0].ports[1]: Service reviews has no port 9080 (ports are the Service's, not the app's); this DENY entry therefore applies to every port, to fail closed",
      "test.yaml:7 AuthorizationPolicy/d: spec.rules[0].to[1].ports[0]: Service reviews has no port 9080 (ports are the Service's, not the app's); this DENY entry therefore applies to every port, to fail closed",
      "test.yaml:5 AuthorizationPolicy/a: spec.rules[0].to[0].ports[1]: Service reviews has no port 9080 (ports are the Service's, not the app's); the value is ignored (an entry left without ports matches nothing)",
      "test.yaml:5 AuthorizationPolicy/a: spec.rules[0].to[1].ports[0]: Service reviews has no port 9080 (ports are the Service's, not the app's); the value is ignored (an entry left without ports matches nothing)",
    ]);
    assert.deepEqual(policies.map((p) => [p.name, p.rules[0]!.to!.map((t) => t.appPorts)]), [
      ['default/d', [null, null]],
      ['default/a', [[9080], []]],
    ]);
  });

  test('with several targets, a port is a problem only when none of them has it', () => {
    const policy = authz('p', { targetRefs: [{ kind: 'Service', name: 'reviews' }, { kind: 'Service', name: 'other' }], rules: [{ to: [{ ports: [83, 5432] }] }] });
    const { errors } = table([reviews, service('other', { ports: [{ name: 'pg', port: 5432 }] }), reviews1, policy]);
    assert.deepEqual(errors, ["test.yaml:7 AuthorizationPolicy/p: spec.rules[0].to[0].ports[0]: none of the targeted Services (reviews, other) has port 83 (ports are the Service's, not the app's); the value is ignored (an entry left without ports matches nothing)"]);
  });

  test('the workload index version changes with what the part depends on, not with other workloads', () => {
    const base = load(reviews, reviews1, client, authz('p', {}));
    const version = prepareWorkloadIndex(base).version;
    assert.equal(prepareWorkloadIndex([...base, ...load(workload('reviews-2', { app: 'reviews' }))]).version, version, 'endpoint churn');
    assert.equal(prepareWorkloadIndex([...base, ...load(service('unguarded', {}, { namespace: 'far' }))]).version, version, 'a Service no policy targets, in an all-HTTP namespace');
    // reviews has a TCP port, so the Services of its namespace decide app port protocols.
    assert.notEqual(prepareWorkloadIndex([...base, ...load(service('unguarded'))]).version, version, 'a Service beside one with a non-HTTP port');
    assert.notEqual(prepareWorkloadIndex(load(reviews, reviews1, client, authz('p', { action: 'DENY' }))).version, version, 'a policy change');
    assert.notEqual(prepareWorkloadIndex(load(service('reviews'), reviews1, client, authz('p', {}))).version, version, 'a targeted Service change');
    assert.notEqual(prepareWorkloadIndex([...base, ...load({ apiVersion: W, kind: 'Mesh', metadata: { name: 'm' }, spec: { mtls: { mode: 'PERMISSIVE' } } })]).version, version, 'the Mesh');
    const self = base.find((r) => r.metadata.name === 'reviews-1' && r.kind === 'Workload')!;
    assert.equal(compileWorkload(self as never, prepareWorkloadIndex(base)).inbound.authorization.policies.length, 1);
  });
});

describe('virtual hosts and domains', () => {
  const domains = (objs: object[], host: string, namespace?: string) => vhost(compile(objs, 'client', namespace).snapshot, host).domains;

  test('port 80: every name with and without the port', () => {
    assert.deepEqual(domains([client, service('Echo'.toLowerCase())], 'echo.default:80'), [
      'echo',
      'echo:80',
      'echo.default',
      'echo.default:80',
      'echo.default.svc',
      'echo.default.svc:80',
      'echo.default.svc.cluster.local',
      'echo.default.svc.cluster.local:80',
    ]);
  });

  test('the only HTTP-like port also answers without a port', () => {
    const objs = [client, service('echo', { ports: [{ name: 'http', port: 8080 }, { name: 'raw', port: 9000, protocol: 'TCP' }] })];
    assert.deepEqual(domains(objs, 'echo.default:8080').slice(0, 3), ['echo', 'echo:8080', 'echo.default']);
  });

  test('with several HTTP-like ports, only port 80 answers without a port', () => {
    const objs = [client, service('echo', { ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090, protocol: 'GRPC' }, { name: 'h2', port: 8443, protocol: 'HTTP2' }] })];
    assert.deepEqual(domains(objs, 'echo.default:9090'), ['echo:9090', 'echo.default:9090', 'echo.default.svc:9090', 'echo.default.svc.cluster.local:9090']);
    assert.equal(domains(objs, 'echo.default:80').length, 8);
    const s = compile(objs).snapshot;
    assert.deepEqual(s.virtualHosts.map((v) => `${v.name} ${v.protocol}`), ['echo.default:80 HTTP', 'echo.default:8443 HTTP2', 'echo.default:9090 GRPC']);
    // Port 80 declares no protocol: it is also a TCP service, detected on `--upstream` ports; the declared ports are not.
    assert.deepEqual(s.tcpServices.map((t) => `${t.name} ${t.detect}`), ['echo.default:80 true']);
  });

  test('the bare name only resolves in the client namespace', () => {
    const objs = [client, service('echo', {}, { namespace: 'shop' }), workload('client', {}, {}, { namespace: 'shop' })];
    assert.deepEqual(domains(objs, 'echo.shop:80').slice(0, 2), ['echo.shop', 'echo.shop:80']);
    assert.deepEqual(domains(objs, 'echo.shop:80', 'shop').slice(0, 2), ['echo', 'echo:80']);
  });
});

describe('routes', () => {
  const backend = { name: 'echo', port: 80 };

  test('without an HTTPRoute, one implicit route to the service itself', () => {
    const { snapshot } = compile([client, service('echo')]);
    assert.deepEqual(vhost(snapshot, 'echo.default:80').routes, [
      {
        name: 'default/echo/default',
        routeRef: 'default',
        match: { path: { type: 'PathPrefix', value: '/' }, method: null, headers: [], queryParams: [] },
        requestFilters: [],
        responseFilters: [],
        action: { type: 'forward', backends: [{ cluster: 'echo.default:80', weight: 1 }] },
        timeouts: { requestMs: 0, backendRequestMs: 0 },
      },
    ]);
  });

  test('retry: absent without one; with one, defaults filled in and codes sorted', () => {
    const routes = (retry: object | undefined) => vhost(compile([client, service('echo'), onEcho([{ backendRefs: [backend], ...(retry && { retry }) }])]).snapshot, 'echo.default:80').routes;
    assert.equal('retry' in routes(undefined)[0]!, false);
    assert.deepEqual(routes({})[0]!.retry, { codes: [], attempts: 1, backoffMs: 25, onConnectFailure: true, allowNonIdempotent: false });
    assert.deepEqual(routes({ codes: [503, 502], attempts: 3, backoff: '100ms', onConnectFailure: false, allowNonIdempotent: true })[0]!.retry, {
      codes: [502, 503],
      attempts: 3,
      backoffMs: 100,
      onConnectFailure: false,
      allowNonIdempotent: true,
    });
  });

  test('a parentRef without a port attaches to every HTTP-like port; with a port, to that port only', () => {
    const svc = service('echo', { ports: [{ name: 'http', port: 80 }, { name: 'alt', port: 81, targetPort: 'http' }] });
    const all = compile([client, svc, onEcho([{ backendRefs: [backend] }])]).snapshot;
    assert.deepEqual([routeNames(all), routeNames(all, 'echo.default:81')], [['default/r/rule/0/match/0'], ['default/r/rule/0/match/0']]);
    const one = compile([client, svc, httpRoute('r', { parentRefs: [{ kind: 'Service', name: 'echo', port: 81 }], rules: [{ backendRefs: [backend] }] })]).snapshot;
    assert.deepEqual([routeNames(one), routeNames(one, 'echo.default:81')], [['default/echo/default'], ['default/r/rule/0/match/0']]);
  });

  test('a rule with N matches yields N routes; every field is compiled', () => {
    const rule = {
      matches: [
        { path: { type: 'Exact', value: '/a' }, method: 'POST', headers: [{ name: 'X-Env', value: 'prod' }], queryParams: [{ type: 'RegularExpression', name: 'Debug', value: '^1$' }] },
        { path: { value: '/b' } },
      ],
      filters: [
        { type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['Server'] } },
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: 'A' }], add: [{ name: 'X-B', value: 'b' }], remove: ['X-C'] } },
        { type: 'URLRewrite', urlRewrite: { hostname: 'other.example' } },
      ],
      backendRefs: [backend],
      timeouts: { request: '10s', backendRequest: '2s' },
    };
    const routes = vhost(compile([client, service('echo'), onEcho([rule])]).snapshot, 'echo.default:80').routes;
    assert.deepEqual(routes[0], {
      name: 'default/r/rule/0/match/0',
      routeRef: 'default/r',
      match: { path: { type: 'Exact', value: '/a' }, method: 'POST', headers: [{ name: 'x-env', type: 'Exact', value: 'prod' }], queryParams: [{ name: 'Debug', type: 'RegularExpression', value: '^1$' }] },
      requestFilters: [
        { type: 'RequestHeaderModifier', modifier: { set: [{ name: 'x-a', value: 'A' }], add: [{ name: 'x-b', value: 'b' }], remove: ['x-c'] } },
        { type: 'URLRewrite', hostname: 'other.example', path: null },
      ],
      responseFilters: [{ set: [], add: [], remove: ['server'] }],
      action: { type: 'forward', backends: [{ cluster: 'echo.default:80', weight: 1 }] },
      timeouts: { requestMs: 10_000, backendRequestMs: 2000 },
    });
    assert.equal(routes[1]!.name, 'default/r/rule/0/match/1');
    assert.deepEqual(routes[1]!.match, { path: { type: 'PathPrefix', value: '/b' }, method: null, headers: [], queryParams: [] });
  });

  test('ReplacePrefixMatch records the prefix of each match', () => {
    const rewrite = { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } };
    const routes = vhost(compile([client, service('echo'), onEcho([{ matches: [{ path: { value: '/v1/api' } }, { path: { value: '/old' } }], filters: [rewrite], backendRefs: [backend] }])]).snapshot, 'echo.default:80').routes;
    assert.deepEqual(
      routes.map((r) => r.requestFilters[0]),
      [
        { type: 'URLRewrite', hostname: null, path: { type: 'ReplacePrefixMatch', prefix: '/v1/api', value: '/v2' } },
        { type: 'URLRewrite', hostname: null, path: { type: 'ReplacePrefixMatch', prefix: '/old', value: '/v2' } },
      ],
    );
  });

  test('redirects, with 302 by default', () => {
    const redirect = (r: object) => ({ filters: [{ type: 'RequestRedirect', requestRedirect: r }] });
    const routes = vhost(
      compile([
        client,
        service('echo'),
        onEcho([
          { matches: [{ path: { value: '/old' } }], ...redirect({ path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } }) },
          { matches: [{ path: { value: '/' } }], ...redirect({ scheme: 'https', hostname: 'secure.example', port: 8443, statusCode: 301, path: { type: 'ReplaceFullPath', replaceFullPath: '/' } }) },
        ]),
      ]).snapshot,
      'echo.default:80',
    ).routes;
    assert.deepEqual(
      routes.map((r) => r.action),
      [
        { type: 'redirect', redirect: { scheme: null, hostname: null, port: null, path: { type: 'ReplacePrefixMatch', prefix: '/old', value: '/new' }, statusCode: 302 } },
        { type: 'redirect', redirect: { scheme: 'https', hostname: 'secure.example', port: 8443, path: { type: 'ReplaceFullPath', value: '/' }, statusCode: 301 } },
      ],
    );
  });

  test('weight 0 is kept; a rule without backends forwards to none', () => {
    const routes = vhost(
      compile([client, service('echo'), service('b'), onEcho([{ matches: [{ path: { value: '/x' } }], backendRefs: [{ ...backend, weight: 0 }, { name: 'b', port: 80, weight: 3 }] }, {}])]).snapshot,
      'echo.default:80',
    ).routes;
    assert.deepEqual(routes.map((r) => r.action), [
      { type: 'forward', backends: [{ cluster: 'echo.default:80', weight: 0 }, { cluster: 'b.default:80', weight: 3 }] },
      { type: 'forward', backends: [] },
    ]);
  });

  test('an HTTPRoute without rules gets the API default: match everything, forward to none', () => {
    const routes = vhost(compile([client, service('echo'), httpRoute('r', { parentRefs: [{ kind: 'Service', name: 'echo' }] })]).snapshot, 'echo.default:80').routes;
    assert.deepEqual(routes.map((r) => [r.name, r.match.path, r.action]), [['default/r/rule/0/match/0', { type: 'PathPrefix', value: '/' }, { type: 'forward', backends: [] }]]);
  });

  test('an invalid backend gives a null cluster and an error with its line; the rest compiles', () => {
    const text = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: client }
spec: { address: 10.0.0.9, ports: { http: 8080 } }
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec: { selector: { app: echo }, ports: [{ name: http, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [{ kind: Service, name: echo }]
  rules:
  - backendRefs:
    - name: echo
      port: 80
      weight: 9
    - name: echo-v3
      port: 80
    - name: echo
      port: 81
      filters: [{ type: ResponseHeaderModifier, responseHeaderModifier: { remove: [x] } }]
`;
    const loaded = loadResources(text, 'mesh.yaml');
    assert.deepEqual(loaded.errors, []);
    const { snapshot, errors } = compileProxySnapshot(loaded.resources, { workload: 'client' });
    assert.deepEqual(errors.map(formatResourceError), [
      'mesh.yaml:25 HTTPRoute/r: spec.rules[0].backendRefs[2].filters: not supported yet; ignored',
      'mesh.yaml:21 HTTPRoute/r: spec.rules[0].backendRefs[1]: backend Service echo-v3 not found',
      'mesh.yaml:24 HTTPRoute/r: spec.rules[0].backendRefs[2].port: backend Service echo has no port 81',
    ]);
    assert.deepEqual(vhost(snapshot!, 'echo.default:80').routes[0]!.action, {
      type: 'forward',
      backends: [
        { cluster: 'echo.default:80', weight: 9 },
        { cluster: null, weight: 1 },
        { cluster: null, weight: 1 },
      ],
    });
    assert.deepEqual(snapshot!.clusters.map((c) => c.name), ['echo.default:80']);
  });

  test('parentRefs that attach to nothing are reported', () => {
    const { errors } = compile([
      client,
      service('echo'),
      service('raw', { ports: [{ name: 'tcp', port: 9000, protocol: 'TCP' }] }),
      httpRoute('a', { parentRefs: [{ kind: 'Service', name: 'ghost' }, { kind: 'Service', name: 'echo', port: 81 }, { kind: 'Service', name: 'raw', port: 9000 }, { kind: 'Service', name: 'raw' }] }),
    ]);
    assert.deepEqual(errors, [
      'test.yaml:7 HTTPRoute/a: spec.parentRefs[0]: parent Service ghost not found',
      'test.yaml:7 HTTPRoute/a: spec.parentRefs[1].port: Service echo has no port 81',
      'test.yaml:7 HTTPRoute/a: spec.parentRefs[2].port: port 9000 of Service raw is not HTTP, HTTP2 or GRPC',
      'test.yaml:7 HTTPRoute/a: spec.parentRefs[3]: Service raw has no HTTP, HTTP2 or GRPC port',
    ]);
  });

  test('GAMMA: a consumer route replaces producer routes for clients of its namespace only', () => {
    const producer = onEcho([{ backendRefs: [backend] }], {}, 'producer');
    const consumer = httpRoute('consumer', { parentRefs: [{ kind: 'Service', name: 'echo', namespace: 'default' }], rules: [{ backendRefs: [{ ...backend, namespace: 'default' }] }] }, { namespace: 'shop' });
    const foreign = httpRoute('foreign', { parentRefs: [{ kind: 'Service', name: 'echo', namespace: 'default' }], rules: [] }, { namespace: 'other' });
    const objs = [client, workload('client', {}, {}, { namespace: 'shop' }), workload('client', {}, {}, { namespace: 'else' }), service('echo'), producer, consumer, foreign];
    assert.deepEqual(routeNames(compile(objs).snapshot), ['default/producer/rule/0/match/0']);
    assert.deepEqual(routeNames(compile(objs, 'client', 'shop').snapshot), ['shop/consumer/rule/0/match/0']);
    assert.deepEqual(routeNames(compile(objs, 'client', 'else').snapshot), ['default/producer/rule/0/match/0']);
  });
});

describe('route precedence', () => {
  const backendRefs = [{ name: 'echo', port: 80 }];
  const order = (...routes: object[]) => routeNames(compile([client, service('echo'), ...routes]).snapshot);
  const m = (match: object) => ({ matches: [match], backendRefs });
  const path = (type: string, value: string) => ({ path: { type, value } });

  test('Exact, then RegularExpression, then PathPrefix', () => {
    assert.deepEqual(order(onEcho([m(path('PathPrefix', '/a/b/c/d')), m(path('RegularExpression', '/a.*')), m(path('Exact', '/a'))])), [
      'default/r/rule/2/match/0',
      'default/r/rule/1/match/0',
      'default/r/rule/0/match/0',
    ]);
  });

  test('the longest PathPrefix first; the longest regular expression first', () => {
    assert.deepEqual(order(onEcho([m(path('PathPrefix', '/')), m(path('PathPrefix', '/api/v1')), m(path('PathPrefix', '/api'))])), [
      'default/r/rule/1/match/0',
      'default/r/rule/2/match/0',
      'default/r/rule/0/match/0',
    ]);
    assert.deepEqual(order(onEcho([m(path('RegularExpression', '/a.*')), m(path('RegularExpression', '/a/[0-9]+'))])), ['default/r/rule/1/match/0', 'default/r/rule/0/match/0']);
  });

  test('then a method match', () => {
    assert.deepEqual(order(onEcho([m({ headers: [{ name: 'a', value: '1' }, { name: 'b', value: '2' }] }), m({ method: 'GET' })])), ['default/r/rule/1/match/0', 'default/r/rule/0/match/0']);
  });

  test('then the most header matches', () => {
    const headers = (n: number) => ({ headers: Array.from({ length: n }, (_, i) => ({ name: `h${i}`, value: 'v' })) });
    assert.deepEqual(order(onEcho([m({ ...headers(1), queryParams: [{ name: 'q', value: '1' }, { name: 'r', value: '1' }] }), m(headers(2)), m({})])), [
      'default/r/rule/1/match/0',
      'default/r/rule/0/match/0',
      'default/r/rule/2/match/0',
    ]);
  });

  test('then the most query param matches', () => {
    assert.deepEqual(order(onEcho([m({ queryParams: [{ name: 'q', value: '1' }] }), m({ queryParams: [{ name: 'q', value: '1' }, { name: 'r', value: '1' }] })])), [
      'default/r/rule/1/match/0',
      'default/r/rule/0/match/0',
    ]);
  });

  test('then the oldest HTTPRoute; routes without a timestamp count as newest', () => {
    const rules = [m({})];
    assert.deepEqual(
      order(onEcho(rules, {}, 'a'), onEcho(rules, { creationTimestamp: '2024-05-01T00:00:00Z' }, 'b'), onEcho(rules, { creationTimestamp: '2024-01-01T00:00:00+02:00' }, 'c')),
      ['default/c/rule/0/match/0', 'default/b/rule/0/match/0', 'default/a/rule/0/match/0'],
    );
  });

  test('then namespace/name in alphabetical order', () => {
    const rules = [m({})];
    assert.deepEqual(order(onEcho(rules, {}, 'b'), onEcho(rules, {}, 'a-2'), onEcho(rules, {}, 'a')), ['default/a/rule/0/match/0', 'default/a-2/rule/0/match/0', 'default/b/rule/0/match/0']);
  });

  test('then rule order, then match order', () => {
    assert.deepEqual(order(onEcho([{ matches: [path('PathPrefix', '/x'), path('PathPrefix', '/y')], backendRefs }, m(path('PathPrefix', '/z'))])), [
      'default/r/rule/0/match/0',
      'default/r/rule/0/match/1',
      'default/r/rule/1/match/0',
    ]);
  });
});

describe('GRPCRoute', () => {
  const grpcRoute = (name: string, spec: object, meta: Meta = {}) => ({ apiVersion: GW, kind: 'GRPCRoute', metadata: { name, ...meta }, spec });
  const catalog = (name = 'catalog', protocol = 'GRPC') => service(name, { ports: [{ name: 'grpc', port: 9000, protocol }] });
  const onCatalog = (rules: object[], meta: Meta = {}, name = 'g') => grpcRoute(name, { parentRefs: [{ kind: 'Service', name: 'catalog' }], rules }, meta);
  const HOST = 'catalog.default:9000';
  const backendRefs = [{ name: 'catalog', port: 9000 }];
  const m = (method: object | undefined, headers?: object[]) => ({ matches: [{ ...(method === undefined ? {} : { method }), ...(headers === undefined ? {} : { headers }) }], backendRefs });
  const order = (...objs: object[]) => routeNames(compile([client, catalog(), ...objs]).snapshot, HOST);

  test('retry: absent without one; with one, gRPC codes by number, every call retriable, defaults filled in', () => {
    const retryOf = (retry: object | undefined) => vhost(compile([client, catalog(), onCatalog([{ backendRefs, ...(retry && { retry }) }])]).snapshot, HOST).routes[0]!.retry;
    assert.equal(retryOf(undefined), undefined);
    assert.deepEqual(retryOf({}), { codes: [], grpcCodes: [], attempts: 1, backoffMs: 25, onConnectFailure: true, allowNonIdempotent: true });
    assert.deepEqual(retryOf({ codes: ['UNAVAILABLE', 'CANCELLED', 'RESOURCE_EXHAUSTED'], attempts: 2, backoff: '100ms', onConnectFailure: false }), {
      codes: [],
      grpcCodes: [1, 8, 14],
      attempts: 2,
      backoffMs: 100,
      onConnectFailure: false,
      allowNonIdempotent: true,
    });
  });

  test('a rule with N matches yields N routes on paths /<service>/<method>; every field is compiled', () => {
    const rule = {
      matches: [
        { method: { service: 'shop.v1.Catalog', method: 'GetItem' }, headers: [{ name: 'X-Env', value: 'prod' }, { type: 'RegularExpression', name: 'x-id', value: '[0-9]+' }] },
        { method: { service: 'shop.v1.Catalog' } },
        { method: { method: 'ListItems' } },
        { method: { type: 'RegularExpression', service: 'shop\\..*', method: 'Get.*' } },
        { headers: [{ name: 'x-canary', value: '1' }] },
      ],
      filters: [
        { type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['X-Debug'] } },
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: 'A' }], add: [{ name: 'X-B', value: 'b' }], remove: ['X-C'] } },
      ],
      backendRefs: [{ name: 'catalog', port: 9000, weight: 90 }, { name: 'catalog-v2', port: 9000, weight: 10 }],
    };
    const { snapshot, errors } = compile([client, catalog(), catalog('catalog-v2'), onCatalog([rule])]);
    assert.deepEqual(errors, []);
    const routes = vhost(snapshot, HOST).routes;
    const byName = Object.fromEntries(routes.map((r) => [r.name, r]));
    const paths = (j: number) => byName[`default/g/rule/0/match/${j}`]!.match.path;
    assert.deepEqual([0, 1, 2, 3, 4].map(paths), [
      { type: 'Exact', value: '/shop.v1.Catalog/GetItem' },
      { type: 'PathPrefix', value: '/shop.v1.Catalog/' },
      { type: 'RegularExpression', value: '^/[^/]+/ListItems$' },
      { type: 'RegularExpression', value: '^(?=/[^/]+/[^/]+$)/(?:shop\\..*)/(?:Get.*)$' },
      { type: 'PathPrefix', value: '/' },
    ]);
    assert.deepEqual(byName['default/g/rule/0/match/0'], {
      name: 'default/g/rule/0/match/0',
      routeRef: 'default/g',
      match: {
        path: { type: 'Exact', value: '/shop.v1.Catalog/GetItem' },
        method: null,
        headers: [
          { name: 'x-env', type: 'Exact', value: 'prod' },
          { name: 'x-id', type: 'RegularExpression', value: '[0-9]+' },
        ],
        queryParams: [],
      },
      requestFilters: [{ type: 'RequestHeaderModifier', modifier: { set: [{ name: 'x-a', value: 'A' }], add: [{ name: 'x-b', value: 'b' }], remove: ['x-c'] } }],
      responseFilters: [{ set: [], add: [], remove: ['x-debug'] }],
      action: { type: 'forward', backends: [{ cluster: 'catalog.default:9000', weight: 90 }, { cluster: 'catalog-v2.default:9000', weight: 10 }] },
      timeouts: { requestMs: 0, backendRequestMs: 0 },
    });
  });

  test('a rule without matches takes every call; a route without rules (or a rule without backends) forwards to none', () => {
    const all = vhost(compile([client, catalog(), onCatalog([{ backendRefs }, {}])]).snapshot, HOST).routes;
    assert.deepEqual(all.map((r) => [r.name, r.match.path, r.action]), [
      ['default/g/rule/0/match/0', { type: 'PathPrefix', value: '/' }, { type: 'forward', backends: [{ cluster: 'catalog.default:9000', weight: 1 }] }],
      ['default/g/rule/1/match/0', { type: 'PathPrefix', value: '/' }, { type: 'forward', backends: [] }],
    ]);
    assert.deepEqual(vhost(compile([client, catalog(), grpcRoute('g', { parentRefs: [{ kind: 'Service', name: 'catalog' }] })]).snapshot, HOST).routes, []);
  });

  test('precedence: the most service characters, then method characters, then header matches', () => {
    assert.deepEqual(
      order(onCatalog([m({ method: 'GetItemDetails' }), m({ service: 'a.B' }), m({ service: 'a.B', method: 'Get' }), m({ service: 'shop.v1.Catalog' }), m(undefined, [{ name: 'x', value: '1' }])])),
      ['default/g/rule/3/match/0', 'default/g/rule/2/match/0', 'default/g/rule/1/match/0', 'default/g/rule/0/match/0', 'default/g/rule/4/match/0'],
    );
    assert.deepEqual(order(onCatalog([m({ service: 'a.B' }), m({ service: 'a.B' }, [{ name: 'x', value: '1' }]), m({ service: 'a.C' }, [{ name: 'x', value: '1' }, { name: 'y', value: '2' }])])), [
      'default/g/rule/2/match/0',
      'default/g/rule/1/match/0',
      'default/g/rule/0/match/0',
    ]);
  });

  test('then Exact before RegularExpression, then the oldest route, then namespace/name, then rule and match order', () => {
    assert.deepEqual(order(onCatalog([m({ type: 'RegularExpression', service: 'a.B' }), m({ service: 'a.B' })])), ['default/g/rule/1/match/0', 'default/g/rule/0/match/0']);
    const rules = [m({ service: 'a.B' })];
    assert.deepEqual(order(onCatalog(rules, {}, 'a'), onCatalog(rules, { creationTimestamp: '2024-01-01T00:00:00Z' }, 'z'), onCatalog(rules, {}, 'b')), [
      'default/z/rule/0/match/0',
      'default/a/rule/0/match/0',
      'default/b/rule/0/match/0',
    ]);
    assert.deepEqual(order(onCatalog([{ matches: [{ method: { service: 'a.B' } }, { method: { service: 'a.C' } }], backendRefs }, m({ service: 'a.D' })])), [
      'default/g/rule/0/match/0',
      'default/g/rule/0/match/1',
      'default/g/rule/1/match/0',
    ]);
  });

  test('attaches to GRPC and HTTP2 ports only; a parentRef to anything else is reported', () => {
    const mixed = service('catalog', {
      ports: [
        { name: 'http', port: 80 },
        { name: 'grpc', port: 9000, protocol: 'GRPC' },
        { name: 'h2', port: 9001, protocol: 'HTTP2' },
        { name: 'raw', port: 9002, protocol: 'TCP' },
      ],
    });
    const { snapshot, errors } = compile([
      client,
      mixed,
      service('web'),
      grpcRoute('g', {
        parentRefs: [{ kind: 'Service', name: 'catalog' }, { kind: 'Service', name: 'catalog', port: 80 }, { kind: 'Service', name: 'catalog', port: 9002 }, { kind: 'Service', name: 'web' }, { kind: 'Service', name: 'ghost' }],
        rules: [{ backendRefs }],
      }),
    ]);
    assert.deepEqual(
      snapshot.virtualHosts.map((v) => [v.name, v.routes.map((r) => r.name)]),
      [
        ['catalog.default:80', ['default/catalog/default']],
        ['catalog.default:9000', ['default/g/rule/0/match/0']],
        ['catalog.default:9001', ['default/g/rule/0/match/0']],
        ['web.default:80', ['default/web/default']],
      ],
    );
    assert.deepEqual(errors, [
      'test.yaml:7 GRPCRoute/g: spec.parentRefs[1].port: port 80 of Service catalog is not GRPC or HTTP2',
      'test.yaml:7 GRPCRoute/g: spec.parentRefs[2].port: port 9002 of Service catalog is not GRPC or HTTP2',
      'test.yaml:7 GRPCRoute/g: spec.parentRefs[3]: Service web has no GRPC or HTTP2 port',
      'test.yaml:7 GRPCRoute/g: spec.parentRefs[4]: parent Service ghost not found',
    ]);
  });

  test('an HTTPRoute and a GRPCRoute on one port: the oldest decides the kind, the others are reported', () => {
    const grpc = onCatalog([m({ service: 'a.B' })], { creationTimestamp: '2024-01-01T00:00:00Z' });
    const http = httpRoute('h', { parentRefs: [{ kind: 'Service', name: 'catalog', port: 9000 }], rules: [{ backendRefs }] }, { creationTimestamp: '2024-06-01T00:00:00Z' });
    const older = compile([client, catalog(), grpc, http]);
    assert.deepEqual(routeNames(older.snapshot, HOST), ['default/g/rule/0/match/0']);
    assert.deepEqual(older.errors, [
      'test.yaml:7 HTTPRoute/h: spec.parentRefs[0]: ignored for port 9000 of Service catalog: GRPCRoute g is older (or first by namespace/name), and a port takes HTTPRoutes or GRPCRoutes, never both',
    ]);
    const newer = compile([client, catalog(), { ...grpc, metadata: { name: 'g' } }, http]);
    assert.deepEqual(routeNames(newer.snapshot, HOST), ['default/h/rule/0/match/0']);
    assert.deepEqual(newer.errors, [
      'test.yaml:5 GRPCRoute/g: spec.parentRefs[0]: ignored for port 9000 of Service catalog: HTTPRoute h is older (or first by namespace/name), and a port takes HTTPRoutes or GRPCRoutes, never both',
    ]);
    // Without timestamps: the first by namespace/name.
    const tie = compile([client, catalog(), onCatalog([m({ service: 'a.B' })], {}, 'a'), { ...http, metadata: { name: 'b' } }]);
    assert.deepEqual(routeNames(tie.snapshot, HOST), ['default/a/rule/0/match/0']);
  });

  test('an invalid backend gives a null cluster and is reported; a RequestMirror to a missing Service mirrors nothing; backend filters are reported and ignored', () => {
    const rule = {
      filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 9000 } } }],
      backendRefs: [
        { name: 'catalog', port: 9000, weight: 3, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { remove: ['x'] } }] },
        { name: 'gone', port: 9000 },
        { name: 'catalog', port: 9999 },
      ],
    };
    const { snapshot, errors } = compile([client, catalog(), onCatalog([rule])]);
    const [route] = vhost(snapshot, HOST).routes;
    assert.deepEqual(route!.action, { type: 'forward', backends: [{ cluster: 'catalog.default:9000', weight: 3 }, { cluster: null, weight: 1 }, { cluster: null, weight: 1 }] });
    assert.deepEqual([route!.requestFilters, route!.responseFilters], [[{ type: 'RequestMirror', cluster: null, percent: 100 }], []]);
    assert.deepEqual(errors, [
      'test.yaml:5 GRPCRoute/g: spec.rules[0].filters[0].requestMirror.backendRef: backend Service shadow not found',
      'test.yaml:5 GRPCRoute/g: spec.rules[0].backendRefs[0].filters: not supported yet; ignored',
      'test.yaml:5 GRPCRoute/g: spec.rules[0].backendRefs[1]: backend Service gone not found',
      'test.yaml:5 GRPCRoute/g: spec.rules[0].backendRefs[2].port: backend Service catalog has no port 9999',
    ]);
  });

  test('GAMMA: a consumer GRPCRoute replaces producer routes for clients of its namespace only', () => {
    const producer = onCatalog([m({ service: 'a.B' })], {}, 'producer');
    const consumer = grpcRoute('consumer', { parentRefs: [{ kind: 'Service', name: 'catalog', namespace: 'default' }], rules: [{ backendRefs: [{ name: 'catalog', namespace: 'default', port: 9000 }] }] }, { namespace: 'shop' });
    const objs = [client, workload('client', {}, {}, { namespace: 'shop' }), catalog(), producer, consumer];
    assert.deepEqual(routeNames(compile(objs).snapshot, HOST), ['default/producer/rule/0/match/0']);
    assert.deepEqual(routeNames(compile(objs, 'client', 'shop').snapshot, HOST), ['shop/consumer/rule/0/match/0']);
  });

  test('a workload that calls only the service gets the clusters its GRPCRoute splits to', () => {
    const split = onCatalog([{ backendRefs: [{ name: 'catalog', port: 9000, weight: 90 }, { name: 'catalog-v2', port: 9000, weight: 10 }] }]);
    const { snapshot } = compile([workload('client', { app: 'client' }, { calls: ['catalog'] }), catalog(), catalog('catalog-v2'), service('other'), split]);
    assert.deepEqual(snapshot.virtualHosts.map((v) => v.name), [HOST]);
    assert.deepEqual(snapshot.clusters.map((c) => c.name).sort(), ['catalog-v2.default:9000', 'catalog.default:9000']);
  });
});

describe('app port protocols (inbound.appProtocols)', () => {
  const api = workload('api-1', { app: 'api' }, { ports: { http: 8080, grpc: 9090, admin: 9100 } });
  const protocols = (objs: object[], name = 'api-1') => {
    const { snapshot, errors } = compile(objs, name);
    return { protocols: snapshot.inbound.appProtocols, errors };
  };

  test('each Service port gives its protocol (HTTP by default) to the app port it leads to; other app ports are HTTP', () => {
    const svc = service('api', {
      ports: [
        { name: 'http', port: 80 },
        { name: 'grpc', port: 9000, protocol: 'GRPC' },
        { name: 'h2', port: 9001, protocol: 'HTTP2', targetPort: 7000 },
        { name: 'db', port: 5432, protocol: 'TCP', targetPort: 'missing' },
      ],
    });
    assert.deepEqual(protocols([api, svc]), { protocols: { 7000: 'HTTP2', 8080: 'HTTP', 9090: 'GRPC', 9100: 'HTTP' }, errors: [] });
    assert.deepEqual(protocols([api, service('api')]).protocols, { 8080: 'HTTP', 9090: 'HTTP', 9100: 'HTTP' });
    assert.deepEqual(protocols([api, service('other', { selector: { app: 'other' }, ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }] })]).protocols, { 8080: 'HTTP', 9090: 'HTTP', 9100: 'HTTP' }, 'a Service that does not select the workload');
  });

  test('Services that disagree: the oldest decides, then the first by name; the others are reported', () => {
    const older = service('api-grpc', { selector: { app: 'api' }, ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }] }, { creationTimestamp: '2024-01-01T00:00:00Z' });
    const newer = service('api-raw', { selector: { app: 'api' }, ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090, protocol: 'TCP' }] });
    const api2 = workload('api-2', { app: 'api' }, { ports: { grpc: 9090 } });
    const result = protocols([api, api2, newer, older]);
    assert.deepEqual(result.protocols, { 8080: 'HTTP', 9090: 'GRPC', 9100: 'HTTP' });
    assert.deepEqual(result.errors, [
      'test.yaml:5 Service/api-raw: spec.ports[1].protocol: TCP conflicts with GRPC from Service api-grpc (port 9000) for app port 9090 of Workload api-1 (and 1 more); GRPC applies there (the oldest Service, then the first by name, decides)',
    ]);
    // Without timestamps, by name: api-grpc before api-raw.
    assert.deepEqual(protocols([api, { ...newer, metadata: { name: 'api-raw' } }, { ...older, metadata: { name: 'api-grpc' } }]).protocols[9090], 'GRPC');
    const one = service('api', { ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }, { name: 'alt', port: 9001, protocol: 'HTTP2', targetPort: 'grpc' }] });
    assert.deepEqual(protocols([api, one]), {
      protocols: { 8080: 'HTTP', 9090: 'GRPC', 9100: 'HTTP' },
      errors: ['test.yaml:3 Service/api: spec.ports[1].protocol: HTTP2 conflicts with GRPC from port 9000 of this Service for app port 9090 of Workload api-1; GRPC applies there (the oldest Service, then the first by name, decides)'],
    });
  });

  test('the workload index version follows the Services that decide protocols', () => {
    const grpcSvc = service('api', { ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }] });
    const base = load(api, grpcSvc);
    const version = prepareWorkloadIndex(base).version;
    assert.notEqual(prepareWorkloadIndex(load(api, service('api', { ports: [{ name: 'grpc', port: 9000, protocol: 'HTTP2' }] }))).version, version);
    assert.equal(prepareWorkloadIndex([...base, ...load(workload('api-2', { app: 'api' }))]).version, version, 'endpoint churn');
    const self = base.find((r) => r.kind === 'Workload')!;
    assert.deepEqual(compileWorkload(self as never, prepareWorkloadIndex(base)).inbound.appProtocols, { 8080: 'HTTP', 9090: 'GRPC', 9100: 'HTTP' });
  });
});

describe('TCP services', () => {
  const raw = (name: string) => service(name, { ports: [{ name: 'tcp', port: 9000, protocol: 'TCP' }] });
  const tcpRoute = (name: string, rules: object[], meta: Meta = {}) => ({
    apiVersion: 'gateway.networking.k8s.io/v1alpha2',
    kind: 'TCPRoute',
    metadata: { name, ...meta },
    spec: { parentRefs: [{ kind: 'Service', name: 'db' }], rules },
  });

  test('without a TCPRoute, the service forwards to its own cluster', () => {
    const { snapshot } = compile([client, raw('db')]);
    assert.deepEqual(snapshot.tcpServices, [{ name: 'db.default:9000', service: 'db', namespace: 'default', port: 9000, backends: [{ cluster: 'db.default:9000', weight: 1 }] }]);
    assert.deepEqual(snapshot.virtualHosts, []);
  });

  test('a TCPRoute splits by weight; a missing backend is null and reported', () => {
    const { snapshot, errors } = compile([client, raw('db'), raw('db-v2'), tcpRoute('split', [{ backendRefs: [{ name: 'db', port: 9000, weight: 3 }, { name: 'db-v2', port: 9000 }, { name: 'gone', port: 9000 }] }])]);
    assert.deepEqual(snapshot.tcpServices.find((t) => t.service === 'db')!.backends, [
      { cluster: 'db.default:9000', weight: 3 },
      { cluster: 'db-v2.default:9000', weight: 1 },
      { cluster: null, weight: 1 },
    ]);
    assert.deepEqual(errors, ['test.yaml:7 TCPRoute/split: spec.rules[0].backendRefs[2]: backend Service gone not found']);
  });

  test('of two TCPRoutes on one port the oldest wins; extra rules are reported', () => {
    const older = tcpRoute('z', [{ backendRefs: [{ name: 'db-v2', port: 9000 }] }, { backendRefs: [{ name: 'db', port: 9000 }] }], { creationTimestamp: '2024-01-01T00:00:00Z' });
    const newer = tcpRoute('a', [{ backendRefs: [{ name: 'db', port: 9000 }] }]);
    const { snapshot, errors } = compile([client, raw('db'), raw('db-v2'), newer, older]);
    assert.deepEqual(snapshot.tcpServices.find((t) => t.service === 'db')!.backends, [{ cluster: 'db-v2.default:9000', weight: 1 }]);
    assert.deepEqual(errors, [
      'test.yaml:7 TCPRoute/a: spec.parentRefs: ignored for port 9000 of Service db: TCPRoute z is older and attached first',
      'test.yaml:9 TCPRoute/z: spec.rules[1]: ignored: a TCP port forwards by its first rule only',
    ]);
  });
});

describe('ports with no declared protocol (protocol detection)', () => {
  const ports = [
    { name: 'web', port: 80 },
    { name: 'plain', port: 8080, protocol: 'HTTP' },
    { name: 'rpc', port: 9090, protocol: 'GRPC' },
    { name: 'sql', port: 5432, protocol: 'TCP' },
  ];
  const objs = [client, service('db', { ports }), workload('db-1', { app: 'db' }, { ports: { web: 8000, plain: 8001, rpc: 8002, sql: 8003 } })];

  test('an undeclared port keeps its HTTP virtual host and is also a TCP service that detects', () => {
    const { snapshot, errors } = compile(objs);
    assert.deepEqual(errors, []);
    assert.deepEqual(snapshot.virtualHosts.map((v) => `${v.name} ${v.protocol}`), ['db.default:80 HTTP', 'db.default:8080 HTTP', 'db.default:9090 GRPC']);
    assert.deepEqual(snapshot.tcpServices, [
      { name: 'db.default:80', service: 'db', namespace: 'default', port: 80, backends: [{ cluster: 'db.default:80', weight: 1 }], detect: true, virtualHost: 'db.default:80' },
      // Declared TCP: opaque at once, no detection field at all.
      { name: 'db.default:5432', service: 'db', namespace: 'default', port: 5432, backends: [{ cluster: 'db.default:5432', weight: 1 }] },
    ]);
    // The virtual host it names is one of the port's, and its name is one of its own authorities.
    const vh = vhost(snapshot, 'db.default:80');
    assert.ok(vh.domains.includes('db.default:80'));
    assert.equal(cluster(snapshot, 'db.default:80').protocol, 'HTTP');
  });

  test('declared HTTP, HTTP2 and GRPC ports stay HTTP-only; undeclared app ports speak HTTP/1.1 from the inbound', () => {
    const { snapshot } = compile(objs, 'db-1');
    assert.deepEqual(snapshot.tcpServices.map((t) => t.name), ['db.default:80', 'db.default:5432']);
    assert.deepEqual(snapshot.inbound.appProtocols, { 8000: 'HTTP', 8001: 'HTTP', 8002: 'GRPC', 8003: 'TCP' });
  });

  test('TCP follows the backends of the first catch-all route (a split too); a TCPRoute cannot attach', () => {
    const tcpRoute = { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute', metadata: { name: 't' }, spec: { parentRefs: [{ kind: 'Service', name: 'db', port: 80 }], rules: [{ backendRefs: [{ name: 'db', port: 5432 }] }] } };
    const route = httpRoute('h', {
      parentRefs: [{ kind: 'Service', name: 'db', port: 80 }],
      rules: [
        { matches: [{ headers: [{ name: 'x-canary', value: '1' }] }], backendRefs: [{ name: 'db', port: 9090 }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'db', port: 9090 }] },
        { backendRefs: [{ name: 'db', port: 8080, weight: 9 }, { name: 'db', port: 80, weight: 1 }] },
      ],
    });
    const { snapshot, errors } = compile([...objs, route, tcpRoute]);
    assert.deepEqual(errors, ['test.yaml:9 TCPRoute/t: spec.parentRefs[0].port: port 80 of Service db is not TCP']);
    assert.deepEqual(vhost(snapshot, 'db.default:80').routes.map((r) => r.routeRef), ['default/h', 'default/h', 'default/h']);
    assert.deepEqual(snapshot.tcpServices[0]!.backends, [{ cluster: 'db.default:8080', weight: 9 }, { cluster: 'db.default:80', weight: 1 }]);
  });

  test('without a catch-all forwarding route, TCP goes to the Service\'s own endpoints', () => {
    const route = httpRoute('h', {
      parentRefs: [{ kind: 'Service', name: 'db', port: 80 }],
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'db', port: 9090 }] },
        { filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'elsewhere' } }] },
      ],
    });
    const { snapshot } = compile([...objs, route]);
    assert.deepEqual(snapshot.tcpServices[0]!.backends, [{ cluster: 'db.default:80', weight: 1 }]);
  });

  test('a scope keeps a service\'s detecting TCP services with its virtual hosts', () => {
    const s = compile([...objs, workload('scoped', { app: 'scoped' }, { calls: ['db'] })], 'scoped').snapshot;
    assert.deepEqual(s.tcpServices.map((t) => t.name), ['db.default:80', 'db.default:5432']);
    assert.deepEqual(compile([...objs, workload('none', { app: 'none' }, { calls: [] })], 'none').snapshot.tcpServices, []);
  });
});

describe('version and determinism', () => {
  const objs = [
    client,
    service('echo'),
    service('b', {}, { namespace: 'shop' }),
    workload('echo-1', { app: 'echo', z: '1', a: '2' }),
    workload('echo-2', { app: 'echo' }, { address: '10.0.0.2' }),
    onEcho([{ backendRefs: [{ name: 'echo', port: 80 }] }, { matches: [{ path: { type: 'Exact', value: '/x' } }] }], {}, 'r1'),
    onEcho([{ matches: [{ method: 'GET' }] }], {}, 'r2'),
  ];

  test('the same resources in any order, with labels in any order, give the same snapshot', () => {
    const a = compile(objs).snapshot;
    const reordered = [...objs].reverse().map((o) => (o === objs[3] ? workload('echo-1', { a: '2', app: 'echo', z: '1' }) : o));
    const b = compile(reordered).snapshot;
    assert.equal(JSON.stringify(b), JSON.stringify(a));
    assert.match(a.version, /^[0-9a-f]{16}$/);
  });

  test('the version is the sha256 of the snapshot without it, and changes with any content', () => {
    const { version, ...rest } = compile(objs).snapshot;
    assert.equal(version, createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16));
    const changed = compile([...objs.slice(0, 4), workload('echo-2', { app: 'echo' }, { address: '10.0.0.3' }), ...objs.slice(5)]).snapshot;
    assert.notEqual(changed.version, version);
  });

  test('compiling does not change the resources', () => {
    const resources = load(...objs);
    const before = JSON.stringify(resources);
    const first = compileProxySnapshot(resources, { workload: 'client' }).snapshot!;
    first.clusters[0]!.endpoints[0]!.labels.app = 'mutated';
    assert.equal(JSON.stringify(resources), before);
    assert.equal(compileProxySnapshot(resources, { workload: 'client' }).snapshot!.version, first.version);
  });

  test('a sourceOf option supplies lines for resources that did not come from loadResources', () => {
    const resources = structuredClone(load(client, service('echo'), onEcho([{ backendRefs: [{ name: 'ghost', port: 80 }] }])));
    const lines = new Map([['spec.rules[0].backendRefs[0]', 42]]);
    const { errors } = compileProxySnapshot(resources, { workload: 'client' }, { sourceOf: (r) => (r.kind === 'HTTPRoute' ? { file: 'store', line: 1, lines } : undefined) });
    assert.deepEqual(errors.map(formatResourceError), ['store:42 HTTPRoute/r: spec.rules[0].backendRefs[0]: backend Service ghost not found']);
  });
});

describe('a workload that declares the services it calls (spec.calls)', () => {
  const mesh = [
    service('echo'),
    service('echo-v2', { selector: { app: 'echo', v: '2' } }),
    service('other'),
    service('db', { ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }] }),
    service('remote', {}, { namespace: 'far' }),
    service('near', {}, { namespace: 'far' }),
    workload('echo-1', { app: 'echo', v: '2' }),
    workload('other-1', { app: 'other' }),
    onEcho([{ backendRefs: [{ name: 'echo', port: 80, weight: 90 }, { name: 'echo-v2', port: 80, weight: 10 }] }]),
  ];
  const scoped = (calls: string[] | undefined) => compile([...mesh, workload('client', { app: 'client' }, calls === undefined ? {} : { calls })]).snapshot;

  test('gets only those services, and the clusters their routes split to', () => {
    const s = scoped(['echo']);
    assert.deepEqual(s.virtualHosts.map((v) => v.name), ['echo.default:80']);
    assert.deepEqual(s.tcpServices.map((t) => t.name), ['echo.default:80']);
    assert.deepEqual(s.clusters.map((c) => c.name).sort(), ['echo-v2.default:80', 'echo.default:80']);
    assert.deepEqual(cluster(s, 'echo-v2.default:80').endpoints.map((e) => e.workload), ['default/echo-1']);
  });

  test('namespace/name, namespace/* and TCP services', () => {
    const s = scoped(['far/*', 'db']);
    assert.deepEqual(s.virtualHosts.map((v) => v.name).sort(), ['near.far:80', 'remote.far:80']);
    assert.deepEqual(s.tcpServices.map((t) => t.name), ['db.default:5432', 'near.far:80', 'remote.far:80']);
    assert.deepEqual(s.clusters.map((c) => c.name).sort(), ['db.default:5432', 'near.far:80', 'remote.far:80']);
    assert.deepEqual(scoped(['far/remote']).virtualHosts.map((v) => v.name), ['remote.far:80']);
  });

  test('an empty list calls nothing; no list, or "*", calls everything', () => {
    const none = scoped([]);
    assert.deepEqual([none.virtualHosts, none.tcpServices, none.clusters], [[], [], []]);
    assert.equal(scoped(undefined).clusters.length, 6);
    assert.equal(scoped(['*']).clusters.length, 6);
  });

  test('a malformed entry is refused with its path', () => {
    const { errors } = loadResources(JSON.stringify(workload('client', {}, { calls: ['echo', 'Bad/*', 'a/b/c'] })), 'w.yaml');
    assert.deepEqual(
      errors.map((e) => `${e.path}: ${e.message}`),
      ['spec.calls[1]: must be a service name, "namespace/name", "namespace/*" or "*"', 'spec.calls[2]: must be a service name, "namespace/name", "namespace/*" or "*"'],
    );
  });
});

describe('HTTPFault', () => {
  const fault = (name: string, spec: object) => ({ apiVersion: W, kind: 'HTTPFault', metadata: { name }, spec });
  const ext = (name: string) => ({ type: 'ExtensionRef', extensionRef: { group: 'weft.dev', kind: 'HTTPFault', name } });
  const echo = service('echo');
  test('an ExtensionRef compiles to a Fault request filter in declared order, defaults applied', () => {
    const hdr = { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }] } };
    const { snapshot, errors } = compile([client, echo, fault('slow', { delay: { fixedDelay: '1s500ms' }, abort: { httpStatus: 418, percentage: 2.5 } }), onEcho([{ filters: [ext('slow'), hdr], backendRefs: [{ name: 'echo', port: 80 }] }])]);
    assert.deepEqual(errors, []);
    const filters = vhost(snapshot, 'echo.default:80').routes[0]!.requestFilters;
    assert.deepEqual(filters[0], { type: 'Fault', ref: 'default/slow', fault: { delay: { ms: 1500, percentage: 100 }, abort: { status: 418, percentage: 2.5 } } });
    assert.equal(filters[1]!.type, 'RequestHeaderModifier');
  });
  test('a missing HTTPFault is reported on the filter, and the filter stays (unresolved: the rule answers 500)', () => {
    const { snapshot, errors } = compile([client, echo, fault('other', { abort: { httpStatus: 503 } }), onEcho([{ filters: [ext('gone')], backendRefs: [{ name: 'echo', port: 80 }] }])]);
    assert.deepEqual(errors, ['test.yaml:7 HTTPRoute/r: spec.rules[0].filters[0].extensionRef: HTTPFault gone not found; the rule answers 500 until it exists']);
    assert.deepEqual(vhost(snapshot, 'echo.default:80').routes[0]!.requestFilters, [{ type: 'Fault', ref: 'default/gone', fault: null }]);
  });
});

describe('RateLimitPolicy', () => {
  const rl = (name: string, spec: object, meta: Meta = {}) => ({
    apiVersion: W,
    kind: 'RateLimitPolicy',
    metadata: { name, ...meta },
    spec: { targetRefs: [{ kind: 'Service', name: 'reviews' }], ...spec },
  });
  const reviews = service('reviews', { ports: [{ name: 'http', port: 80 }, { name: 'admin', port: 81 }] });
  const reviews1 = workload('reviews-1', { app: 'reviews' }, { ports: { http: 9080, admin: 9090 } });
  const redisMesh = { apiVersion: W, kind: 'Mesh', metadata: { name: 'mesh' }, spec: { rateLimiting: { redis: { address: '127.0.0.1:6379' } } } };

  test('resolved to app ports, with defaults: key None, burst = requests, FailOpen; the Mesh Redis with a 50 ms timeout', () => {
    const { snapshot, errors } = compile(
      [
        reviews,
        reviews1,
        redisMesh,
        rl('b', { key: { type: 'Header', header: 'X-User' }, global: { requests: 100, per: '1m' }, failureMode: 'FailClosed' }),
        rl('a', { local: { requests: 10, per: '1s' } }, { creationTimestamp: '2024-01-01T00:00:00Z' }),
      ],
      'reviews-1',
    );
    assert.deepEqual(errors, []);
    assert.deepEqual(snapshot.inbound.rateLimits, {
      redis: { address: '127.0.0.1:6379', timeoutMs: 50 },
      policies: [
        { name: 'default/a', appPorts: [9080, 9090], key: { type: 'None' }, local: { requests: 10, perMs: 1000, burst: 10 }, global: null, failureMode: 'FailOpen' },
        { name: 'default/b', appPorts: [9080, 9090], key: { type: 'Header', header: 'x-user' }, local: null, global: { requests: 100, perMs: 60_000 }, failureMode: 'FailClosed' },
      ],
    });
  });

  test('absent where no policy covers the workload (other Services, other namespaces, no matching ports)', () => {
    const { snapshot } = compile([reviews, reviews1, service('other'), rl('p', { targetRefs: [{ kind: 'Service', name: 'other' }], local: { requests: 1, per: '1s' } })], 'reviews-1');
    assert.equal(snapshot.inbound.rateLimits, undefined);
    assert.equal('rateLimits' in snapshot.inbound, false, 'no field at all, so snapshots without policies do not change');
    const shop = compile([reviews, reviews1, rl('p', { local: { requests: 1, per: '1s' } }, { namespace: 'shop' })], 'reviews-1');
    assert.equal(shop.snapshot.inbound.rateLimits, undefined);
    assert.deepEqual(shop.errors, ['test.yaml:5 RateLimitPolicy/shop/p: spec.targetRefs[0]: Service shop/reviews not found']);
  });

  test('a global limit without a Redis in the Mesh is reported, naming what happens instead', () => {
    const { snapshot, errors } = compile([reviews, reviews1, rl('open', { global: { requests: 5, per: '1s' } }), rl('closed', { global: { requests: 5, per: '1s' }, failureMode: 'FailClosed' })], 'reviews-1');
    assert.deepEqual(errors, [
      'test.yaml:7 RateLimitPolicy/closed: spec.global: no Redis to count in: set Mesh spec.rateLimiting.redis.address; until then the global limit is refusing every request (failureMode FailClosed)',
      'test.yaml:5 RateLimitPolicy/open: spec.global: no Redis to count in: set Mesh spec.rateLimiting.redis.address; until then the global limit is not enforced (failureMode FailOpen)',
    ]);
    assert.equal(snapshot.inbound.rateLimits?.redis, null);
    assert.equal(compile([reviews, reviews1, redisMesh, rl('x', { global: { requests: 5, per: '1s' } })], 'reviews-1').errors.length, 0);
    assert.equal(compile([reviews, reviews1, rl('x', { local: { requests: 5, per: '1s' } })], 'reviews-1').errors.length, 0, 'a local limit needs no Redis');
  });

  test('the workload index version follows policies and the Mesh Redis', () => {
    const base = load(reviews, reviews1, rl('p', { local: { requests: 1, per: '1s' } }));
    const version = prepareWorkloadIndex(base).version;
    assert.notEqual(prepareWorkloadIndex(load(reviews, reviews1, rl('p', { local: { requests: 2, per: '1s' } }))).version, version, 'a policy change');
    assert.notEqual(prepareWorkloadIndex([...base, ...load(redisMesh)]).version, version, 'the Mesh Redis');
    assert.notEqual(prepareWorkloadIndex(load(service('reviews'), reviews1, rl('p', { local: { requests: 1, per: '1s' } }))).version, version, 'a targeted Service change');
  });
});

describe('RequestMirror and destination timeouts', () => {
  const mirror = (m: object) => ({ type: 'RequestMirror', requestMirror: m });
  const header = { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }] } };

  test('HTTPRoute: mirrors resolve to clusters, after the other request filters, in declared order; percent from percent or fraction', () => {
    const rule = {
      filters: [mirror({ backendRef: { name: 'shadow', port: 80 }, percent: 50 }), header, mirror({ backendRef: { name: 'other', port: 80 }, fraction: { numerator: 1, denominator: 3 } }), mirror({ backendRef: { name: 'shadow', port: 80 } }), mirror({ backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 5 } })],
      backendRefs: [{ name: 'echo', port: 80 }],
    };
    const { snapshot, errors } = compile([client, service('echo'), service('shadow'), service('other'), onEcho([rule])]);
    assert.deepEqual(errors, []);
    const [route] = vhost(snapshot, 'echo.default:80').routes;
    assert.deepEqual(route!.requestFilters, [
      { type: 'RequestHeaderModifier', modifier: { set: [{ name: 'x-a', value: '1' }], add: [], remove: [] } },
      { type: 'RequestMirror', cluster: 'shadow.default:80', percent: 50 },
      { type: 'RequestMirror', cluster: 'other.default:80', percent: 100 / 3 },
      { type: 'RequestMirror', cluster: 'shadow.default:80', percent: 100 },
      { type: 'RequestMirror', cluster: 'shadow.default:80', percent: 5 },
    ]);
  });

  test('a mirror Service outside the caller\'s calls still brings its cluster; a missing one is reported and mirrors nothing', () => {
    const rule = { filters: [mirror({ backendRef: { name: 'shadow', port: 80 } }), mirror({ backendRef: { name: 'gone', port: 80 } }), mirror({ backendRef: { name: 'shadow', port: 81 } })], backendRefs: [{ name: 'echo', port: 80 }] };
    const { snapshot, errors } = compile([workload('client', { app: 'client' }, { calls: ['echo'] }), service('echo'), service('shadow'), service('unrelated'), onEcho([rule])]);
    assert.deepEqual(snapshot.clusters.map((c) => c.name).sort(), ['echo.default:80', 'shadow.default:80']);
    assert.deepEqual(vhost(snapshot, 'echo.default:80').routes[0]!.requestFilters.map((f) => (f.type === 'RequestMirror' ? f.cluster : f.type)), ['shadow.default:80', null, null]);
    assert.deepEqual(errors, [
      'test.yaml:9 HTTPRoute/r: spec.rules[0].filters[1].requestMirror.backendRef: backend Service gone not found',
      'test.yaml:9 HTTPRoute/r: spec.rules[0].filters[2].requestMirror.backendRef.port: backend Service shadow has no port 81',
    ]);
  });

  test('a redirect rule mirrors nothing, and says so', () => {
    const rule = { filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'example.com' } }, mirror({ backendRef: { name: 'shadow', port: 80 } })] };
    const { snapshot, errors } = compile([client, service('echo'), service('shadow'), onEcho([rule])]);
    assert.deepEqual(vhost(snapshot, 'echo.default:80').routes[0]!.requestFilters, []);
    assert.deepEqual(errors, ['test.yaml:7 HTTPRoute/r: spec.rules[0].filters: RequestMirror ignored: a redirected request is answered by the proxy and sent nowhere']);
  });

  test('GRPCRoute: mirrors compile as for HTTPRoute', () => {
    const grpc = (name: string) => service(name, { ports: [{ name: 'grpc', port: 9000, protocol: 'GRPC' }] });
    const route = { apiVersion: GW, kind: 'GRPCRoute', metadata: { name: 'g' }, spec: { parentRefs: [{ kind: 'Service', name: 'catalog' }], rules: [{ filters: [mirror({ backendRef: { name: 'shadow', port: 9000 }, percent: 10 }), header], backendRefs: [{ name: 'catalog', port: 9000 }] }] } };
    const { snapshot, errors } = compile([client, grpc('catalog'), grpc('shadow'), route]);
    assert.deepEqual(errors, []);
    assert.deepEqual(vhost(snapshot, 'catalog.default:9000').routes[0]!.requestFilters.map((f) => f.type), ['RequestHeaderModifier', 'RequestMirror']);
    assert.deepEqual(vhost(snapshot, 'catalog.default:9000').routes[0]!.requestFilters[1], { type: 'RequestMirror', cluster: 'shadow.default:9000', percent: 10 });
  });

  test('timeouts: absent unless set; a BackendPolicy per field (the oldest that sets it), else the Mesh defaults; 0s is kept', () => {
    const policy = (name: string, timeouts: object, created: string) => ({
      apiVersion: W,
      kind: 'BackendPolicy',
      metadata: { name, creationTimestamp: created },
      spec: { targetRefs: [{ kind: 'Service', name: 'echo' }], timeouts },
    });
    const mesh = { apiVersion: W, kind: 'Mesh', metadata: { name: 'mesh' }, spec: { defaults: { timeouts: { idle: '2m', streamIdle: '30s', tcpIdle: '2h' } } } };
    const timeouts = (...objs: object[]) => {
      const s = compile([client, service('echo'), service('other'), ...objs]).snapshot;
      return ['echo.default:80', 'other.default:80'].map((n) => [cluster(s, n).idleTimeoutMs, cluster(s, n).streamIdleTimeoutMs, cluster(s, n).tcpIdleTimeoutMs]);
    };
    assert.deepEqual(timeouts(), [[undefined, undefined, undefined], [undefined, undefined, undefined]]);
    assert.deepEqual(timeouts(mesh), [[120_000, 30_000, 7_200_000], [120_000, 30_000, 7_200_000]]);
    const older = policy('z', { streamIdle: '500ms', tcpIdle: '15m' }, '2024-01-01T00:00:00Z');
    const newer = policy('a', { idle: '0s', streamIdle: '9s', tcpIdle: '0s' }, '2024-06-01T00:00:00Z');
    assert.deepEqual(timeouts(newer, older), [[0, 500, 900_000], [undefined, undefined, undefined]]);
    assert.deepEqual(timeouts(mesh, older), [[120_000, 500, 900_000], [120_000, 30_000, 7_200_000]]);
    assert.deepEqual(timeouts(newer), [[0, 9000, 0], [undefined, undefined, undefined]]);
  });
});
