import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatResourceError } from './errors.js';
import { loadResources } from './load.js';
import { lineAt, sourceOf } from './source.js';

const ROUTE = `# a comment
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: { name: echo }
spec:
  selector: { app: echo }
  ports: [{ name: http, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
spec:
  parentRefs: [{ kind: Service, name: echo }]
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: api
    backendRefs: [{ name: echo, port: 80 }]
`;

test('reports a bad field with file, the line of the field, and its path; the rest still loads', () => {
  const { resources, errors } = loadResources(ROUTE, 'mesh.yaml');
  assert.deepEqual(errors.map(formatResourceError), ['mesh.yaml:19 HTTPRoute/echo: spec.rules[0].matches[0].path.value: must start with "/"']);
  assert.deepEqual(resources.map((r) => `${r.kind}/${r.metadata.name}`), ['Service/echo']);
});

test('reports every error of a document, each at its own line', () => {
  const text = `apiVersion: weft.dev/v1alpha1
kind: Service
metadata:
  name: Shop
  namespace: web
spec:
  selector: { app: shop }
  ports:
  - { name: http, port: 80 }
  - name: admin
    port: 70000
  rulez: 1
`;
  const { resources, errors } = loadResources(text, 'svc.yaml');
  assert.equal(resources.length, 0);
  assert.deepEqual(errors.map(formatResourceError), [
    'svc.yaml:4 Service/web/Shop: metadata.name: must be a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)',
    'svc.yaml:12 Service/web/Shop: spec.rulez: unknown field',
    'svc.yaml:11 Service/web/Shop: spec.ports[1].port: must be an integer 1-65535',
  ]);
});

test('a missing field is reported at the line of its parent', () => {
  const text = `apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: w }\nspec:\n  ports: {}\n`;
  assert.deepEqual(loadResources(text, 'w.yaml').errors.map(formatResourceError), ['w.yaml:4 Workload/w: spec.address: required']);
});

test('a YAML syntax error names file and line and spares the other documents', () => {
  const text = `apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: a }\nspec: { address: 10.0.0.1, ports: {} }\n---\nkind: [oops\n---\napiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: b }\nspec: { address: 10.0.0.2, ports: {} }\n`;
  const { resources, errors } = loadResources(text, 'bad.yaml');
  assert.deepEqual(resources.map((r) => r.metadata.name), ['a', 'b']);
  assert.equal(errors.length, 1);
  assert.match(formatResourceError(errors[0]!), /^bad\.yaml:7: .*Flow sequence/);
});

test('duplicate keys are syntax errors', () => {
  const { errors } = loadResources('apiVersion: weft.dev/v1alpha1\nkind: Mesh\nkind: Mesh\n', null);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.line, 3);
  assert.match(errors[0]!.message, /unique/);
});

test('skips empty documents and comment-only documents', () => {
  const text = `---\n# nothing here\n---\n\n---\napiVersion: weft.dev/v1alpha1\nkind: Mesh\nmetadata: { name: mesh }\nspec: {}\n---\n`;
  const { resources, errors } = loadResources(text, 'm.yaml');
  assert.deepEqual(errors, []);
  assert.equal(resources.length, 1);
  assert.equal(loadResources('', null).resources.length, 0);
});

test('accepts JSON', () => {
  const json = JSON.stringify({ apiVersion: 'weft.dev/v1alpha1', kind: 'Workload', metadata: { name: 'w', labels: { app: 'x' } }, spec: { address: '::1', ports: { http: 8080 } } }, null, 2);
  const { resources, errors } = loadResources(json, 'w.json');
  assert.deepEqual(errors, []);
  assert.deepEqual(resources[0], {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'Workload',
    metadata: { name: 'w', namespace: 'default', labels: { app: 'x' } },
    spec: { address: '::1', ports: { http: 8080 } },
  });
  const bad = loadResources(json.replace('8080', '0'), 'w.json');
  assert.deepEqual(bad.errors.map(formatResourceError), ['w.json:13 Workload/w: spec.ports.http: must be an integer 1-65535']);
});

test('fills metadata defaults and treats null fields as absent', () => {
  const { resources, errors } = loadResources('apiVersion: weft.dev/v1alpha1\nkind: Mesh\nmetadata:\n  name: m\n  labels:\nspec:\n  mtls:\n', null);
  assert.deepEqual(errors, []);
  assert.deepEqual(resources[0]!.metadata, { name: 'm', namespace: 'default', labels: {} });
  assert.deepEqual(resources[0]!.spec, {});
});

