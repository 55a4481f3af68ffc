/** `weft dashboard`: the URL of the control plane's web dashboard, with the admin token in its fragment. */
import { spawn } from 'node:child_process';
import { api, serverUrl } from './api-client.js';
import { adminTokenFor } from './credentials.js';
import type { Command } from './command.js';

export const dashboardCommand: Command = {
  summary: "print (or open) the web dashboard's URL",
  usage: 'weft dashboard [--open]',
  options: { open: { type: 'boolean', default: false } },
  help: `Prints http(s)://<control plane>/#token=<admin token> (WEFT_SERVER picks the control plane). The
token rides in the URL's fragment, which browsers never send to a server; the page moves it to the
tab's session storage and clears it from the address bar. Anyone with the URL can use the API:
share it as you would the token. --open also opens it in the default browser (xdg-open, open, start).`,
  run: async (v) => {
    // A call that needs the token: a wrong or missing one fails here, saying why, not in the browser.
    await api('GET', '/api/v1/problems');
    const url = `${serverUrl()}/#token=${encodeURIComponent(adminTokenFor(serverUrl()) ?? '')}`;
    console.log(url);
    if (v.open === true) {
      const [cmd, args] = process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '""', url]] : ['xdg-open', [url]];
      const opened = await new Promise<string | null>((resolve) => {
        const p = spawn(cmd, args, { stdio: 'ignore', detached: true });
        p.once('error', (err) => resolve(err.message));
        p.once('spawn', () => {
          p.unref();
          resolve(null);
        });
      });
      if (opened !== null) console.error(`weft dashboard: could not open a browser (${cmd}: ${opened}); open the URL above yourself`);
    }
    return 0;
  },
};
