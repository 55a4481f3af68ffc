/**
 * The API's admin token: made on the control plane's first start, kept in `<data-dir>/admin-token`
 * (mode 0600, like the CA's key beside it), and required as `authorization: Bearer <token>` on every
 * API call but health and metrics. The token is a bearer secret of 32 random bytes; it is compared
 * by hash in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const FORMAT = /^weft-admin\.[A-Za-z0-9_-]{43}$/;

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

export class AdminToken {
  readonly file: string;
  private readonly hash: Buffer;
  /** The token, only when this start created it (so it can be shown once); null otherwise. */
  readonly created: string | null;
  /** The token itself, for writing the local CLI's credentials. */
  readonly token: string;

  private constructor(file: string, token: string, created: boolean) {
    this.file = file;
    this.token = token;
    this.hash = digest(token);
    this.created = created ? token : null;
  }

  /** Reads `<dir>/admin-token`, or makes it (0600) when there is none. Throws when the file is unusable. */
  static loadOrCreate(dir: string): AdminToken {
    const file = join(dir, 'admin-token');
    let text: string | null = null;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== null) {
      if (!FORMAT.test(text)) throw new Error(`${file}: not a Weft admin token (weft-admin.<43 characters>); delete the file to make a new one`);
      // A token others can read is no secret: say so rather than serve with it.
      if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
      return new AdminToken(file, text, false);
    }
    const token = `weft-admin.${randomBytes(32).toString('base64url')}`;
    const tmp = `${file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, token + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
    return new AdminToken(file, token, true);
  }

  /** Whether an `authorization` header carries this token. */
  accepts(header: string | undefined): boolean {
    if (header === undefined) return false;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    return m !== null && timingSafeEqual(digest(m[1]!), this.hash);
  }
}
