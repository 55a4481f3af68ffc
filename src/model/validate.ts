/**
 * Validation of one resource document against its kind's schema. Every problem is reported with its
 * field path, not only the first, so a user fixes a file in one pass. Unknown fields are errors: a
 * misspelt field silently ignored is a routing rule that silently does nothing.
 */
import { isIP } from 'node:net';
import { parseDuration } from './duration.js';
import { GATEWAY_V1, GATEWAY_V1ALPHA2, GATEWAY_V1BETA1, WEFT_V1ALPHA1 } from './resources.js';
import { joinPath } from './source.js';
import { callsEntryProblem } from './scope.js';
import { GRPC_METHOD, GRPC_SERVICE, GRPC_STATUS_CODES, grpcPathMatch } from './grpc.js';

/** A validation failure at one field path. */
export interface FieldError {
  path: string;
  message: string;
}

type Obj = Record<string, unknown>;
/** Checks a present (non-null) value found at `path`, appending what is wrong to `errs`. */
type Check = (v: unknown, path: string, errs: FieldError[]) => void;
type CrossCheck = (o: Obj, path: string, errs: FieldError[]) => void;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const absent = (v: unknown): boolean => v === undefined || v === null;
const field = (o: unknown, key: string): unknown => (isObj(o) ? o[key] : undefined);
const items = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const mustBe = (values: readonly string[]): string => `must be ${values.length === 1 ? '' : 'one of '}${values.map((v) => JSON.stringify(v)).join(', ')}`;

function fail(errs: FieldError[], path: string, message: string): void {
  errs.push({ path, message });
}

/** A map with known fields; `also` runs rules across fields once each field is checked. */
function object(fields: Record<string, Check>, required: string[] = [], also?: CrossCheck): Check {
  return (v, path, errs) => {
    if (!isObj(v)) return fail(errs, path, 'must be a map');
    for (const key of Object.keys(v)) if (!Object.hasOwn(fields, key)) fail(errs, joinPath(path, key), 'unknown field');
    for (const [key, check] of Object.entries(fields)) {
      if (!absent(v[key])) check(v[key], joinPath(path, key), errs);
      else if (required.includes(key)) fail(errs, joinPath(path, key), 'required');
    }
    also?.(v, path, errs);
  };
}

function list(item: Check, min = 0): Check {
  return (v, path, errs) => {
    if (!Array.isArray(v)) return fail(errs, path, 'must be a list');
    if (v.length < min) fail(errs, path, `must have at least ${min} item${min === 1 ? '' : 's'}`);
    v.forEach((x, i) => item(x, `${path}[${i}]`, errs));
  };
}

/** A map with free keys, e.g. labels. */
function record(keyProblem: (k: string) => string | null, value: Check): Check {
  return (v, path, errs) => {
    if (!isObj(v)) return fail(errs, path, 'must be a map');
    for (const [k, x] of Object.entries(v)) {
      const problem = keyProblem(k);
      if (problem !== null) fail(errs, joinPath(path, k), problem);
      value(x, joinPath(path, k), errs);
    }
  };
}

function text(problem: (s: string) => string | null = () => null): Check {
  return (v, path, errs) => {
    if (typeof v !== 'string') return fail(errs, path, 'must be a string');
    const p = problem(v);
    if (p !== null) fail(errs, path, p);
  };
}

function oneOf(...values: string[]): Check {
  return text((s) => (values.includes(s) ? null : mustBe(values)));
}

function int(min: number, max: number): Check {
  return (v, path, errs) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(errs, path, `must be an integer ${min}-${max}`);
  };
}

// --- value rules -----------------------------------------------------------------------------

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

const isDnsLabel = (s: string): boolean => s.length <= 63 && DNS_LABEL.test(s);
const isHostname = (s: string): boolean => s.length <= 253 && s.split('.').every(isDnsLabel);

const dnsLabel = text((s) =>
  isDnsLabel(s) ? null : 'must be a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)',
);
const hostname = text((s) => (isHostname(s) ? null : 'must be a lowercase RFC 1123 hostname'));
const wildcardHostname = text((s) => (isHostname(s.startsWith('*.') ? s.slice(2) : s) ? null : 'must be a lowercase RFC 1123 hostname, optionally starting with "*."'));
const address = text((s) => (isIP(s) !== 0 || isHostname(s) ? null : 'must be an IPv4 or IPv6 address or a lowercase hostname'));
const trustDomain = text((s) => (s.length <= 255 && /^[a-z0-9._-]+$/.test(s) ? null : 'must be a SPIFFE trust domain (lowercase letters, digits, ".", "-" and "_")'));
const timestamp = text((s) => (RFC3339.test(s) && !Number.isNaN(Date.parse(s)) ? null : 'must be an RFC 3339 timestamp like "2024-01-02T15:04:05Z"'));
const port = int(1, 65535);
const weight = int(0, 1_000_000);

