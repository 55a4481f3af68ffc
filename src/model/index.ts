/** The resource model: kinds, loading and validation, and the compiler to per-proxy snapshots. */
export { compileProxySnapshot, type CompileOptions, type CompileResult, type CompileTarget } from './compile.js';
export { parseDuration } from './duration.js';
export { formatResourceError, type ResourceError } from './errors.js';
export { loadResources, type LoadResult } from './load.js';
export type * from './resources.js';
export { GATEWAY_V1, GATEWAY_V1ALPHA2, GATEWAY_V1BETA1, WEFT_V1ALPHA1 } from './resources.js';
export type * from './snapshot.js';
export { lineAt, sourceOf, type SourceInfo } from './source.js';
export { validateResource, type FieldError } from './validate.js';
export { compileOutbound, compileWorkload, type OutboundView } from './compile.js';
export * from './config-parts.js';
export * from './endpoint-health.js';
export { callsEntryProblem, inScope, scopeKey, scopeOutbound } from './scope.js';
