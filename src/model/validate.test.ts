import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateResource } from './validate.js';
import { parse } from 'yaml';

const W = 'weft.dev/v1alpha1';
const GW = 'gateway.networking.k8s.io/v1';

/** Every error of a document as `path: message`. */
const problems = (obj: unknown): string[] => validateResource(obj).map((e) => `${e.path}: ${e.message}`);
const res = (apiVersion: string, kind: string, spec: unknown, metadata: object = { name: 'x' }) => ({ apiVersion, kind, metadata, spec });
const service = (spec: object) => res(W, 'Service', { selector: { app: 'a' }, ports: [{ name: 'http', port: 80 }], ...spec });
const workload = (spec: object) => res(W, 'Workload', { address: '10.0.0.1', ports: { http: 8080 }, ...spec });
const route = (spec: object) => res(GW, 'HTTPRoute', { parentRefs: [{ kind: 'Service', name: 'a' }], ...spec });
const rule = (r: object) => route({ rules: [r] });
const authz = (spec: object) => res(W, 'AuthorizationPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], ...spec });

describe('resource shape', () => {
  test('valid resources of every kind have no problems', () => {
    assert.deepEqual(problems(res(W, 'Mesh', { trustDomain: 'example.org', mtls: { mode: 'STRICT' }, certificateLifetime: '24h', defaults: { connectTimeout: '2s', loadBalancer: 'RoundRobin' } })), []);
    assert.deepEqual(problems(service({ ports: [{ name: 'http', port: 80, protocol: 'GRPC', targetPort: 'web' }, { name: 'raw', port: 81, protocol: 'TCP', targetPort: 9000 }] })), []);
    assert.deepEqual(problems(workload({ serviceAccount: 'api', proxy: { inboundPort: 15006 } })), []);
    assert.deepEqual(problems(res(W, 'BackendPolicy', { targetRefs: [{ group: '', kind: 'Service', name: 'a' }], loadBalancer: { type: 'LeastRequest' }, connectTimeout: '1s' })), []);
    assert.deepEqual(problems(authz({ action: 'DENY', rules: [{}, { from: [{ identities: ['spiffe://*/ns/shop/sa/*'], namespaces: ['team-*'] }], to: [{ ports: [80], methods: ['GET'], paths: ['*.json'] }], when: [{ header: 'X-User', values: ['b*'] }] }] })), []);
    assert.deepEqual(problems(res('gateway.networking.k8s.io/v1beta1', 'HTTPRoute', { parentRefs: [{ group: '', kind: 'Service', name: 'a', namespace: 'b', port: 80 }], hostnames: ['a.example', '*.b.example'] })), []);
    assert.deepEqual(problems(res('gateway.networking.k8s.io/v1alpha2', 'TCPRoute', { parentRefs: [{ kind: 'Service', name: 'a' }], rules: [{ backendRefs: [{ name: 'b', port: 9000, weight: 0 }] }] })), []);
  });

  test('not a map', () => {
    assert.deepEqual(problems('hello'), [': must be a map with apiVersion, kind, metadata and spec']);
    assert.deepEqual(problems([1]), [': must be a map with apiVersion, kind, metadata and spec']);
  });

  test('required top-level fields, unknown apiVersion and kind, unknown top-level fields', () => {
    assert.deepEqual(problems({}), ['apiVersion: required', 'kind: required', 'metadata: required', 'spec: required']);
    assert.deepEqual(problems({ ...res('v1', 'Service', {}), status: {} }), [
      'status: unknown field',
      'apiVersion: must be one of "weft.dev/v1alpha1", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1", "gateway.networking.k8s.io/v1alpha2"',
    ]);
    assert.deepEqual(problems(res(W, 'HTTPRoute', {})), ['kind: unknown kind for weft.dev/v1alpha1; must be one of "Mesh", "Service", "Workload", "BackendPolicy", "AuthorizationPolicy", "RateLimitPolicy", "App", "HTTPFault"']);
    assert.deepEqual(problems(res('gateway.networking.k8s.io/v1alpha2', 'HTTPRoute', {})), ['kind: unknown kind for gateway.networking.k8s.io/v1alpha2; must be one of "TCPRoute", "GRPCRoute"']);
  });

  test('metadata', () => {
    const label = 'must be a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)';
    assert.deepEqual(problems(res(W, 'Mesh', {}, { name: 'Echo' })), [`metadata.name: ${label}`]);
    assert.deepEqual(problems(res(W, 'Mesh', {}, { name: 'a'.repeat(64) })), [`metadata.name: ${label}`]);
    assert.deepEqual(problems(res(W, 'Mesh', {}, { name: 'echo-', namespace: 'a.b' })), [`metadata.name: ${label}`, `metadata.namespace: ${label}`]);
    assert.deepEqual(problems(res(W, 'Mesh', {}, {})), ['metadata.name: required']);
    assert.deepEqual(problems(res(W, 'Mesh', {}, { name: 'm', uid: '1' })), ['metadata.uid: unknown field']);
    assert.deepEqual(problems(res(W, 'Mesh', {}, { name: 'm', creationTimestamp: '2024-01-02T03:04:05Z', annotations: { 'weft.dev/note': 'anything at all' } })), []);
    assert.deepEqual(problems(res(W, 'Mesh', {}, { name: 'm', creationTimestamp: 'yesterday' })), ['metadata.creationTimestamp: must be an RFC 3339 timestamp like "2024-01-02T15:04:05Z"']);
  });

  test('labels', () => {
    const labels = { 'app.kubernetes.io/name': 'ok', 'bad key': 'v', 'a/b/c': 'v', version: 1, empty: '', long: 'x'.repeat(64) };
    assert.deepEqual(problems(res(W, 'Mesh', {}, { name: 'm', labels })), [
      'metadata.labels["bad key"]: must be a label key ([prefix/]name: name of letters, digits, "-", "_" and ".", at most 63 characters)',
      'metadata.labels["a/b/c"]: must be a label key ([prefix/]name: name of letters, digits, "-", "_" and ".", at most 63 characters)',
      'metadata.labels.version: must be a string',
      'metadata.labels.long: must be a label value (letters, digits, "-", "_" and ".", at most 63 characters)',
    ]);
  });
});

describe('load balancing', () => {
  const policy = (spec: object) => res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], ...spec });
  const lb = (loadBalancer: object) => problems(policy({ loadBalancer }));

  test('valid balancers, hash policies, locality and weights', () => {
    assert.deepEqual(lb({ type: 'PeakEWMA', decay: '5s' }), []);
    assert.deepEqual(lb({ type: 'RingHash', minimumRingSize: 4096, hashOn: { header: { name: 'X-User' } } }), []);
    assert.deepEqual(lb({ type: 'Maglev', tableSize: 65537, hashOn: { cookie: { name: 'session' } } }), []);
    assert.deepEqual(lb({ type: 'Maglev', hashOn: { sourceAddress: true } }), []);
    assert.deepEqual(problems(policy({ locality: { enabled: false, overprovisioningFactor: 200 } })), []);
    assert.deepEqual(problems(workload({ weight: 128 })), []);
    assert.deepEqual(problems(res(W, 'Mesh', { defaults: { loadBalancer: 'PeakEWMA' } })), []);
  });

  test('options of another balancer type, hashOn missing or wrong, bad sizes', () => {
    assert.deepEqual(lb({ type: 'LeastRequest', hashOn: { header: { name: 'x' } }, decay: '1s', tableSize: 65537 }), [
      'spec.loadBalancer.decay: must not be set when type is LeastRequest (only for PeakEWMA)',
      'spec.loadBalancer.tableSize: must not be set when type is LeastRequest (only for Maglev)',
      'spec.loadBalancer.hashOn: must not be set when type is LeastRequest (only for RingHash and Maglev)',
    ]);
    assert.deepEqual(lb({ type: 'RingHash', tableSize: 65537 }), [
      'spec.loadBalancer.tableSize: must not be set when type is RingHash (only for Maglev)',
      'spec.loadBalancer.hashOn: required when type is RingHash',
    ]);
    assert.deepEqual(lb({ type: 'Maglev', tableSize: 65536, hashOn: {} }), ['spec.loadBalancer.tableSize: must be a prime number 2-5000011 (like 65537)', 'spec.loadBalancer.hashOn: must set one of header, cookie, sourceAddress']);
    assert.deepEqual(lb({ type: 'RingHash', minimumRingSize: 0, hashOn: { header: { name: 'x y' }, sourceAddress: true } }), [
      'spec.loadBalancer.minimumRingSize: must be an integer 1-8388608',
      'spec.loadBalancer.hashOn.header.name: must be a valid HTTP header name (an RFC 7230 token)',
      'spec.loadBalancer.hashOn.sourceAddress: must not be set together with header',
    ]);
    // Cookie generation (Envoy's `ttl`) is not supported, so `ttl` is refused rather than ignored.
    assert.deepEqual(lb({ type: 'Maglev', hashOn: { cookie: { ttl: '1h' } } }), ['spec.loadBalancer.hashOn.cookie.ttl: unknown field', 'spec.loadBalancer.hashOn.cookie.name: required']);
    assert.deepEqual(lb({ type: 'Maglev', hashOn: { sourceAddress: false } }), ['spec.loadBalancer.hashOn.sourceAddress: must be true (leave it out otherwise)']);
    assert.deepEqual(lb({ type: 'PeakEWMA', decay: '0s' }), ['spec.loadBalancer.decay: must be greater than 0']);
  });

  test('Mesh defaults name no hashing balancer; locality and weight ranges', () => {
    assert.deepEqual(problems(res(W, 'Mesh', { defaults: { loadBalancer: 'Maglev' } })), [
      'spec.defaults.loadBalancer: Maglev needs hashOn, which a Mesh default cannot give: set it per Service with a BackendPolicy',
    ]);
    assert.deepEqual(problems(policy({ locality: { enabled: 'yes', overprovisioningFactor: 99 } })), [
      'spec.locality.enabled: must be true or false',
      'spec.locality.overprovisioningFactor: must be an integer 100-1000',
    ]);
    assert.deepEqual(problems(workload({ weight: 0 })), ['spec.weight: must be an integer 1-128']);
    assert.deepEqual(problems(workload({ weight: 1.5 })), ['spec.weight: must be an integer 1-128']);
  });
});