function portNameProblem(s: string): string | null {
  return s.length <= 15 && DNS_LABEL.test(s) && /[a-z]/.test(s) ? null : 'must be a port name (lowercase letters, digits and "-", with a letter, at most 15 characters)';
}
const portName = text(portNameProblem);
const targetPort: Check = (v, path, errs) => {
  if (typeof v === 'number') port(v, path, errs);
  else if (typeof v === 'string') portName(v, path, errs);
  else fail(errs, path, 'must be a port name or number');
};

function labelKeyProblem(k: string): string | null {
  const parts = k.split('/');
  const name = parts.at(-1)!;
  const ok = parts.length <= 2 && name.length <= 63 && LABEL_NAME.test(name) && (parts.length === 1 || isHostname(parts[0]!));
  return ok ? null : 'must be a label key ([prefix/]name: name of letters, digits, "-", "_" and ".", at most 63 characters)';
}
const labelValue = text((s) => (s === '' || (s.length <= 63 && LABEL_NAME.test(s)) ? null : 'must be a label value (letters, digits, "-", "_" and ".", at most 63 characters)'));
const labels = record(labelKeyProblem, labelValue);

const MAX_TIMER_MS = 2 ** 31 - 1;

function durationProblem(s: string, positive: boolean): string | null {
  try {
    const ms = parseDuration(s);
    if (positive && ms === 0) return 'must be greater than 0';
    // Node's timers take at most 2^31-1 ms; a longer one would fire at once.
    return ms > MAX_TIMER_MS ? 'must be at most 596h (about 24.8 days)' : null;
  } catch {
    return 'must be a duration like "10s", "1m30s" or "250ms" (GEP-2257)';
  }
}
const duration = text((s) => durationProblem(s, false));
const positiveDuration = text((s) => durationProblem(s, true));

function regexProblem(s: string): string | null {
  try {
    new RegExp(s);
    return null;
  } catch (e) {
    return `must be a valid regular expression (${(e as Error).message})`;
  }
}

/** Gateway API's rules for Exact and PathPrefix values and rewrite targets. */
function httpPathProblem(s: string): string | null {
  if (!s.startsWith('/')) return 'must start with "/"';
  if (s.length > 1024) return 'must be at most 1024 characters';
  if (/\/\/|\/\.\.?(\/|$)|%2f|#/i.test(s)) return 'must be a normalized path (no "//", "/./", "/../", "%2f" or "#")';
  return null;
}
const httpPath = text(httpPathProblem);

const headerName = text((s) => (s.length <= 256 && HTTP_TOKEN.test(s) ? null : 'must be a valid HTTP header name (an RFC 7230 token)'));
const headerValue = text((s) => (s.length < 1 || s.length > 4096 ? 'must be 1-4096 characters' : /[\r\n\0]/.test(s) ? 'must not contain CR, LF or NUL' : null));

/** Reports list items whose key repeats an earlier one. */
function noDuplicates(list: unknown, path: string, key: (x: unknown) => unknown, keyField: string, errs: FieldError[]): void {
  const seen = new Set<unknown>();
  items(list).forEach((x, i) => {
    const k = key(x);
    if (typeof k !== 'string' && typeof k !== 'number') return;
    if (seen.has(k)) fail(errs, keyField === '' ? `${path}[${i}]` : `${path}[${i}].${keyField}`, `duplicate ${JSON.stringify(k)}`);
    seen.add(k);
  });
}
const lowerName = (x: unknown): unknown => {
  const n = field(x, 'name');
  return typeof n === 'string' ? n.toLowerCase() : undefined;
};

/** For a `type`-tagged union: the field named by `type` is required and every other member's field forbidden. */
function tagged(fieldFor: Record<string, string>): CrossCheck {
  return (o, path, errs) => {
    if (typeof o.type !== 'string' || !Object.hasOwn(fieldFor, o.type)) return;
    for (const [type, f] of Object.entries(fieldFor)) {
      if (type === o.type && absent(o[f])) fail(errs, joinPath(path, f), `required when type is ${type}`);
      if (type !== o.type && !absent(o[f])) fail(errs, joinPath(path, f), `must not be set when type is ${o.type}`);
    }
  };
}

// --- Weft kinds ------------------------------------------------------------------------------

const metadata = object(
  {
    name: dnsLabel,
    namespace: dnsLabel,
    labels,
    annotations: record(labelKeyProblem, text()),
    creationTimestamp: timestamp,
    // Set by the control plane; accepted so that what `weft get -o yaml` prints applies again.
    generation: int(1, Number.MAX_SAFE_INTEGER),
    resourceVersion: text(),
  },
  ['name'],
);

const LOAD_BALANCERS = ['RoundRobin', 'LeastRequest', 'PeakEWMA', 'RingHash', 'Maglev'];
const HASH_BALANCERS = ['RingHash', 'Maglev'];
/** Mesh defaults name no hashing balancer: those need `hashOn`, which is per destination. */
const defaultLoadBalancerType = text((s) =>
  HASH_BALANCERS.includes(s)
    ? `${s} needs hashOn, which a Mesh default cannot give: set it per Service with a BackendPolicy`
    : LOAD_BALANCERS.includes(s) ? null : mustBe(LOAD_BALANCERS.filter((t) => !HASH_BALANCERS.includes(t))),
);
const isPrime = (n: number): boolean => {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
};
const cookieName = text((s) => (s.length <= 256 && HTTP_TOKEN.test(s) ? null : 'must be a cookie name (an RFC 6265 token)'));
/** What a hashing balancer keys on: Envoy's hash_policy, one member. */
const hashOn = object(
  {
    header: object({ name: headerName }, ['name']),
    cookie: object({ name: cookieName }, ['name']),
    sourceAddress: (v, path, errs) => {
      if (v !== true) fail(errs, path, 'must be true (leave it out otherwise)');
    },
  },
  [],
  (o, path, errs) => {
    const set = ['header', 'cookie', 'sourceAddress'].filter((f) => !absent(o[f]));
    if (set.length === 0) fail(errs, path, 'must set one of header, cookie, sourceAddress');
    else if (set.length > 1) fail(errs, `${path}.${set[1]}`, `must not be set together with ${set[0]}`);
  },
);
/** Options that only one balancer type reads; setting one for another type is a mistake. */
const LB_OPTION_TYPES: Record<string, string[]> = { decay: ['PeakEWMA'], minimumRingSize: ['RingHash'], tableSize: ['Maglev'], hashOn: HASH_BALANCERS };
const loadBalancer = object(
  {
    type: oneOf(...LOAD_BALANCERS),
    decay: positiveDuration,
    minimumRingSize: int(1, 8_388_608),
    tableSize: (v, path, errs) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 2 || v > 5_000_011 || !isPrime(v)) fail(errs, path, 'must be a prime number 2-5000011 (like 65537)');
    },
    hashOn,
  },
  ['type'],
  (o, path, errs) => {
    if (typeof o.type !== 'string' || !LOAD_BALANCERS.includes(o.type)) return;
    for (const [f, types] of Object.entries(LB_OPTION_TYPES)) {
      if (!absent(o[f]) && !types.includes(o.type)) fail(errs, joinPath(path, f), `must not be set when type is ${o.type} (only for ${types.join(' and ')})`);
    }
    if (HASH_BALANCERS.includes(o.type) && absent(o.hashOn)) fail(errs, joinPath(path, 'hashOn'), `required when type is ${o.type}`);
  },
);

