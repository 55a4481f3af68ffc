/** The CLI verbs about identity: join tokens, certificates, and rotating the root. */
import { request } from 'node:http';
import type { JoinToken } from '../control/ca/join-tokens.js';
import { api, authHeaders, serverUrl, wrongTokenHint } from './api-client.js';
import { UsageError, duration, type Command } from './command.js';
import { table } from './table.js';

type TokenInfo = Omit<JoinToken, 'hash'>;

export interface CertificatesView {
  roots: Array<{ subject: string; serial: string; notAfter: string; state: string; signing: boolean }>;
  rotation: string | null;
  items: Array<{ proxy: string; connected: boolean; identity?: string; serial?: string; notAfter?: string; installed?: boolean; bundleSynced?: boolean; error: string | null }>;
}

const left = (iso: string): string => {
  const ms = Date.parse(iso) - Date.now();
  if (ms <= 0) return 'EXPIRED';
  const h = ms / 3600_000;
  return h >= 48 ? `${Math.floor(h / 24)}d` : h >= 1 ? `${Math.floor(h)}h${Math.floor((ms % 3600_000) / 60_000)}m` : `${Math.ceil(ms / 1000)}s`;
};

export const tokenCommand: Command = {
  summary: 'join tokens: create, list, revoke',
  usage: 'weft token create --namespace NS --service-account SA [--ttl 24h] | weft token list | weft token revoke ID',
  positionals: true,
  options: {
    namespace: { type: 'string', short: 'n', default: 'default' },
    'service-account': { type: 'string', default: 'default' },
    ttl: { type: 'string', default: '24h' },
    output: { type: 'string', short: 'o' },
  },
  help: `A join token lets a proxy get the certificate of one workload identity
(spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>): weft proxy --token TOKEN.
The token is printed once; the control plane keeps only its hash. Proxies that joined with it reconnect
with their certificate afterwards, so its expiry only bounds joining; revoking it stops renewals of the
proxies that joined with it, on their open streams and on every reconnect.
"create" also prints (on stderr) the control plane's root pin and a "weft proxy --control-plane https://…
--ca-cert-hash sha256:…" line for a proxy on another host ("weft ca pins" prints the pins alone).`,
  run: async (v, args) => {
    const verb = args[0];
    if (verb === 'create') {
      if (args.length !== 1) throw new UsageError('"token create" takes no other argument');
      duration(v.ttl, 'ttl');
      const r = await api<{ token: string; info: TokenInfo; caCertHashes?: string[] }>('POST', '/api/v1/tokens', { text: JSON.stringify({ namespace: v.namespace, serviceAccount: v['service-account'], ttl: v.ttl }), type: 'application/json' });
      if (r.status !== 200) {
        console.error(`weft token: refused: ${(r.body as unknown as { error?: { message?: string } }).error?.message ?? `HTTP ${r.status}`}`);
        return 1;
      }
      if (v.output === 'json') console.log(JSON.stringify(r.body, null, 2));
      else {
        console.log(r.body.token);
        console.error(`token ${r.body.info.id} for ${r.body.info.namespace}/${r.body.info.serviceAccount}, valid until ${r.body.info.expiresAt}; it is shown only now`);
        // On stderr: stdout stays the token alone, for TOKEN=$(weft token create …).
        console.error(joinHint(r.body.caCertHashes ?? [], r.body.token, r.body.info));
      }
      return 0;
    }
    if (verb === 'list') {
      const items = (await api<{ items: TokenInfo[] }>('GET', '/api/v1/tokens')).body.items;
      if (v.output === 'json') console.log(JSON.stringify({ items }, null, 2));
      else if (items.length === 0) console.error('no tokens');
      else console.log(table(['ID', 'NAMESPACE', 'SERVICE ACCOUNT', 'EXPIRES IN', 'REVOKED'], items.map((t) => [t.id, t.namespace, t.serviceAccount, left(t.expiresAt), t.revoked ? 'yes' : 'no'])));
      return 0;
    }
    if (verb === 'revoke') {
      if (args.length !== 2) throw new UsageError('give the id of the token to revoke (weft token list)');
      await api('DELETE', `/api/v1/tokens/${encodeURIComponent(args[1]!)}`);
      console.log(`token ${args[1]} revoked`);
      return 0;
    }
    throw new UsageError('give one of: create, list, revoke');
  },
};

/**
 * What `token create` prints after the token: the pins a proxy on another host needs, and the command
 * to paste there. The token itself is in the command only when stdout is a terminal (it is on that
 * screen already); redirected, it stays where it was sent and the command says "$TOKEN".
 */