describe('Weft kinds', () => {
  test('Mesh', () => {
    assert.deepEqual(problems(res(W, 'Mesh', { trustDomain: 'Example.org', mtls: { mode: 'strict' }, certificateLifetime: '0s', defaults: { connectTimeout: '2 s', loadBalancer: 'Random' } })), [
      'spec.trustDomain: must be a SPIFFE trust domain (lowercase letters, digits, ".", "-" and "_")',
      'spec.mtls.mode: must be one of "STRICT", "PERMISSIVE", "DISABLED"',
      'spec.certificateLifetime: must be greater than 0',
      'spec.defaults.connectTimeout: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
      'spec.defaults.loadBalancer: must be one of "RoundRobin", "LeastRequest", "PeakEWMA"',
    ]);
    assert.deepEqual(problems(res(W, 'Mesh', { mtls: {} })), ['spec.mtls.mode: required']);
  });

  test('Service ports', () => {
    assert.deepEqual(problems(service({ ports: [{ name: 'http', port: 80 }, { name: 'web', port: 70000 }] })), ['spec.ports[1].port: must be an integer 1-65535']);
    assert.deepEqual(problems(service({ ports: [{ name: 'http', port: 80.5, protocol: 'UDP', targetPort: true }] })), [
      'spec.ports[0].port: must be an integer 1-65535',
      'spec.ports[0].protocol: must be one of "HTTP", "HTTP2", "GRPC", "TCP"',
      'spec.ports[0].targetPort: must be a port name or number',
    ]);
    assert.deepEqual(problems(service({ ports: [{ name: 'HTTP', port: '80', targetPort: 0 }] })), [
      'spec.ports[0].name: must be a port name (lowercase letters, digits and "-", with a letter, at most 15 characters)',
      'spec.ports[0].port: must be an integer 1-65535',
      'spec.ports[0].targetPort: must be an integer 1-65535',
    ]);
    assert.deepEqual(problems(service({ ports: [{ name: 'a', port: 80 }, { name: 'a', port: 80 }] })), ['spec.ports[1].name: duplicate "a"', 'spec.ports[1].port: duplicate 80']);
    assert.deepEqual(problems(service({ ports: [] })), ['spec.ports: must have at least 1 item']);
    assert.deepEqual(problems(service({ ports: [{}] })), ['spec.ports[0].name: required', 'spec.ports[0].port: required']);
  });

  test('Service selector', () => {
    assert.deepEqual(problems(service({ selector: {} })), ['spec.selector: must select at least one label']);
    assert.deepEqual(problems(res(W, 'Service', { ports: [{ name: 'http', port: 80 }] })), ['spec.selector: required']);
  });

  test('Workload', () => {
    assert.deepEqual(problems(workload({ address: '::1' })), []);
    assert.deepEqual(problems(workload({ address: 'echo-1.hosts.internal' })), []);
    assert.deepEqual(problems(workload({ address: '10.0.0.1:80', ports: { http: 8080, 'Bad Name': 1, '8080': 2 }, serviceAccount: 'Admin', proxy: { inboundPort: 8080 } })), [
      'spec.address: must be an IPv4 or IPv6 address or a lowercase hostname',
      'spec.ports["8080"]: must be a port name (lowercase letters, digits and "-", with a letter, at most 15 characters)',
      'spec.ports["Bad Name"]: must be a port name (lowercase letters, digits and "-", with a letter, at most 15 characters)',
      'spec.serviceAccount: must be a lowercase RFC 1123 hostname',
      'spec.proxy.inboundPort: must differ from the app ports',
    ]);
    assert.deepEqual(problems(workload({ proxy: {} })), ['spec.proxy.inboundPort: required']);
  });

  test('BackendPolicy', () => {
    assert.deepEqual(problems(res(W, 'BackendPolicy', { targetRefs: [] })), ['spec.targetRefs: must have at least 1 item']);
    assert.deepEqual(problems(res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Deployment', name: 'a' }], loadBalancer: { type: 'Random' }, connectTimeout: '1d' })), [
      'spec.targetRefs[0].kind: must be "Service"',
      'spec.loadBalancer.type: must be one of "RoundRobin", "LeastRequest", "PeakEWMA", "RingHash", "Maglev"',
      'spec.connectTimeout: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
    ]);
    assert.deepEqual(problems(res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], retryBudget: { percent: 20, minRetriesPerSecond: 10 } })), []);
    assert.deepEqual(problems(res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], retryBudget: { percent: 101, minRetriesPerSecond: -1, ttl: '10s' } })), [
      'spec.retryBudget.ttl: unknown field',
      'spec.retryBudget.percent: must be an integer 0-100',
      'spec.retryBudget.minRetriesPerSecond: must be an integer 0-1000000',
    ]);
    assert.deepEqual(problems(res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], circuitBreaker: { maxConnections: 1, maxPendingRequests: 10, maxRequests: 1024, maxRetries: 3 } })), []);
    assert.deepEqual(problems(res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], circuitBreaker: { maxConnections: 0, maxPendingRequests: -1, maxRequests: 1.5, maxRetries: '3', maxIdle: 2 } })), [
      'spec.circuitBreaker.maxIdle: unknown field',
      'spec.circuitBreaker.maxConnections: must be an integer 1-1000000000',
      'spec.circuitBreaker.maxPendingRequests: must be an integer 1-1000000000',
      'spec.circuitBreaker.maxRequests: must be an integer 1-1000000000',
      'spec.circuitBreaker.maxRetries: must be an integer 1-1000000000',
    ]);
  });

  test('BackendPolicy outlierDetection and healthCheck', () => {
    const policy = (spec: object) => res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], ...spec });
    const od = { consecutive5xx: 3, consecutiveGatewayErrors: 0, consecutiveConnectFailures: 2, interval: '5s', baseEjectionTime: '1s', maxEjectionTime: '1m', maxEjectionPercent: 50, successRate: { minimumHosts: 3, requestVolume: 50, stdevFactor: 1900 } };
    assert.deepEqual(problems(policy({ outlierDetection: od })), []);
    assert.deepEqual(problems(policy({ outlierDetection: {} })), []);
    assert.deepEqual(problems(policy({ outlierDetection: { consecutive5xx: -1, consecutiveGatewayErrors: 1.5, interval: '0s', baseEjectionTime: 'soon', maxEjectionPercent: 101, successRate: { stdevFactor: 0, minimumHosts: 0 }, splitExternal: true } })), [
      'spec.outlierDetection.splitExternal: unknown field',
      'spec.outlierDetection.consecutive5xx: must be an integer 0-1000000',
      'spec.outlierDetection.consecutiveGatewayErrors: must be an integer 0-1000000',
      'spec.outlierDetection.interval: must be greater than 0',
      'spec.outlierDetection.baseEjectionTime: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
      'spec.outlierDetection.maxEjectionPercent: must be an integer 0-100',
      'spec.outlierDetection.successRate.minimumHosts: must be an integer 1-100000',
      'spec.outlierDetection.successRate.stdevFactor: must be an integer 1-100000',
    ]);
    assert.deepEqual(problems(policy({ outlierDetection: { baseEjectionTime: '1m', maxEjectionTime: '30s' } })), ['spec.outlierDetection.maxEjectionTime: must not be less than baseEjectionTime (1m)']);
    assert.deepEqual(problems(policy({ healthCheck: { http: { path: '/healthz', expectedStatuses: [200, 204] }, interval: '2s', timeout: '500ms', healthyThreshold: 2, unhealthyThreshold: 3 } })), []);
    assert.deepEqual(problems(policy({ healthCheck: { tcp: {} } })), []);
    assert.deepEqual(problems(policy({ healthCheck: { interval: '1s' } })), ['spec.healthCheck: must set exactly one of http and tcp']);
    assert.deepEqual(problems(policy({ healthCheck: { http: { path: '/h' }, tcp: {} } })), ['spec.healthCheck: must set exactly one of http and tcp']);
    assert.deepEqual(problems(policy({ healthCheck: { http: { path: 'healthz', expectedStatuses: [99] }, tcp: { port: 1 }, healthyThreshold: 0, unhealthyThreshold: 'two' } })), [
      'spec.healthCheck.http.path: must start with "/"',
      'spec.healthCheck.http.expectedStatuses[0]: must be an integer 100-599',
      'spec.healthCheck.tcp.port: unknown field',
      'spec.healthCheck.healthyThreshold: must be an integer 1-1000',
      'spec.healthCheck.unhealthyThreshold: must be an integer 1-1000',
      'spec.healthCheck: must set exactly one of http and tcp',
    ]);
    assert.deepEqual(problems(policy({ healthCheck: { http: {}, expectedStatuses: [] } })), ['spec.healthCheck.expectedStatuses: unknown field', 'spec.healthCheck.http.path: required']);
    assert.deepEqual(problems(policy({ healthCheck: { tcp: {}, timeout: '6s' } })), ['spec.healthCheck.timeout: must not exceed interval (5s)']);
    assert.deepEqual(problems(policy({ healthCheck: { tcp: {}, interval: '1s', timeout: '2s' } })), ['spec.healthCheck.timeout: must not exceed interval (1s)']);
  });
});