// Envoy's cluster idle_timeout, stream idle_timeout and tcp_proxy idle_timeout; `0s` turns one off.
const backendTimeouts = object({ idle: duration, streamIdle: duration, tcpIdle: duration });

// Mesh tracing and access logs (docs/observability.md).
const samplingPercent: Check = (v, path, errs) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100) fail(errs, path, 'must be a percentage, a number 0-100');
};
const otlpEndpoint = text((s) => {
  const u = URL.canParse(s) ? new URL(s) : null;
  return u !== null && (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && u.username === '' && u.hash === '' ? null : 'must be an http:// or https:// URL like "http://127.0.0.1:4318/v1/traces"';
});
const tracing = object({ sampling: samplingPercent, otlp: object({ endpoint: otlpEndpoint }, ['endpoint']) });
const accessLog = object({ mode: oneOf('On', 'Off', 'Sampled'), sampling: samplingPercent, path: text((s) => (s.startsWith('/') && !s.includes('\0') ? null : 'must be an absolute file path')) }, ['mode'], (o, path, errs) => {
  if (o.mode === 'Sampled' && absent(o.sampling)) fail(errs, joinPath(path, 'sampling'), 'required when mode is Sampled');
  if (o.mode !== 'Sampled' && !absent(o.sampling)) fail(errs, joinPath(path, 'sampling'), `must not be set when mode is ${String(o.mode)} (only with Sampled)`);
});

const meshSpec = object({
  trustDomain,
  mtls: object({ mode: oneOf('STRICT', 'PERMISSIVE', 'DISABLED') }, ['mode']),
  certificateLifetime: positiveDuration,
  defaults: object({ connectTimeout: positiveDuration, loadBalancer: defaultLoadBalancerType, timeouts: backendTimeouts }),
  rateLimiting: object({ redis: object({ address: text(redisAddressProblem), timeout: positiveDuration }, ['address']) }, ['redis']),
  tracing,
  accessLog,
});

/** `host:port`, the host an IP literal (IPv6 in brackets) or a hostname. */
function redisAddressProblem(s: string): string | null {
  const m = /^(\[([0-9a-fA-F:.]+)\]|[^:\[\]]+):(\d{1,5})$/.exec(s);
  const host = m === null ? '' : (m[2] ?? m[1]!);
  const ok = m !== null && Number(m[3]) >= 1 && Number(m[3]) <= 65535 && (m[2] !== undefined ? isIP(host) === 6 : isIP(host) === 4 || isHostname(host));
  return ok ? null : 'must be "host:port", like "127.0.0.1:6379", "redis.internal:6379" or "[::1]:6379"';
}

const servicePort = object({ name: portName, port, protocol: oneOf('HTTP', 'HTTP2', 'GRPC', 'TCP'), targetPort }, ['name', 'port']);
const serviceSpec = object({ selector: labels, ports: list(servicePort, 1) }, ['selector', 'ports'], (o, path, errs) => {
  if (isObj(o.selector) && Object.keys(o.selector).length === 0) fail(errs, `${path}.selector`, 'must select at least one label');
  noDuplicates(o.ports, `${path}.ports`, (p) => field(p, 'name'), 'name', errs);
  noDuplicates(o.ports, `${path}.ports`, (p) => field(p, 'port'), 'port', errs);
});

const calls = list(text(callsEntryProblem));
const workloadSpec = object(
  { address, ports: record(portNameProblem, port), serviceAccount: hostname, proxy: object({ inboundPort: port }, ['inboundPort']), calls, weight: int(1, 128) },
  ['address', 'ports'],
  (o, path, errs) => {
    const inbound = field(o.proxy, 'inboundPort');
    if (isObj(o.ports) && Object.values(o.ports).includes(inbound)) fail(errs, `${path}.proxy.inboundPort`, 'must differ from the app ports');
  },
);

const backendPolicySpec = object(
  {
    targetRefs: list(object({ group: oneOf(''), kind: oneOf('Service'), name: dnsLabel }, ['kind', 'name']), 1),
    loadBalancer,
    locality: object({
      enabled: (v, path, errs) => {
        if (typeof v !== 'boolean') fail(errs, path, 'must be true or false');
      },
      overprovisioningFactor: int(100, 1000),
    }),
    connectTimeout: positiveDuration,
    retryBudget: object({ percent: int(0, 100), minRetriesPerSecond: int(0, 1_000_000) }),
    circuitBreaker: object({ maxConnections: int(1, 1_000_000_000), maxPendingRequests: int(1, 1_000_000_000), maxRequests: int(1, 1_000_000_000), maxRetries: int(1, 1_000_000_000) }),
    timeouts: backendTimeouts,
    outlierDetection: object(
      {
        consecutive5xx: int(0, 1_000_000),
        consecutiveGatewayErrors: int(0, 1_000_000),
        consecutiveConnectFailures: int(0, 1_000_000),
        interval: positiveDuration,
        baseEjectionTime: positiveDuration,
        maxEjectionTime: positiveDuration,
        maxEjectionPercent: int(0, 100),
        successRate: object({ minimumHosts: int(1, 100_000), requestVolume: int(1, 1_000_000_000), stdevFactor: int(1, 100_000) }),
      },
      [],
      (o, path, errs) => {
        if (typeof o.maxEjectionTime !== 'string') return;
        try {
          // An unset baseEjectionTime is its default (30s), which the cap must not undercut either.
          const base = typeof o.baseEjectionTime === 'string' ? o.baseEjectionTime : '30s';
          if (parseDuration(o.maxEjectionTime) < parseDuration(base)) fail(errs, `${path}.maxEjectionTime`, `must not be less than baseEjectionTime (${base}${typeof o.baseEjectionTime === 'string' ? '' : ', the default'})`);
        } catch {
          // Malformed durations are already reported on their own fields.
        }
      },
    ),
    healthCheck: object(
      {
        http: object({ path: httpPath, expectedStatuses: list(int(100, 599), 1) }, ['path']),
        tcp: object({}),
        interval: positiveDuration,
        timeout: positiveDuration,
        healthyThreshold: int(1, 1000),
        unhealthyThreshold: int(1, 1000),
      },
      [],
      (o, path, errs) => {
        if (absent(o.http) === absent(o.tcp)) fail(errs, path, 'must set exactly one of http and tcp');
        if (typeof o.timeout !== 'string' && typeof o.interval !== 'string') return;
        try {
          // Either may be left at its default (interval 5s, timeout 1s); the timeout must fit in the interval.
          const interval = typeof o.interval === 'string' ? parseDuration(o.interval) : DEFAULT_HEALTH_CHECK_INTERVAL_MS;
          const timeout = typeof o.timeout === 'string' ? parseDuration(o.timeout) : 1000;
          if (timeout > interval) {
            if (typeof o.timeout === 'string') fail(errs, `${path}.timeout`, `must not exceed interval (${typeof o.interval === 'string' ? o.interval : '5s'})`);
            else fail(errs, `${path}.interval`, 'must be at least the timeout (1s by default; set a shorter timeout)');
          }
        } catch {
          // Malformed durations are already reported on their own fields.
        }
      },
    ),
  },
  ['targetRefs'],
);
/** The default `healthCheck.interval` (5s), which `timeout` must not exceed. */
const DEFAULT_HEALTH_CHECK_INTERVAL_MS = 5000;

// AuthorizationPolicy patterns: `*` stands for any run of characters; everything else is literal.
const glob = (what: string, problem: (s: string) => string | null = () => null): Check =>
  text((s) => (s === '' ? `must be a non-empty ${what}` : problem(s)));
const spiffeIdPattern = glob('SPIFFE ID pattern', (s) =>
  !s.startsWith('spiffe://') || s.length === 'spiffe://'.length
    ? 'must be a SPIFFE ID starting with "spiffe://", like "spiffe://cluster.local/ns/shop/sa/*" ("*" matches any run of characters)'
    : /\s/.test(s)
      ? 'must not contain whitespace'
      : null,
);
const namespacePattern = glob('namespace pattern', (s) =>
  /^[a-z0-9*-]+$/.test(s) && s.length <= 63 ? null : 'must be a namespace name (lowercase letters, digits and "-"), "*" matching any run of characters',
);
const methodToken = text((s) => (HTTP_TOKEN.test(s) && s === s.toUpperCase() ? null : 'must be an upper-case HTTP method token, like "GET"'));
const pathPattern = glob('path pattern', (s) => {
  if (!s.startsWith('/') && !s.startsWith('*')) return 'must start with "/" or "*"';
  if (/[?#]/.test(s)) return 'must not contain "?" or "#" (the query string is not matched)';
  if (/[\s\0]/.test(s)) return 'must not contain whitespace or NUL';
  return null;
});
const headerValuePattern = glob('header value pattern', (s) => (/[\r\n\0]/.test(s) ? 'must not contain CR, LF or NUL' : null));

/** An entry must set one of `fields`: whether an empty one matches everything or nothing would be a guess. */
const notEmpty = (fields: string[], hint: string): CrossCheck => (o, path, errs) => {
  if (fields.every((f) => absent(o[f]))) fail(errs, path, `must set ${fields.length === 2 ? `${fields[0]} or ${fields[1]}` : `one of ${fields.join(', ')}`} (${hint})`);
};
const authzSource = object({ identities: list(spiffeIdPattern, 1), namespaces: list(namespacePattern, 1) }, [], notEmpty(['identities', 'namespaces'], 'leave "from" out to match any caller'));
const authzOperation = object(
  { ports: list(port, 1), methods: list(methodToken, 1), paths: list(pathPattern, 1) },
  [],
  notEmpty(['ports', 'methods', 'paths'], 'leave "to" out to match any request'),
);
const authzCondition = object({ header: headerName, values: list(headerValuePattern, 1), notValues: list(headerValuePattern, 1) }, ['header'], (o, path, errs) => {
  if (absent(o.values) && absent(o.notValues)) fail(errs, path, 'must set values or notValues');
  else if (!absent(o.values) && !absent(o.notValues)) fail(errs, `${path}.notValues`, 'must not be set together with values');
});
const authorizationPolicySpec = object(
  {
    targetRefs: list(object({ group: oneOf(''), kind: oneOf('Service'), name: dnsLabel }, ['kind', 'name']), 1),
    action: oneOf('ALLOW', 'DENY'),
    rules: list(object({ from: list(authzSource, 1), to: list(authzOperation, 1), when: list(authzCondition, 1) })),
  },
  ['targetRefs'],
);

// RateLimitPolicy: a local token bucket and/or a global fixed window, per key.
const RATE_LIMIT_KEYS = ['SourceIdentity', 'Header', 'ClientAddress'];
const rateLimitKey = object({ type: oneOf(...RATE_LIMIT_KEYS), header: headerName }, ['type'], (o, path, errs) => {
  if (o.type === 'Header' && absent(o.header)) fail(errs, `${path}.header`, 'required when type is Header');
  if (o.type !== 'Header' && typeof o.type === 'string' && RATE_LIMIT_KEYS.includes(o.type) && !absent(o.header)) fail(errs, `${path}.header`, `must not be set when type is ${o.type}`);
});
const requestCount = int(1, 1_000_000_000);
const rateLimitPolicySpec = object(
  {
    targetRefs: list(object({ group: oneOf(''), kind: oneOf('Service'), name: dnsLabel }, ['kind', 'name']), 1),
    key: rateLimitKey,
    local: object({ requests: requestCount, per: positiveDuration, burst: requestCount }, ['requests', 'per']),
    global: object({ requests: requestCount, per: positiveDuration }, ['requests', 'per']),
    failureMode: oneOf('FailOpen', 'FailClosed'),
  },
  ['targetRefs'],
  (o, path, errs) => {
    if (absent(o.local) && absent(o.global)) fail(errs, path, 'must set local or global (or both)');
  },
);

// --- Gateway API kinds -----------------------------------------------------------------------

const parentRef = object({ group: oneOf(''), kind: oneOf('Service'), name: dnsLabel, namespace: dnsLabel, port }, ['kind', 'name']);
const backendRefFields = { group: oneOf(''), kind: oneOf('Service'), name: dnsLabel, namespace: dnsLabel, port, weight };

const regexWhen = (typeField: string, valueField: string, defaultType: string): CrossCheck => (o, path, errs) => {
  const value = o[valueField];
  if ((o[typeField] ?? defaultType) === 'RegularExpression' && typeof value === 'string') {
    const p = regexProblem(value);
    if (p !== null) fail(errs, joinPath(path, valueField), p);
  }
};

const pathMatch = object({ type: oneOf('Exact', 'PathPrefix', 'RegularExpression'), value: text() }, [], (o, path, errs) => {
  regexWhen('type', 'value', 'PathPrefix')(o, path, errs);
  const p = o.type !== 'RegularExpression' && typeof o.value === 'string' ? httpPathProblem(o.value) : null;
  if (p !== null) fail(errs, `${path}.value`, p);
});
const valueMatch = (name: Check): Check =>
  object({ type: oneOf('Exact', 'RegularExpression'), name, value: headerValue }, ['name', 'value'], regexWhen('type', 'value', 'Exact'));
const routeMatch = object(
  {
    path: pathMatch,
    headers: list(valueMatch(headerName)),
    queryParams: list(valueMatch(text((s) => (s.length >= 1 && s.length <= 256 ? null : 'must be 1-256 characters')))),
    method: oneOf(...METHODS),
  },
  [],
  (o, path, errs) => {
    noDuplicates(o.headers, `${path}.headers`, lowerName, 'name', errs);
    noDuplicates(o.queryParams, `${path}.queryParams`, (q) => field(q, 'name'), 'name', errs);
  },
);

const headerPair = object({ name: headerName, value: headerValue }, ['name', 'value']);
const headerModifier = object({ set: list(headerPair), add: list(headerPair), remove: list(headerName) }, [], (o, path, errs) => {
  noDuplicates(o.set, `${path}.set`, lowerName, 'name', errs);
  noDuplicates(o.add, `${path}.add`, lowerName, 'name', errs);
  noDuplicates(o.remove, `${path}.remove`, (n) => (typeof n === 'string' ? n.toLowerCase() : undefined), '', errs);
});
const PATH_MODIFIER_FIELDS = { ReplaceFullPath: 'replaceFullPath', ReplacePrefixMatch: 'replacePrefixMatch' };
const pathModifier = object(
  { type: oneOf(...Object.keys(PATH_MODIFIER_FIELDS)), replaceFullPath: httpPath, replacePrefixMatch: httpPath },
  ['type'],
  tagged(PATH_MODIFIER_FIELDS),
);
// Gateway API HTTPRequestMirrorFilter (HTTPRoute and GRPCRoute); GEP-3171's percent or fraction.
const mirrorFraction = object({ numerator: int(0, 1_000_000), denominator: int(1, 1_000_000) }, ['numerator'], (o, path, errs) => {
  const denominator = o.denominator ?? 100;
  if (typeof o.numerator === 'number' && typeof denominator === 'number' && denominator >= 1 && o.numerator > denominator) fail(errs, `${path}.numerator`, `must not exceed denominator (${denominator})`);
});
const { weight: _weight, ...mirrorBackendFields } = backendRefFields;
const requestMirror = object({ backendRef: object(mirrorBackendFields, ['name', 'port']), percent: int(0, 100), fraction: mirrorFraction }, ['backendRef'], (o, path, errs) => {
  if (!absent(o.percent) && !absent(o.fraction)) fail(errs, `${path}.fraction`, 'must not be set together with percent');
});
const FILTER_FIELDS = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  URLRewrite: 'urlRewrite',
  RequestRedirect: 'requestRedirect',
  ExtensionRef: 'extensionRef',
  RequestMirror: 'requestMirror',
};
const extensionRef = object({ group: oneOf('weft.dev'), kind: oneOf('HTTPFault'), name: dnsLabel }, ['group', 'kind', 'name']);
const filter = object(
  {
    type: oneOf(...Object.keys(FILTER_FIELDS)),
    requestHeaderModifier: headerModifier,
    responseHeaderModifier: headerModifier,
    urlRewrite: object({ hostname, path: pathModifier }),
    requestRedirect: object({
      scheme: oneOf('http', 'https'),
      hostname,
      path: pathModifier,
      port,
      statusCode: (v, path, errs) => (v === 301 || v === 302 ? undefined : fail(errs, path, 'must be 301 or 302')),
    }),
    extensionRef,
    requestMirror,
  },
  ['type'],
  tagged(FILTER_FIELDS),
);

const timeouts = object({ request: duration, backendRequest: duration }, [], (o, path, errs) => {
  if (typeof o.request !== 'string' || typeof o.backendRequest !== 'string') return;
  try {
    const request = parseDuration(o.request);
    if (request !== 0 && parseDuration(o.backendRequest) > request) fail(errs, `${path}.backendRequest`, `must not exceed request (${o.request})`);
  } catch {
    // Malformed durations are already reported on their own fields.
  }
});

const bool: Check = (v, path, errs) => (typeof v === 'boolean' ? undefined : fail(errs, path, 'must be true or false'));
// GEP-1731 HTTPRouteRetry, plus Weft's onConnectFailure and allowNonIdempotent.
const retry = object({ codes: list(int(400, 599)), attempts: int(0, 10), backoff: duration, onConnectFailure: bool, allowNonIdempotent: bool }, [], (o, path, errs) => {
  noDuplicates(o.codes, `${path}.codes`, (c) => c, '', errs);
});

const ruleChecks: CrossCheck = (o, path, errs) => {
  const types = items(o.filters).map((f) => field(f, 'type'));
  // ExtensionRef and RequestMirror filters may repeat (Gateway API); the same HTTPFault twice may not.
  noDuplicates(o.filters, `${path}.filters`, (f) => (field(f, 'type') === 'ExtensionRef' || field(f, 'type') === 'RequestMirror' ? undefined : field(f, 'type')), 'type', errs);
  noDuplicates(o.filters, `${path}.filters`, (f) => field(field(f, 'extensionRef'), 'name'), 'extensionRef.name', errs);
  const redirect = types.includes('RequestRedirect');
  if (redirect && types.includes('URLRewrite')) fail(errs, `${path}.filters`, 'must not have both RequestRedirect and URLRewrite');
  if (redirect && items(o.backendRefs).length > 0) fail(errs, `${path}.backendRefs`, 'must be empty when the rule has a RequestRedirect filter');
  // A prefix replacement needs a matched prefix to replace, so every match must be a PathPrefix.
  const replacesPrefix = items(o.filters).some((f) => {
    const modifier = field(f, 'urlRewrite') ?? field(f, 'requestRedirect');
    return field(field(modifier, 'path'), 'type') === 'ReplacePrefixMatch';
  });
  if (!replacesPrefix) return;
  items(o.matches).forEach((m, i) => {
    const type = field(field(m, 'path'), 'type') ?? 'PathPrefix';
    if (type !== 'PathPrefix') fail(errs, `${path}.matches[${i}].path.type`, 'must be PathPrefix when a filter uses ReplacePrefixMatch');
  });
};
const httpRule = object(
  {
    matches: list(routeMatch),
    filters: list(filter),
    backendRefs: list(object({ ...backendRefFields, filters: list(filter) }, ['name', 'port'])),
    timeouts,
    retry,
  },
  [],
  ruleChecks,
);
const httpRouteSpec = object({ parentRefs: list(parentRef, 1), hostnames: list(wildcardHostname), rules: list(httpRule) }, ['parentRefs']);

// GRPCRoute: matches on service and method (a call is `POST /<service>/<method>`) and headers.
const grpcName = (key: 'service' | 'method', exact: RegExp, shape: string): CrossCheck => (o, path, errs) => {
  const v = o[key];
  if (typeof v !== 'string') return;
  if (v.length > 1024) return fail(errs, `${path}.${key}`, 'must be at most 1024 characters');
  if ((o.type ?? 'Exact') === 'Exact' && v !== '' && !exact.test(v)) fail(errs, `${path}.${key}`, `must be ${shape} when type is Exact`);
  if (o.type === 'RegularExpression') {
    const p = regexProblem(v);
    if (p !== null) fail(errs, `${path}.${key}`, p);
  }
};
const grpcServiceName = grpcName('service', GRPC_SERVICE, 'a gRPC service name like "shop.v1.Catalog" (dot-separated names of letters, digits and "_")');
const grpcMethodName = grpcName('method', GRPC_METHOD, 'a gRPC method name like "GetItem" (letters, digits and "_")');
const grpcMethodMatch = object({ type: oneOf('Exact', 'RegularExpression'), service: text(), method: text() }, [], (o, path, errs) => {
  const given = (f: string): boolean => typeof o[f] === 'string' && o[f] !== '';
  if (!given('service') && !given('method')) return fail(errs, path, 'must set service or method (or both); leave "method" out to match every call');
  const before = errs.length;
  grpcServiceName(o, path, errs);
  grpcMethodName(o, path, errs);
  if (errs.length > before || o.type !== 'RegularExpression') return;
  // Each pattern compiles alone; together (e.g. the same named group in both) they must too.
  try {
    new RegExp(grpcPathMatch(o as never).value);
  } catch (e) {
    fail(errs, path, `service and method patterns must form a valid regular expression together (${(e as Error).message})`);
  }
});
const grpcRouteMatch = object({ method: grpcMethodMatch, headers: list(valueMatch(headerName)) }, [], (o, path, errs) => {
  noDuplicates(o.headers, `${path}.headers`, lowerName, 'name', errs);
});
const GRPC_FILTER_FIELDS = { RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier', RequestMirror: 'requestMirror' };
const grpcFilterType: Check = (v, path, errs) => {
  if (v === 'ExtensionRef') return fail(errs, path, 'ExtensionRef is not supported yet (a filter that cannot be applied must not be skipped, so the route is refused)');
  oneOf(...Object.keys(GRPC_FILTER_FIELDS))(v, path, errs);
};
const grpcFilter = object(
  { type: grpcFilterType, requestHeaderModifier: headerModifier, responseHeaderModifier: headerModifier, requestMirror },
  ['type'],
  tagged(GRPC_FILTER_FIELDS),
);
/** Header modifiers at most once per list; RequestMirror may repeat (as the API allows). */
const grpcFilters = (item: Check): Check => (v, path, errs) => {
  list(item)(v, path, errs);
  const modifiers = items(v).map((f) => field(f, 'type')).map((t) => (t === 'RequestHeaderModifier' || t === 'ResponseHeaderModifier' ? { type: t } : null));
  noDuplicates(modifiers, path, (f) => field(f, 'type'), 'type', errs);
};
// Weft's GRPCRoute retry: gRPC status code names instead of HTTP statuses.
const grpcCode: Check = (v, path, errs) =>
  typeof v === 'string' && Object.hasOwn(GRPC_STATUS_CODES, v) ? undefined : fail(errs, path, `must be a gRPC status code name: ${Object.keys(GRPC_STATUS_CODES).join(', ')}`);
const grpcRetry = object({ codes: list(grpcCode), attempts: int(0, 10), backoff: duration, onConnectFailure: bool }, [], (o, path, errs) => {
  noDuplicates(o.codes, `${path}.codes`, (c) => c, '', errs);
});
const grpcRule = object({
  matches: list(grpcRouteMatch),
  filters: grpcFilters(grpcFilter),
  backendRefs: list(object({ ...backendRefFields, filters: grpcFilters(grpcFilter) }, ['name', 'port'])),
  retry: grpcRetry,
});
const grpcRouteSpec = object({ parentRefs: list(parentRef, 1), hostnames: list(wildcardHostname), rules: list(grpcRule) }, ['parentRefs']);

// HTTPFault: delay and/or abort, each for a percentage of requests.
const percentage: Check = (v, path, errs) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100) fail(errs, path, 'must be a number 0-100');
};
const httpFaultSpec = object(
  {
    delay: object({ fixedDelay: positiveDuration, percentage }, ['fixedDelay']),
    abort: object({ httpStatus: int(200, 599), percentage }, ['httpStatus']),
  },
  [],
  (o, path, errs) => {
    if (absent(o.delay) && absent(o.abort)) fail(errs, path, 'must set delay or abort (or both)');
  },
);

const tcpRouteSpec = object(
  { parentRefs: list(parentRef, 1), rules: list(object({ backendRefs: list(object(backendRefFields, ['name', 'port']), 1) }, ['backendRefs']), 1) },
  ['parentRefs', 'rules'],
);

/** Spec schema by apiVersion, then kind. */
const envName = (k: string): string | null => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? null : 'must be an environment variable name (letters, digits, "_")');
const appSpec = object(
  {
    command: list(text((s) => (s === '' ? 'must not be empty' : null)), 1),
    env: record(envName, text()),
    ports: record(portNameProblem, int(0, 65535)),
    restart: oneOf('Always', 'OnFailure', 'Never'),
    serviceAccount: hostname,
    calls,
  },
  ['command'],
);

