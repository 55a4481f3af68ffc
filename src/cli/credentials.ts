/**
 * The CLI's admin credentials: `WEFT_ADMIN_TOKEN`, or the token a local `weft control` or `weft up`
 * saved for its URL in `$XDG_CONFIG_HOME/weft/credentials.json` (`~/.config/weft/…`; folder 0700,
 * file 0600), so the CLI on the same machine just works and nobody copies a token by hand.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Older entries are dropped past this many (each `weft up` on an OS-chosen port adds one). */
const KEEP = 20;

type Credentials = { servers: Record<string, { token: string; savedAt: string }> };

export function credentialsFile(): string {
  const base = process.env.XDG_CONFIG_HOME !== undefined && process.env.XDG_CONFIG_HOME !== '' ? process.env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return join(base, 'weft', 'credentials.json');
}

function read(file: string): Credentials {
  try {
    const c = JSON.parse(readFileSync(file, 'utf8')) as Credentials;
    return typeof c.servers === 'object' && c.servers !== null ? c : { servers: {} };
  } catch {
    return { servers: {} };
  }
}

const key = (server: string): string => server.replace(/\/+$/, '');

/** Saves the admin token for `server`; returns the file, or throws when it cannot be written. */
export function saveAdminToken(server: string, token: string): string {
  const file = credentialsFile();
  const dir = join(file, '..');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const c = read(file);
  c.servers[key(server)] = { token, savedAt: new Date().toISOString() };
  const kept = Object.entries(c.servers).sort((a, b) => b[1].savedAt.localeCompare(a[1].savedAt)).slice(0, KEEP);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ servers: Object.fromEntries(kept) }, null, 1) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/** The admin token for `server`: `WEFT_ADMIN_TOKEN`, else the saved one, else null. */
export function adminTokenFor(server: string): string | null {
  const env = process.env.WEFT_ADMIN_TOKEN;
  if (env !== undefined && env !== '') return env.trim();
  return read(credentialsFile()).servers[key(server)]?.token ?? null;
}