describe('AuthorizationPolicy', () => {
  const authzRule = (r: object) => authz({ rules: [r] });

  test('the full example is valid; rules are optional, and may be empty', () => {
    const example = {
      targetRefs: [{ group: '', kind: 'Service', name: 'reviews' }],
      action: 'ALLOW',
      rules: [
        {
          from: [{ identities: ['spiffe://cluster.local/ns/default/sa/catalog', 'spiffe://*/ns/shop/sa/*'], namespaces: ['default', 'team-*'] }],
          to: [{ ports: [80], methods: ['GET', 'HEAD'], paths: ['/reviews/*', '/healthz', '*.json', '*'] }],
          when: [{ header: 'x-user', values: ['alice', 'b*'] }, { header: 'x-user', notValues: ['mallory'] }],
        },
      ],
    };
    assert.deepEqual(problems(res(W, 'AuthorizationPolicy', example)), []);
    assert.deepEqual(problems(authz({})), []);
    assert.deepEqual(problems(authz({ rules: [] })), []);
    assert.deepEqual(problems(authz({ rules: [{}] })), []);
  });

  test('targetRefs and action', () => {
    assert.deepEqual(problems(res(W, 'AuthorizationPolicy', {})), ['spec.targetRefs: required']);
    assert.deepEqual(problems(authz({ targetRefs: [] })), ['spec.targetRefs: must have at least 1 item']);
    assert.deepEqual(problems(authz({ targetRefs: [{ kind: 'Workload', name: 'a', namespace: 'b' }], action: 'allow' })), [
      'spec.targetRefs[0].namespace: unknown field',
      'spec.targetRefs[0].kind: must be "Service"',
      'spec.action: must be one of "ALLOW", "DENY"',
    ]);
  });

  test('unknown fields anywhere', () => {
    assert.deepEqual(problems(authz({ selector: {}, rules: [{ from: [{ principals: ['x'] }], to: [{ hosts: ['a'] }], when: [{ key: 'request.headers[x]', values: ['1'] }] }] })), [
      'spec.selector: unknown field',
      'spec.rules[0].from[0].principals: unknown field',
      'spec.rules[0].from[0]: must set identities or namespaces (leave "from" out to match any caller)',
      'spec.rules[0].to[0].hosts: unknown field',
      'spec.rules[0].to[0]: must set one of ports, methods, paths (leave "to" out to match any request)',
      'spec.rules[0].when[0].key: unknown field',
      'spec.rules[0].when[0].header: required',
    ]);
  });

  test('empty from and to entries, and empty lists, are refused', () => {
    assert.deepEqual(problems(authzRule({ from: [{}], to: [{ methods: ['GET'] }, {}] })), [
      'spec.rules[0].from[0]: must set identities or namespaces (leave "from" out to match any caller)',
      'spec.rules[0].to[1]: must set one of ports, methods, paths (leave "to" out to match any request)',
    ]);
    assert.deepEqual(problems(authzRule({ from: [], to: [], when: [] })), [
      'spec.rules[0].from: must have at least 1 item',
      'spec.rules[0].to: must have at least 1 item',
      'spec.rules[0].when: must have at least 1 item',
    ]);
    assert.deepEqual(problems(authzRule({ from: [{ identities: [], namespaces: [] }], to: [{ ports: [], methods: [], paths: [] }] })), [
      'spec.rules[0].from[0].identities: must have at least 1 item',
      'spec.rules[0].from[0].namespaces: must have at least 1 item',
      'spec.rules[0].to[0].ports: must have at least 1 item',
      'spec.rules[0].to[0].methods: must have at least 1 item',
      'spec.rules[0].to[0].paths: must have at least 1 item',
    ]);
  });

  test('sources: SPIFFE ID patterns and namespace patterns', () => {
    assert.deepEqual(problems(authzRule({ from: [{ identities: ['spiffe://a/ns/b/sa/c', 'cluster.local/ns/a/sa/b', '', 'spiffe://', '*', 'spiffe://a b'] }, { namespaces: ['team-*', 'Team', '', 'a/b', 3] }] })), [
      'spec.rules[0].from[0].identities[1]: must be a SPIFFE ID starting with "spiffe://", like "spiffe://cluster.local/ns/shop/sa/*" ("*" matches any run of characters)',
      'spec.rules[0].from[0].identities[2]: must be a non-empty SPIFFE ID pattern',
      'spec.rules[0].from[0].identities[3]: must be a SPIFFE ID starting with "spiffe://", like "spiffe://cluster.local/ns/shop/sa/*" ("*" matches any run of characters)',
      'spec.rules[0].from[0].identities[4]: must be a SPIFFE ID starting with "spiffe://", like "spiffe://cluster.local/ns/shop/sa/*" ("*" matches any run of characters)',
      'spec.rules[0].from[0].identities[5]: must not contain whitespace',
      'spec.rules[0].from[1].namespaces[1]: must be a namespace name (lowercase letters, digits and "-"), "*" matching any run of characters',
      'spec.rules[0].from[1].namespaces[2]: must be a non-empty namespace pattern',
      'spec.rules[0].from[1].namespaces[3]: must be a namespace name (lowercase letters, digits and "-"), "*" matching any run of characters',
      'spec.rules[0].from[1].namespaces[4]: must be a string',
    ]);
  });

  test('operations: service ports, method tokens and path patterns', () => {
    assert.deepEqual(problems(authzRule({ to: [{ ports: [80, 0, '443'] }, { methods: ['GET', 'get', 'PROPFIND', 'BAD METHOD', ''] }, { paths: ['/a', '', 'a/*', '/a?b=1', '/a#x', '/a b', '*', '*/x'] }] })), [
      'spec.rules[0].to[0].ports[1]: must be an integer 1-65535',
      'spec.rules[0].to[0].ports[2]: must be an integer 1-65535',
      'spec.rules[0].to[1].methods[1]: must be an upper-case HTTP method token, like "GET"',
      'spec.rules[0].to[1].methods[3]: must be an upper-case HTTP method token, like "GET"',
      'spec.rules[0].to[1].methods[4]: must be an upper-case HTTP method token, like "GET"',
      'spec.rules[0].to[2].paths[1]: must be a non-empty path pattern',
      'spec.rules[0].to[2].paths[2]: must start with "/" or "*"',
      'spec.rules[0].to[2].paths[3]: must not contain "?" or "#" (the query string is not matched)',
      'spec.rules[0].to[2].paths[4]: must not contain "?" or "#" (the query string is not matched)',
      'spec.rules[0].to[2].paths[5]: must not contain whitespace or NUL',
    ]);
  });

  test('conditions: a header and exactly one of values and notValues', () => {
    assert.deepEqual(problems(authzRule({ when: [{ header: 'x-a' }, { header: 'x-b', values: ['1'], notValues: ['2'] }, { header: 'bad name', values: ['', 'a\nb'] }, { header: 'x-c', notValues: [] }] })), [
      'spec.rules[0].when[0]: must set values or notValues',
      'spec.rules[0].when[1].notValues: must not be set together with values',
      'spec.rules[0].when[2].header: must be a valid HTTP header name (an RFC 7230 token)',
      'spec.rules[0].when[2].values[0]: must be a non-empty header value pattern',
      'spec.rules[0].when[2].values[1]: must not contain CR, LF or NUL',
      'spec.rules[0].when[3].notValues: must have at least 1 item',
    ]);
  });

  test('every error of every rule at once', () => {
    assert.deepEqual(problems(authz({ action: 'LOG', rules: [{ to: [{ methods: ['get'] }] }, { from: [{}] }, 'x'] })), [
      'spec.action: must be one of "ALLOW", "DENY"',
      'spec.rules[0].to[0].methods[0]: must be an upper-case HTTP method token, like "GET"',
      'spec.rules[1].from[0]: must set identities or namespaces (leave "from" out to match any caller)',
      'spec.rules[2]: must be a map',
    ]);
  });
});