function joinHint(pins: string[], token: string, info: TokenInfo): string {
  if (pins.length === 0) return 'this control plane reported no root pin: a join from another host over https:// is not possible';
  const server = new URL(serverUrl());
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(server.hostname);
  const flags = pins.map((p) => `--ca-cert-hash ${p}`).join(' ');
  const lines = [
    `root pin: ${pins[0]}${pins.length > 1 ? ` (and ${pins.slice(1).join(', ')}, the root a rotation under way switches to)` : ''}`,
    'to join from another host:',
    `  weft proxy --control-plane https://${server.host} ${flags} --token ${process.stdout.isTTY ? token : '"$TOKEN"'} --namespace ${info.namespace} --service-account ${info.serviceAccount} --workload NAME …`,
  ];
  if (loopback) lines.push(`  (${server.host} is this host: use an address the other host reaches, and start weft control with --api-address)`);
  return lines.join('\n');
}

export const caCommand: Command = {
  summary: 'the mesh CA: rotate its root under live traffic, show its pins',
  usage: 'weft ca rotate | weft ca pins [-o json]',
  positionals: true,
  options: {
    output: { type: 'string', short: 'o' },
  },
  help: `"weft ca rotate" adds a new root to every proxy's trust bundle, waits until all trust it, makes it
sign and has every proxy renew, waits, then retires the old root. Traffic flows throughout.
"weft ca pins" prints the pin of each trusted root (sha256 of its SubjectPublicKeyInfo), the one the
control plane presents now first: what "weft proxy --control-plane https://… --ca-cert-hash" checks.`,
  run: async (v, args) => {
    if (args[0] === 'pins' && args.length === 1) {
      const r = (await api<{ trustDomain: string; pins: Array<{ pin: string; subject: string; notAfter: string; role: string }> }>('GET', '/api/v1/ca/pins')).body;
      const roles: Record<string, string> = { presented: 'yes (joins check this one)', next: 'after the rotation switches to it', previous: 'no more (retired at the end of the rotation)', other: 'no' };
      if (v.output === 'json') console.log(JSON.stringify(r, null, 2));
      else console.log(table(['PIN', 'ROOT', 'EXPIRES IN', 'PRESENTED'], r.pins.map((p) => [p.pin, p.subject, left(p.notAfter), roles[p.role] ?? p.role])));
      return 0;
    }
    if (args[0] !== 'rotate' || args.length !== 1) throw new UsageError('give: rotate or pins');
    // The answer streams one line per step; the rotation takes as long as the proxies need.
    return new Promise((resolve) => {
      const req = request(new URL('/api/v1/ca/rotate', serverUrl()), { method: 'POST', headers: authHeaders() }, (res) => {
        let buffered = '';
        let code = 1;
        res.setEncoding('utf8');
        if (res.statusCode !== 200) {
          let text = '';
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            let message = text.slice(0, 500);
            try {
              message = (JSON.parse(text) as { error: { message: string } }).error.message;
            } catch {
              // not JSON: shown as it came
            }
            console.error(`weft ca rotate: HTTP ${res.statusCode}: ${res.statusCode === 401 ? wrongTokenHint() : message}`);
            resolve(1);
          });
          return;
        }
        res.on('data', (c: string) => {
          buffered += c;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) !== -1) {
            const msg = JSON.parse(buffered.slice(0, nl)) as { step?: string; done?: boolean; error?: string };
            buffered = buffered.slice(nl + 1);
            if (msg.step !== undefined) console.log(msg.step);
            if (msg.done === true) {
              console.log('rotation complete');
              code = 0;
            }
            if (msg.error !== undefined) console.error(`rotation stopped: ${msg.error}\nrun "weft ca rotate" again to resume from this step`);
          }
        });
        res.on('end', () => resolve(res.statusCode === 200 ? code : 1));
      });
      req.on('error', (err) => {
        console.error(`cannot reach the control plane at ${serverUrl()}: ${err.message}`);
        resolve(3);
      });
      req.end();
    });
  },
};

/** `weft get certificates`: the roots and every proxy's leaf. */
export async function printCertificates(o: string): Promise<number> {
  const view = (await api<CertificatesView>('GET', '/api/v1/certificates')).body;
  if (o === 'json') {
    console.log(JSON.stringify(view, null, 2));
    return 0;
  }
  console.log(table(['ROOT', 'SERIAL', 'EXPIRES IN', 'STATE'], view.roots.map((r) => [r.subject, r.serial.slice(0, 16), left(r.notAfter), r.signing ? 'signing' : r.state])));
  if (view.rotation !== null) console.log(`a root rotation is under way (step: ${view.rotation}); "weft ca rotate" finishes it`);
  console.log('');
  if (view.items.length === 0) console.error('no proxy holds a certificate');
  else {
    console.log(
      table(
        ['PROXY', 'IDENTITY', 'SERIAL', 'EXPIRES IN', 'INSTALLED'],
        view.items.map((i) => [i.proxy, i.identity ?? '-', (i.serial ?? '-').slice(0, 16), i.notAfter !== undefined ? left(i.notAfter) : '-', i.error !== null ? `no: ${i.error}` : i.installed === true ? (i.bundleSynced === true ? 'yes' : 'yes (old bundle)') : 'pending']),
      ),
    );
  }
  return 0;
}
