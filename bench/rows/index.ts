/**
 * The rows of the table, in the order they run and appear. Add new rows here.
 */
import { directRow } from './direct.js';
import { haproxyRow } from './haproxy.js';
import { nginxRow } from './nginx.js';
import { nodeUndiciRow } from './node-undici.js';
import { weftRow } from './weft.js';
import { weftMtlsH2Row, weftMtlsHttp1Row, weftMtlsRow, weftMtlsTelemetryRow, weftMtlsTracing1Row } from './weft-mtls.js';
import type { BenchRow } from './types.js';

export const ROWS: readonly BenchRow[] = [directRow, weftRow, weftMtlsRow, weftMtlsTracing1Row, weftMtlsTelemetryRow, weftMtlsH2Row, weftMtlsHttp1Row, nginxRow, haproxyRow, nodeUndiciRow];