describe('HTTPRoute', () => {
  test('parentRefs', () => {
    assert.deepEqual(problems(route({ parentRefs: [] })), ['spec.parentRefs: must have at least 1 item']);
    assert.deepEqual(problems(route({ parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw', sectionName: 'http' }] })), [
      'spec.parentRefs[0].sectionName: unknown field',
      'spec.parentRefs[0].group: must be ""',
      'spec.parentRefs[0].kind: must be "Service"',
    ]);
    assert.deepEqual(problems(route({ parentRefs: [{ name: 'a', port: 0 }] })), ['spec.parentRefs[0].kind: required', 'spec.parentRefs[0].port: must be an integer 1-65535']);
  });

  test('unknown fields anywhere', () => {
    assert.deepEqual(problems(route({ rulez: [] })), ['spec.rulez: unknown field']);
    assert.deepEqual(problems(rule({ matches: [{ path: { value: '/', kind: 'x' } }] })), ['spec.rules[0].matches[0].path.kind: unknown field']);
  });

  test('path values', () => {
    assert.deepEqual(problems(rule({ matches: [{ path: { type: 'PathPrefix', value: 'api' } }] })), ['spec.rules[0].matches[0].path.value: must start with "/"']);
    assert.deepEqual(problems(rule({ matches: [{ path: { value: 'api' } }] })), ['spec.rules[0].matches[0].path.value: must start with "/"'], 'PathPrefix is the default type');
    assert.deepEqual(problems(rule({ matches: [{ path: { type: 'Exact', value: '/a//b' } }, { path: { value: '/a/../b' } }, { path: { value: '/a%2Fb' } }, { path: { value: '/a/.' } }] })), [
      'spec.rules[0].matches[0].path.value: must be a normalized path (no "//", "/./", "/../", "%2f" or "#")',
      'spec.rules[0].matches[1].path.value: must be a normalized path (no "//", "/./", "/../", "%2f" or "#")',
      'spec.rules[0].matches[2].path.value: must be a normalized path (no "//", "/./", "/../", "%2f" or "#")',
      'spec.rules[0].matches[3].path.value: must be a normalized path (no "//", "/./", "/../", "%2f" or "#")',
    ]);
    assert.deepEqual(problems(rule({ matches: [{ path: { type: 'Regex', value: '/' } }] })), ['spec.rules[0].matches[0].path.type: must be one of "Exact", "PathPrefix", "RegularExpression"']);
    assert.deepEqual(problems(rule({ matches: [{ path: { type: 'RegularExpression', value: '.*/v[0-9]+' } }] })), [], 'a regex need not start with "/"');
  });

  test('regular expressions must compile, in paths, headers and query params', () => {
    const got = problems(
      rule({
        matches: [
          { path: { type: 'RegularExpression', value: '/api/(' } },
          { headers: [{ type: 'RegularExpression', name: 'x-v', value: '[a-' }], queryParams: [{ type: 'RegularExpression', name: 'q', value: '*' }] },
          { headers: [{ name: 'x-v', value: '[a-' }] },
        ],
      }),
    );
    assert.equal(got.length, 3);
    assert.match(got[0]!, /^spec\.rules\[0\]\.matches\[0\]\.path\.value: must be a valid regular expression \(.*Unterminated group\)$/);
    assert.match(got[1]!, /^spec\.rules\[0\]\.matches\[1\]\.headers\[0\]\.value: must be a valid regular expression/);
    assert.match(got[2]!, /^spec\.rules\[0\]\.matches\[1\]\.queryParams\[0\]\.value: must be a valid regular expression/);
  });

  test('header matches', () => {
    assert.deepEqual(problems(rule({ matches: [{ headers: [{ name: 'x canary', value: '1' }, { name: 'x-a:', value: '' }, { name: 'ok', value: 'a\r\nb' }] }] })), [
      'spec.rules[0].matches[0].headers[0].name: must be a valid HTTP header name (an RFC 7230 token)',
      'spec.rules[0].matches[0].headers[1].name: must be a valid HTTP header name (an RFC 7230 token)',
      'spec.rules[0].matches[0].headers[1].value: must be 1-4096 characters',
      'spec.rules[0].matches[0].headers[2].value: must not contain CR, LF or NUL',
    ]);
    assert.deepEqual(problems(rule({ matches: [{ headers: [{ name: 'X-A', value: '1' }, { name: 'x-a', value: '2' }], queryParams: [{ name: 'q', value: '1' }, { name: 'Q', value: '1' }, { name: 'q', value: '2' }] }] })), [
      'spec.rules[0].matches[0].headers[1].name: duplicate "x-a"',
      'spec.rules[0].matches[0].queryParams[2].name: duplicate "q"',
    ]);
    assert.deepEqual(problems(rule({ matches: [{ headers: [{ type: 'Prefix', name: 'a' }] }] })), [
      'spec.rules[0].matches[0].headers[0].type: must be one of "Exact", "RegularExpression"',
      'spec.rules[0].matches[0].headers[0].value: required',
    ]);
  });

  test('method', () => {
    assert.deepEqual(problems(rule({ matches: [{ method: 'GET' }, { method: 'get' }] })), [
      'spec.rules[0].matches[1].method: must be one of "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"',
    ]);
  });

  test('filters need the config of their type and nothing else', () => {
    assert.deepEqual(problems(rule({ filters: [{ type: 'URLRewrite' }, { type: 'RequestHeaderModifier', requestHeaderModifier: {}, urlRewrite: {} }, { type: 'RequestMirror' }] })), [
      'spec.rules[0].filters[0].urlRewrite: required when type is URLRewrite',
      'spec.rules[0].filters[1].urlRewrite: must not be set when type is RequestHeaderModifier',
      'spec.rules[0].filters[2].requestMirror: required when type is RequestMirror',
    ]);
    assert.deepEqual(problems(rule({ filters: [{ type: 'Mirror' }] })), [
      'spec.rules[0].filters[0].type: must be one of "RequestHeaderModifier", "ResponseHeaderModifier", "URLRewrite", "RequestRedirect", "ExtensionRef", "RequestMirror"',
    ]);
  });

  test('a filter type appears at most once per rule', () => {
    const f = { type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['server'] } };
    assert.deepEqual(problems(rule({ filters: [f, f] })), ['spec.rules[0].filters[1].type: duplicate "ResponseHeaderModifier"']);
  });

  test('header modifiers', () => {
    const modifier = { set: [{ name: 'X-A', value: '1' }, { name: 'x-a', value: '2' }], add: [{ name: 'bad name', value: 'v' }], remove: ['x-b', 'X-B'] };
    assert.deepEqual(problems(rule({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: modifier }] })), [
      'spec.rules[0].filters[0].requestHeaderModifier.add[0].name: must be a valid HTTP header name (an RFC 7230 token)',
      'spec.rules[0].filters[0].requestHeaderModifier.set[1].name: duplicate "x-a"',
      'spec.rules[0].filters[0].requestHeaderModifier.remove[1]: duplicate "x-b"',
    ]);
  });

  test('path modifiers', () => {
    const rewrite = (path: object) => rule({ filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'Bad_Host', path } }] });
    assert.deepEqual(problems(rewrite({ type: 'ReplaceFullPath', replacePrefixMatch: '/x' })), [
      'spec.rules[0].filters[0].urlRewrite.hostname: must be a lowercase RFC 1123 hostname',
      'spec.rules[0].filters[0].urlRewrite.path.replaceFullPath: required when type is ReplaceFullPath',
      'spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch: must not be set when type is ReplaceFullPath',
    ]);
    assert.deepEqual(problems(rewrite({ type: 'ReplaceFullPath', replaceFullPath: 'x' })).slice(1), ['spec.rules[0].filters[0].urlRewrite.path.replaceFullPath: must start with "/"']);
  });

  test('ReplacePrefixMatch needs every match of the rule to be a PathPrefix', () => {
    const filters = [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } }];
    assert.deepEqual(problems(rule({ filters, matches: [{ path: { value: '/v1' } }, {}, { path: { type: 'Exact', value: '/v1' } }] })), [
      'spec.rules[0].matches[2].path.type: must be PathPrefix when a filter uses ReplacePrefixMatch',
    ]);
    const redirect = [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }];
    assert.deepEqual(problems(rule({ filters: redirect, matches: [{ path: { type: 'RegularExpression', value: '/v1' } }] })), [
      'spec.rules[0].matches[0].path.type: must be PathPrefix when a filter uses ReplacePrefixMatch',
    ]);
  });

  test('redirects', () => {
    const redirect = (r: object) => ({ type: 'RequestRedirect', requestRedirect: r });
    assert.deepEqual(problems(rule({ filters: [redirect({ scheme: 'https', hostname: 'a.example', port: 8443, statusCode: 301 })] })), []);
    assert.deepEqual(problems(rule({ filters: [redirect({ scheme: 'ftp', port: 0, statusCode: 307 })] })), [
      'spec.rules[0].filters[0].requestRedirect.scheme: must be one of "http", "https"',
      'spec.rules[0].filters[0].requestRedirect.port: must be an integer 1-65535',
      'spec.rules[0].filters[0].requestRedirect.statusCode: must be 301 or 302',
    ]);
    assert.deepEqual(problems(rule({ filters: [redirect({})], backendRefs: [{ name: 'a', port: 80 }] })), ['spec.rules[0].backendRefs: must be empty when the rule has a RequestRedirect filter']);
    assert.deepEqual(problems(rule({ filters: [redirect({}), { type: 'URLRewrite', urlRewrite: { hostname: 'a' } }] })), ['spec.rules[0].filters: must not have both RequestRedirect and URLRewrite']);
  });

  test('backendRefs', () => {
    assert.deepEqual(problems(rule({ backendRefs: [{ name: 'a' }, { kind: 'ServiceImport', name: 'B', port: 80, weight: -1 }, { name: 'c', port: 80, weight: 1_000_001 }] })), [
      'spec.rules[0].backendRefs[0].port: required',
      'spec.rules[0].backendRefs[1].kind: must be "Service"',
      'spec.rules[0].backendRefs[1].name: must be a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)',
      'spec.rules[0].backendRefs[1].weight: must be an integer 0-1000000',
      'spec.rules[0].backendRefs[2].weight: must be an integer 0-1000000',
    ]);
    assert.deepEqual(problems(rule({ backendRefs: [{ name: 'a', port: 80, filters: [{ type: 'URLRewrite' }] }] })), ['spec.rules[0].backendRefs[0].filters[0].urlRewrite: required when type is URLRewrite']);
  });

  test('timeouts', () => {
    assert.deepEqual(problems(rule({ timeouts: { request: '10s', backendRequest: '2s' } })), []);
    assert.deepEqual(problems(rule({ timeouts: { request: '0s', backendRequest: '1h' } })), [], 'a request timeout of 0s is none, so any backendRequest fits');
    assert.deepEqual(problems(rule({ timeouts: { request: '1s', backendRequest: '1500ms' } })), ['spec.rules[0].timeouts.backendRequest: must not exceed request (1s)']);
    assert.deepEqual(problems(rule({ timeouts: { request: '1.5s', backendRequest: '10' } })), [
      'spec.rules[0].timeouts.request: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
      'spec.rules[0].timeouts.backendRequest: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
    ]);
  });

  test('retry (GEP-1731 plus onConnectFailure and allowNonIdempotent)', () => {
    assert.deepEqual(problems(rule({ retry: { codes: [500, 503], attempts: 3, backoff: '100ms', onConnectFailure: false, allowNonIdempotent: true } })), []);
    assert.deepEqual(problems(rule({ retry: {} })), []);
    assert.deepEqual(problems(rule({ retry: { codes: [200, 503, 503], attempts: 11, backoff: '1x', onConnectFailure: 'yes', retryOn: 'reset' } })), [
      'spec.rules[0].retry.retryOn: unknown field',
      'spec.rules[0].retry.codes[0]: must be an integer 400-599',
      'spec.rules[0].retry.attempts: must be an integer 0-10',
      'spec.rules[0].retry.backoff: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
      'spec.rules[0].retry.onConnectFailure: must be true or false',
      'spec.rules[0].retry.codes[2]: duplicate 503',
    ]);
  });

  test('wrong types', () => {
    assert.deepEqual(problems(route({ rules: {} })), ['spec.rules: must be a list']);
    assert.deepEqual(problems(route({ rules: [null, 'x'] })), ['spec.rules[0]: must be a map', 'spec.rules[1]: must be a map']);
  });
});

