/**
 * The dashboard's static files (HTML, CSS, JavaScript modules, SVG in `src/dashboard/`), served by the
 * control plane's API port at `/` and `/dashboard/<file>`. The page itself is public; every API call
 * it makes carries the admin token, which `weft dashboard` hands it in the URL's fragment (never sent
 * to the server). Files are read once and kept in memory: the whole UI is a few tens of kilobytes.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** No inline script or style, nothing from elsewhere, no framing, no referrer (the URL may have held the token). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-cache',
};

interface Asset {
  body: Buffer;
  type: string;
}

let assets: Map<string, Asset> | null = null;

/** Where the files are: dist/src/dashboard, copied there by the build, else (tsc alone) the source tree's src/dashboard. */
function staticDir(): string {
  const built = fileURLToPath(new URL('../../dashboard/', import.meta.url));
  if (existsSync(join(built, 'index.html'))) return built;
  return fileURLToPath(new URL('../../../../src/dashboard/', import.meta.url));
}

function load(): Map<string, Asset> {
  if (assets !== null) return assets;
  const dir = staticDir();
  const out = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type !== undefined) out.set(name, { body: readFileSync(join(dir, name)), type });
  }
  assets = out;
  return out;
}

/** Whether `pathname` is the dashboard's: `/`, `/index.html` or `/dashboard/…`. */
export function isDashboardPath(pathname: string): boolean {
  return pathname === '/' || pathname === '/index.html' || pathname.startsWith('/dashboard/');
}

/** Answers a GET or HEAD for a dashboard path: the file, or 404 (only known names are served, so no path escapes the folder). */
export function serveDashboard(req: IncomingMessage, res: ServerResponse, pathname: string): void {
  const name = pathname === '/' || pathname === '/index.html' ? 'index.html' : pathname.slice('/dashboard/'.length);
  const asset = req.method === 'GET' || req.method === 'HEAD' ? load().get(name) : undefined;
  if (asset === undefined) {
    const text = req.method === 'GET' || req.method === 'HEAD' ? `no dashboard file ${name}\n` : `${req.method ?? ''} not allowed here\n`;
    res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 404 : 405, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(req.method === 'HEAD' ? undefined : text);
    return;
  }
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'content-length': asset.body.length });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
}
