// The demo: two versions of an echo service and a TCP echo behind a Weft proxy that runs from
// examples/echo/mesh.yaml. It sends a little traffic, prints what the split did, and keeps running
// so you can try the proxy yourself. Ctrl-C stops everything.
import { spawn } from 'node:child_process';
import { createServer, get } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const file = join(root, 'examples/echo/mesh.yaml');

function echo(version: string, port: number): void {
  createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`echo ${version}: ${req.method} ${req.url}\n`);
  }).listen(port, '127.0.0.1');
}

echo('v1', 9001);
echo('v2', 9002);
createTcpServer((s) => s.pipe(s)).listen(9003, '127.0.0.1');

const proxy = spawn(process.execPath, [join(root, 'bin/weft.js'), 'proxy', '--file', file, '--workload', 'client-1', '--upstream', 'tcp-echo:9000=15009'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const stop = (): void => {
  proxy.kill('SIGTERM');
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
proxy.on('exit', (code) => process.exit(code ?? 0));

/** GET through the proxy's outbound port with a Host header (fetch() may not set Host). */
function viaProxy(headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port: 15001, path: '/hello', headers: { host: 'echo', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}

proxy.stdout.once('data', async () => {
  const counts: Record<string, number> = {};
  for (let i = 0; i < 200; i++) {
    const v = (await viaProxy({})).split(':')[0]!;
    counts[v] = (counts[v] ?? 0) + 1;
  }
  const canary = await viaProxy({ 'x-canary': '1' });
  console.log(`
Weft is running: proxy for workload client-1, from ${file}
  200 requests to http://echo/hello went to: ${JSON.stringify(counts)}   (the route says 90/10)
  with x-canary: 1 → ${canary.trim()}

Try it:
  curl -x http://127.0.0.1:15001 http://echo/hello            # HTTP_PROXY style
  curl -H 'Host: echo.default:80' http://127.0.0.1:15001/      # routed by authority
  curl -H 'x-canary: 1' -x http://127.0.0.1:15001 http://echo/  # header match → v2
  curl -x http://127.0.0.1:15001 http://nowhere/ -i            # a coded mesh error
  curl telnet://127.0.0.1:15009                                # TCP service tcp-echo:9000 (type, Ctrl-C)
  curl http://127.0.0.1:15000/metrics                          # admin: /ready /clusters /config_dump
Edit ${file} and save: good edits apply live, bad ones are refused with their line.
Ctrl-C stops everything.`);
});