test('TCPRoute', () => {
  const tcp = (spec: object) => res('gateway.networking.k8s.io/v1alpha2', 'TCPRoute', { parentRefs: [{ kind: 'Service', name: 'a' }], ...spec });
  assert.deepEqual(problems(tcp({})), ['spec.rules: required']);
  assert.deepEqual(problems(tcp({ rules: [] })), ['spec.rules: must have at least 1 item']);
  assert.deepEqual(problems(tcp({ rules: [{ backendRefs: [] }, { backendRefs: [{ name: 'b', port: 1, filters: [] }] }] })), [
    'spec.rules[0].backendRefs: must have at least 1 item',
    'spec.rules[1].backendRefs[0].filters: unknown field',
  ]);
});

describe('GRPCRoute', () => {
  const grpc = (spec: object, apiVersion = GW) => res(apiVersion, 'GRPCRoute', { parentRefs: [{ kind: 'Service', name: 'a', port: 9000 }], ...spec });
  const grule = (r: object) => grpc({ rules: [r] });
  const method = (m: object) => grule({ matches: [{ method: m }] });

  test('a full route, in v1 and v1alpha2, has no problems', () => {
    const spec = {
      hostnames: ['a.example'],
      rules: [
        {
          matches: [
            { method: { service: 'shop.v1.Catalog', method: 'GetItem' }, headers: [{ name: 'x-env', value: 'prod' }, { type: 'RegularExpression', name: 'x-id', value: '[0-9]+' }] },
            { method: { type: 'Exact', service: '.shop.v1.Catalog' } },
            { method: { method: 'List_Items2' } },
            { method: { type: 'RegularExpression', service: 'shop\\.v[0-9]+\\..*', method: 'Get.*' } },
            { headers: [{ name: 'x-canary', value: '1' }] },
          ],
          filters: [
            { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: 'b' }] } },
            { type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['x-b'] } },
            { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 9000 }, percent: 10 } },
            { type: 'RequestMirror', requestMirror: { backendRef: { kind: 'Service', name: 'other', namespace: 'b', port: 9000 }, fraction: { numerator: 1, denominator: 3 } } },
          ],
          backendRefs: [{ name: 'a', port: 9000, weight: 90, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'x-v', value: '1' }] } }] }, { name: 'a-v2', port: 9000, weight: 10 }],
        },
        {},
      ],
    };
    assert.deepEqual(problems(grpc(spec)), []);
    assert.deepEqual(problems(grpc(spec, 'gateway.networking.k8s.io/v1alpha2')), []);
    assert.deepEqual(problems(grpc({})), []);
    assert.deepEqual(problems(res(GW, 'GRPCRoute', {})), ['spec.parentRefs: required']);
  });

  test('retry (Weft): gRPC status code names, attempts, backoff, onConnectFailure', () => {
    assert.deepEqual(problems(grule({ retry: { codes: ['UNAVAILABLE', 'RESOURCE_EXHAUSTED'], attempts: 3, backoff: '50ms', onConnectFailure: false } })), []);
    assert.deepEqual(problems(grule({ retry: {} })), []);
    const names = 'CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED';
    assert.deepEqual(problems(grule({ retry: { codes: ['unavailable', 14, 'OK', 'UNAVAILABLE', 'UNAVAILABLE'], attempts: 11, allowNonIdempotent: true } })), [
      'spec.rules[0].retry.allowNonIdempotent: unknown field',
      `spec.rules[0].retry.codes[0]: must be a gRPC status code name: ${names}`,
      `spec.rules[0].retry.codes[1]: must be a gRPC status code name: ${names}`,
      `spec.rules[0].retry.codes[2]: must be a gRPC status code name: ${names}`,
      'spec.rules[0].retry.attempts: must be an integer 0-10',
      'spec.rules[0].retry.codes[4]: duplicate "UNAVAILABLE"',
    ]);
  });

  test('a method match needs a service or a method', () => {
    const need = 'must set service or method (or both); leave "method" out to match every call';
    assert.deepEqual(problems(method({})), [`spec.rules[0].matches[0].method: ${need}`]);
    assert.deepEqual(problems(method({ type: 'Exact', service: '', method: '' })), [`spec.rules[0].matches[0].method: ${need}`]);
    assert.deepEqual(problems(method({ type: 'RegularExpression' })), [`spec.rules[0].matches[0].method: ${need}`]);
    assert.deepEqual(problems(method({ service: '', method: 'Get' })), [], 'an empty name matches any');
  });

  test('Exact names have the shape of gRPC names', () => {
    assert.deepEqual(problems(method({ service: 'shop/v1.Catalog', method: 'Get-Item' })), [
      'spec.rules[0].matches[0].method.service: must be a gRPC service name like "shop.v1.Catalog" (dot-separated names of letters, digits and "_") when type is Exact',
      'spec.rules[0].matches[0].method.method: must be a gRPC method name like "GetItem" (letters, digits and "_") when type is Exact',
    ]);
    assert.deepEqual(problems(method({ service: 'shop..Catalog' })), [
      'spec.rules[0].matches[0].method.service: must be a gRPC service name like "shop.v1.Catalog" (dot-separated names of letters, digits and "_") when type is Exact',
    ]);
    assert.deepEqual(problems(method({ service: 'a'.repeat(1025) })), ['spec.rules[0].matches[0].method.service: must be at most 1024 characters']);
    assert.deepEqual(problems(method({ type: 'Prefix', method: 'Get' })), ['spec.rules[0].matches[0].method.type: must be one of "Exact", "RegularExpression"']);
  });

  test('regular expressions must compile, alone and together', () => {
    assert.deepEqual(problems(method({ type: 'RegularExpression', service: 'shop.*', method: 'Get(' })), [
      'spec.rules[0].matches[0].method.method: must be a valid regular expression (Invalid regular expression: /Get(/: Unterminated group)',
    ]);
    const [both] = problems(method({ type: 'RegularExpression', service: '(?<v>a)', method: '(?<v>b)' }));
    assert.match(both!, /^spec\.rules\[0\]\.matches\[0\]\.method: service and method patterns must form a valid regular expression together \(.*\)$/);
    assert.deepEqual(problems(grule({ matches: [{ headers: [{ type: 'RegularExpression', name: 'x-a', value: '(' }] }] })), [
      'spec.rules[0].matches[0].headers[0].value: must be a valid regular expression (Invalid regular expression: /(/: Unterminated group)',
    ]);
  });

  test('headers: valid names and values, each name once', () => {
    assert.deepEqual(problems(grule({ matches: [{ headers: [{ name: 'X-A', value: '1' }, { name: 'x-a', value: '2' }, { name: 'bad name', value: '' }] }] })), [
      'spec.rules[0].matches[0].headers[2].name: must be a valid HTTP header name (an RFC 7230 token)',
      'spec.rules[0].matches[0].headers[2].value: must be 1-4096 characters',
      'spec.rules[0].matches[0].headers[1].name: duplicate "x-a"',
    ]);
  });

  test('filters: header modifiers once each, RequestMirror any number of times, ExtensionRef refused', () => {
    const header = { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x', value: 'y' }] } };
    const mirror = { type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 1 } } };
    assert.deepEqual(problems(grule({ filters: [header, mirror, mirror, header] })), ['spec.rules[0].filters[3].type: duplicate "RequestHeaderModifier"']);
    assert.deepEqual(problems(grule({ filters: [{ type: 'ExtensionRef', extensionRef: {} }, { type: 'URLRewrite' }, { type: 'RequestMirror' }, { type: 'RequestHeaderModifier', requestMirror: {} }] })), [
      'spec.rules[0].filters[0].extensionRef: unknown field',
      'spec.rules[0].filters[0].type: ExtensionRef is not supported yet (a filter that cannot be applied must not be skipped, so the route is refused)',
      'spec.rules[0].filters[1].type: must be one of "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror"',
      'spec.rules[0].filters[2].requestMirror: required when type is RequestMirror',
      'spec.rules[0].filters[3].requestMirror.backendRef: required',
      'spec.rules[0].filters[3].requestHeaderModifier: required when type is RequestHeaderModifier',
      'spec.rules[0].filters[3].requestMirror: must not be set when type is RequestHeaderModifier',
    ]);
    assert.deepEqual(problems(grule({ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 1, weight: 1 }, percent: 101, fraction: { numerator: 3, denominator: 2 } } }] })), [
      'spec.rules[0].filters[0].requestMirror.backendRef.weight: unknown field',
      'spec.rules[0].filters[0].requestMirror.percent: must be an integer 0-100',
      'spec.rules[0].filters[0].requestMirror.fraction.numerator: must not exceed denominator (2)',
      'spec.rules[0].filters[0].requestMirror.fraction: must not be set together with percent',
    ]);
  });

  test('unknown fields, including HTTPRoute-only ones, and backendRefs', () => {
    assert.deepEqual(problems(grule({ timeouts: { request: '1s' }, matches: [{ path: { value: '/a' }, method: { service: 'a', methods: 'B' } }], backendRefs: [{ name: 'a' }, { port: 1, weight: -1 }] })), [
      'spec.rules[0].timeouts: unknown field',
      'spec.rules[0].matches[0].path: unknown field',
      'spec.rules[0].matches[0].method.methods: unknown field',
      'spec.rules[0].backendRefs[0].port: required',
      'spec.rules[0].backendRefs[1].name: required',
      'spec.rules[0].backendRefs[1].weight: must be an integer 0-1000000',
    ]);
    assert.deepEqual(problems(grpc({ parentRefs: [{ kind: 'Gateway', name: 'g' }], hostnames: ['Bad_Host'] })), [
      'spec.parentRefs[0].kind: must be "Service"',
      'spec.hostnames[0]: must be a lowercase RFC 1123 hostname, optionally starting with "*."',
    ]);
  });
});