const SPECS: Record<string, Record<string, Check>> = {
  [WEFT_V1ALPHA1]: { Mesh: meshSpec, Service: serviceSpec, Workload: workloadSpec, BackendPolicy: backendPolicySpec, AuthorizationPolicy: authorizationPolicySpec, RateLimitPolicy: rateLimitPolicySpec, App: appSpec, HTTPFault: httpFaultSpec },
  [GATEWAY_V1]: { HTTPRoute: httpRouteSpec, GRPCRoute: grpcRouteSpec },
  [GATEWAY_V1BETA1]: { HTTPRoute: httpRouteSpec },
  // GRPCRoute was v1alpha2 until Gateway API 1.1; the schema is the same.
  [GATEWAY_V1ALPHA2]: { TCPRoute: tcpRouteSpec, GRPCRoute: grpcRouteSpec },
};

/** Every problem of one resource document, each at its field path; empty when it is valid. */
export function validateResource(obj: unknown): FieldError[] {
  if (!isObj(obj)) return [{ path: '', message: 'must be a map with apiVersion, kind, metadata and spec' }];
  const kinds = typeof obj.apiVersion === 'string' && Object.hasOwn(SPECS, obj.apiVersion) ? SPECS[obj.apiVersion] : undefined;
  const spec = kinds !== undefined && typeof obj.kind === 'string' && Object.hasOwn(kinds, obj.kind) ? kinds[obj.kind] : undefined;
  const errs: FieldError[] = [];
  object(
    {
      apiVersion: oneOf(...Object.keys(SPECS)),
      kind: text(() => (kinds === undefined || spec !== undefined ? null : `unknown kind for ${String(obj.apiVersion)}; ${mustBe(Object.keys(kinds))}`)),
      metadata,
      // Without a known kind there is no schema to hold the spec to; the kind error says why.
      spec: spec ?? (() => undefined),
    },
    ['apiVersion', 'kind', 'metadata', 'spec'],
  )(obj, '', errs);
  return errs;
}