test('a duplicate kind/namespace/name is an error for the later one', () => {
  const svc = (ns: string, port: number) => `apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: { name: echo, namespace: ${ns} }\nspec: { selector: { app: echo }, ports: [{ name: http, port: ${port} }] }\n`;
  const { resources, errors } = loadResources([svc('default', 80), svc('shop', 80), svc('default', 81)].join('---\n'), 'd.yaml');
  assert.deepEqual(resources.map((r) => `${r.metadata.namespace}/${(r.spec as { ports: Array<{ port: number }> }).ports[0]!.port}`), ['default/80', 'shop/80']);
  assert.deepEqual(errors.map(formatResourceError), ['d.yaml:13 Service/echo: metadata.name: duplicate: already defined earlier in this input']);
});

test('at most one Mesh', () => {
  const mesh = (name: string) => `apiVersion: weft.dev/v1alpha1\nkind: Mesh\nmetadata: { name: ${name} }\nspec: {}\n`;
  const { resources, errors } = loadResources(`${mesh('a')}---\n${mesh('b')}`, 'm.yaml');
  assert.equal(resources.length, 1);
  assert.deepEqual(errors.map(formatResourceError), ['m.yaml:7 Mesh/b: kind: only one Mesh is allowed; Mesh/a is defined earlier']);
});

test('unknown kinds and apiVersions are errors for their document', () => {
  const text = `apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: { name: g }\nspec: {}\n---\napiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: {}\n`;
  assert.deepEqual(loadResources(text, 'k.yaml').errors.map(formatResourceError), [
    'k.yaml:2 TCPRoute/g: kind: unknown kind for gateway.networking.k8s.io/v1; must be one of "HTTPRoute", "GRPCRoute"',
    'k.yaml:6 Service/s: apiVersion: must be one of "weft.dev/v1alpha1", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1", "gateway.networking.k8s.io/v1alpha2"',
  ]);
});

test('a loaded resource remembers the line of each field', () => {
  const { resources } = loadResources(ROUTE.replace('value: api', 'value: /api'), 'mesh.yaml');
  const route = resources[1]!;
  const source = sourceOf(route)!;
  assert.equal(source.file, 'mesh.yaml');
  assert.equal(source.line, 9);
  assert.equal(lineAt(source, 'spec.rules[0].backendRefs[0]'), 20);
  assert.equal(lineAt(source, 'spec.rules[0].matches[0].path.value'), 19);
  assert.equal(lineAt(source, 'spec.rules[0].timeouts.request'), 16, 'an absent field falls back to its nearest present ancestor');
  assert.equal(Object.keys(route).includes('source'), false, 'resources stay plain data');
});

test('label keys with dots and slashes have quoted paths with lines', () => {
  const text = `apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: w\n  labels:\n    app.kubernetes.io/name: "Bad Value"\nspec: { address: h.example, ports: {} }\n`;
  assert.deepEqual(loadResources(text, 'l.yaml').errors.map(formatResourceError), [
    'l.yaml:6 Workload/w: metadata.labels["app.kubernetes.io/name"]: must be a label value (letters, digits, "-", "_" and ".", at most 63 characters)',
  ]);
});

test('GRPCRoutes load from multi-document YAML; a bad one is reported with its lines, the rest load', () => {
  const text = `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: catalog }
spec:
  parentRefs: [{ kind: Service, name: catalog, port: 9000 }]
  rules:
  - matches:
    - method: { service: shop.v1.Catalog, method: GetItem }
    backendRefs: [{ name: catalog, port: 9000 }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: GRPCRoute
metadata: { name: old-version }
spec:
  parentRefs: [{ kind: Service, name: catalog }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: broken }
spec:
  parentRefs: [{ kind: Service, name: catalog }]
  rules:
  - matches:
    - method:
        type: Exact
    - method: { service: shop.v1.Catalog, method: Get/Item }
    filters:
    - type: ExtensionRef
`;
  const { resources, errors } = loadResources(text, 'g.yaml');
  assert.deepEqual(resources.map((r) => `${r.apiVersion} ${r.kind}/${r.metadata.name}`), ['gateway.networking.k8s.io/v1 GRPCRoute/catalog', 'gateway.networking.k8s.io/v1alpha2 GRPCRoute/old-version']);
  assert.deepEqual(errors.map(formatResourceError), [
    'g.yaml:24 GRPCRoute/broken: spec.rules[0].matches[0].method: must set service or method (or both); leave "method" out to match every call',
    'g.yaml:26 GRPCRoute/broken: spec.rules[0].matches[1].method.method: must be a gRPC method name like "GetItem" (letters, digits and "_") when type is Exact',
    'g.yaml:28 GRPCRoute/broken: spec.rules[0].filters[0].type: ExtensionRef is not supported yet (a filter that cannot be applied must not be skipped, so the route is refused)',
  ]);
});