describe('HTTPFault', () => {
  const fault = (spec: unknown) => res(W, 'HTTPFault', spec);
  test('valid faults', () => {
    assert.deepEqual(problems(fault({ delay: { fixedDelay: '200ms', percentage: 12.5 } })), []);
    assert.deepEqual(problems(fault({ abort: { httpStatus: 503 } })), []);
    assert.deepEqual(problems(fault({ delay: { fixedDelay: '1s' }, abort: { httpStatus: 200, percentage: 0 } })), []);
  });
  test('field paths of every problem', () => {
    assert.deepEqual(problems(fault({})), ['spec: must set delay or abort (or both)']);
    assert.deepEqual(problems(fault({ delay: { percentage: 101 }, abort: { httpStatus: 600, percentage: -1, code: 1 } })), [
      'spec.delay.fixedDelay: required',
      'spec.delay.percentage: must be a number 0-100',
      'spec.abort.code: unknown field',
      'spec.abort.httpStatus: must be an integer 200-599',
      'spec.abort.percentage: must be a number 0-100',
    ]);
    assert.deepEqual(problems(fault({ delay: { fixedDelay: '0s' } })), ['spec.delay.fixedDelay: must be greater than 0']);
  });
  test('ExtensionRef filters on HTTPRoute rules', () => {
    const ref = (name: string, extra: object = {}) => ({ type: 'ExtensionRef', extensionRef: { group: 'weft.dev', kind: 'HTTPFault', name, ...extra } });
    assert.deepEqual(problems(rule({ filters: [ref('a'), ref('b')] })), []);
    assert.deepEqual(problems(rule({ filters: [ref('a'), ref('a'), { type: 'ExtensionRef' }, ref('c', { group: 'x', kind: 'Other' })] })), [
      'spec.rules[0].filters[2].extensionRef: required when type is ExtensionRef',
      'spec.rules[0].filters[3].extensionRef.group: must be "weft.dev"',
      'spec.rules[0].filters[3].extensionRef.kind: must be "HTTPFault"',
      'spec.rules[0].filters[1].extensionRef.name: duplicate "a"',
    ]);
  });
});

describe('RateLimitPolicy', () => {
  const rl = (spec: object) => res(W, 'RateLimitPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], ...spec });
  test('valid policies', () => {
    assert.deepEqual(problems(rl({ local: { requests: 10, per: '1s' } })), []);
    assert.deepEqual(problems(rl({ key: { type: 'Header', header: 'X-User' }, local: { requests: 10, per: '1s', burst: 20 }, global: { requests: 1000, per: '1m' }, failureMode: 'FailClosed' })), []);
    assert.deepEqual(problems(rl({ key: { type: 'SourceIdentity' }, global: { requests: 5, per: '500ms' } })), []);
    assert.deepEqual(problems(rl({ key: { type: 'ClientAddress' }, global: { requests: 5, per: '1s' }, failureMode: 'FailOpen' })), []);
  });
  test('field paths of every problem', () => {
    assert.deepEqual(problems(res(W, 'RateLimitPolicy', {})), ['spec.targetRefs: required', 'spec: must set local or global (or both)']);
    assert.deepEqual(problems(rl({ local: { requests: 0, per: '0s', burst: 1.5 }, global: { per: 'soon' }, failureMode: 'Open', key: { type: 'Cookie' } })), [
      'spec.key.type: must be one of "SourceIdentity", "Header", "ClientAddress"',
      'spec.local.requests: must be an integer 1-1000000000',
      'spec.local.per: must be greater than 0',
      'spec.local.burst: must be an integer 1-1000000000',
      'spec.global.requests: required',
      'spec.global.per: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
      'spec.failureMode: must be one of "FailOpen", "FailClosed"',
    ]);
    assert.deepEqual(problems(rl({ local: { requests: 1, per: '1s' }, key: { type: 'Header' } })), ['spec.key.header: required when type is Header']);
    assert.deepEqual(problems(rl({ local: { requests: 1, per: '1s' }, key: { type: 'SourceIdentity', header: 'x' } })), ['spec.key.header: must not be set when type is SourceIdentity']);
    assert.deepEqual(problems(rl({ local: { requests: 1, per: '1s' }, key: { type: 'Header', header: 'bad header' } })), ['spec.key.header: must be a valid HTTP header name (an RFC 7230 token)']);
    assert.deepEqual(problems(rl({ local: { requests: 1, per: '1s' }, targetRefs: [{ kind: 'Workload', name: 'a' }] })), ['spec.targetRefs[0].kind: must be "Service"']);
  });
  test('Mesh rateLimiting.redis', () => {
    const mesh = (rateLimiting: unknown) => res(W, 'Mesh', { rateLimiting });
    for (const address of ['127.0.0.1:6379', 'redis.internal:6379', '[::1]:6379']) assert.deepEqual(problems(mesh({ redis: { address, timeout: '50ms' } })), [], address);
    const bad = 'must be "host:port", like "127.0.0.1:6379", "redis.internal:6379" or "[::1]:6379"';
    for (const address of ['127.0.0.1', '127.0.0.1:0', 'redis:70000', '::1:6379', 'Redis:6379', '[127.0.0.1]:6379']) {
      assert.deepEqual(problems(mesh({ redis: { address } })), [`spec.rateLimiting.redis.address: ${bad}`], address);
    }
    assert.deepEqual(problems(mesh({})), ['spec.rateLimiting.redis: required']);
    assert.deepEqual(problems(mesh({ redis: { timeout: '0s' } })), ['spec.rateLimiting.redis.address: required', 'spec.rateLimiting.redis.timeout: must be greater than 0']);
  });
  test('Mesh tracing and accessLog', () => {
    const mesh = (spec: object) => res(W, 'Mesh', spec);
    assert.deepEqual(problems(mesh({ tracing: {}, accessLog: { mode: 'Off' } })), []);
    assert.deepEqual(problems(mesh({ tracing: { sampling: 0.5, otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces' } }, accessLog: { mode: 'Sampled', sampling: 10, path: '/var/log/weft/{workload}.log' } })), []);
    assert.deepEqual(problems(mesh({ tracing: { sampling: 101 } })), ['spec.tracing.sampling: must be a percentage, a number 0-100']);
    assert.deepEqual(problems(mesh({ tracing: { sampling: '5' } })), ['spec.tracing.sampling: must be a percentage, a number 0-100']);
    const url = 'must be an http:// or https:// URL like "http://127.0.0.1:4318/v1/traces"';
    for (const endpoint of ['127.0.0.1:4318', 'grpc://collector:4317', 'http://user@x/v1/traces']) assert.deepEqual(problems(mesh({ tracing: { otlp: { endpoint } } })), [`spec.tracing.otlp.endpoint: ${url}`], endpoint);
    assert.deepEqual(problems(mesh({ tracing: { otlp: {} } })), ['spec.tracing.otlp.endpoint: required']);
    assert.deepEqual(problems(mesh({ accessLog: {} })), ['spec.accessLog.mode: required']);
    assert.deepEqual(problems(mesh({ accessLog: { mode: 'on' } })), ['spec.accessLog.mode: must be one of "On", "Off", "Sampled"']);
    assert.deepEqual(problems(mesh({ accessLog: { mode: 'Sampled' } })), ['spec.accessLog.sampling: required when mode is Sampled']);
    assert.deepEqual(problems(mesh({ accessLog: { mode: 'On', sampling: 5 } })), ['spec.accessLog.sampling: must not be set when mode is On (only with Sampled)']);
    assert.deepEqual(problems(mesh({ accessLog: { mode: 'On', path: 'logs/a.log', format: 'json' } })), ['spec.accessLog.format: unknown field', 'spec.accessLog.path: must be an absolute file path']);
  });
});

describe('RequestMirror and timeouts', () => {
  const mirror = (m: object) => ({ type: 'RequestMirror', requestMirror: m });

  test('HTTPRoute RequestMirror: backendRef required, percent or fraction, may repeat', () => {
    const a = mirror({ backendRef: { name: 'shadow', port: 80 }, percent: 50 });
    const b = mirror({ backendRef: { kind: 'Service', name: 'other', namespace: 'b', port: 8080 }, fraction: { numerator: 1, denominator: 3 } });
    assert.deepEqual(problems(rule({ filters: [a, b, mirror({ backendRef: { name: 'all', port: 80 } })], backendRefs: [{ name: 'a', port: 80 }] })), []);
    assert.deepEqual(problems(rule({ filters: [mirror({ percent: 10 })] })), ['spec.rules[0].filters[0].requestMirror.backendRef: required']);
    assert.deepEqual(problems(rule({ filters: [mirror({ backendRef: { name: 'm' }, percent: -1, fraction: { numerator: 1 } })] })), [
      'spec.rules[0].filters[0].requestMirror.backendRef.port: required',
      'spec.rules[0].filters[0].requestMirror.percent: must be an integer 0-100',
      'spec.rules[0].filters[0].requestMirror.fraction: must not be set together with percent',
    ]);
    // The denominator is 100 when left out.
    assert.deepEqual(problems(rule({ filters: [mirror({ backendRef: { name: 'm', port: 1 }, fraction: { numerator: 101 } })] })), [
      'spec.rules[0].filters[0].requestMirror.fraction.numerator: must not exceed denominator (100)',
    ]);
    assert.deepEqual(problems(rule({ filters: [mirror({ backendRef: { name: 'm', port: 1 }, fraction: { numerator: 1, denominator: 0 } })] })), [
      'spec.rules[0].filters[0].requestMirror.fraction.denominator: must be an integer 1-1000000',
    ]);
  });

  test('BackendPolicy timeouts and Mesh defaults.timeouts: idle, streamIdle and tcpIdle durations, 0s allowed', () => {
    const policy = (timeouts: unknown) => res(W, 'BackendPolicy', { targetRefs: [{ kind: 'Service', name: 'a' }], timeouts });
    assert.deepEqual(problems(policy({ idle: '30s', streamIdle: '1m', tcpIdle: '1h' })), []);
    assert.deepEqual(problems(policy({ idle: '0s', streamIdle: '0s', tcpIdle: '0s' })), []);
    assert.deepEqual(problems(policy({})), []);
    assert.deepEqual(problems(policy({ idle: '5', streamIdle: 300, request: '1s', tcpIdle: '1 hour' })), [
      'spec.timeouts.request: unknown field',
      'spec.timeouts.idle: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
      'spec.timeouts.streamIdle: must be a string',
      'spec.timeouts.tcpIdle: must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)',
    ]);
    assert.deepEqual(problems(res(W, 'Mesh', { defaults: { timeouts: { idle: '2m', streamIdle: '10s', tcpIdle: '30m' } } })), []);
    assert.deepEqual(problems(res(W, 'Mesh', { defaults: { timeouts: { streamidle: '10s' } } })), ['spec.defaults.timeouts.streamidle: unknown field']);
  });
});

test('durations Node cannot time, and health/outlier settings that contradict a default, are refused', () => {
  const policy = (spec: string) => `apiVersion: weft.dev/v1alpha1
kind: BackendPolicy
metadata: { name: p }
spec:
  targetRefs: [{ kind: Service, name: echo }]
${spec}`;
  const errorsOf = (yaml: string) => validateResource(parse(yaml)).map((e) => `${e.path}: ${e.message}`);
  assert.deepEqual(errorsOf(policy('  timeouts: { streamIdle: 720h }')), ['spec.timeouts.streamIdle: must be at most 596h (about 24.8 days)']);
  assert.deepEqual(errorsOf(policy('  healthCheck: { tcp: {}, interval: 500ms }')), ['spec.healthCheck.interval: must be at least the timeout (1s by default; set a shorter timeout)']);
  assert.deepEqual(errorsOf(policy('  healthCheck: { tcp: {}, interval: 500ms, timeout: 200ms }')), []);
  assert.deepEqual(errorsOf(policy('  outlierDetection: { maxEjectionTime: 10s }')), ['spec.outlierDetection.maxEjectionTime: must not be less than baseEjectionTime (30s, the default)']);
});
