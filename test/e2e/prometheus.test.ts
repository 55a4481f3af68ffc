// A real Prometheus (Debian's `prometheus`) finds the mesh through the control plane's HTTP service
// discovery (/metrics/targets), scrapes every proxy and the control plane, and answers a query for
// a service's request rate that agrees with the load sent.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, freePort } from './harness.js';
import { fetchVia, startMetricsMesh, type MetricsMesh } from './metrics-mesh.js';

/** Requests per second sent to `web`, and for how long. */
const RATE = 20;
const LOAD_SECONDS = 12;
/** How far the measured rate may be from RATE. */
const TOLERANCE = 0.25;

let mesh: MetricsMesh;
let prom: ChildProcess | null = null;
let promLog = '';

before(async () => {
  mesh = await startMetricsMesh(false);
});

after(async () => {
  if (prom !== null && prom.exitCode === null) {
    const exited = new Promise((r) => prom!.once('exit', r));
    prom.kill('SIGTERM');
    const kill = setTimeout(() => prom?.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(kill);
  }
  await mesh?.close();
});

async function query(base: string, q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const r = (await (await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as { status: string; data: { result: any[] } };
  assert.equal(r.status, 'success');
  return r.data.result;
}

test('Prometheus discovers the proxies through the control plane and measures the request rate', async () => {
  const { cp, client } = mesh;
  // Service discovery lists the control plane itself and every connected proxy's admin address.
  const sd = (await (await fetch(`${cp.url}/metrics/targets`)).json()) as Array<{ targets: string[]; labels: Record<string, string> }>;
  assert.deepEqual(sd.map((t) => t.labels.workload ?? t.labels.job).sort(), ['client-1', 'web-1', 'weft-control']);
  assert.ok(sd.some((t) => t.targets[0] === `127.0.0.1:${client.admin}`), JSON.stringify(sd));

  const dir = mkdtempSync(join(tmpdir(), 'weft-prometheus-'));
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  // The shipped example (deploy/prometheus/prometheus.yml) with this control plane's address and a 1 s interval.
  writeFileSync(config, `global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: weft
    http_sd_configs: [{ url: "${cp.url}/metrics/targets", refresh_interval: 1s }]
    relabel_configs:
      - { source_labels: [job], target_label: weft_job }
`);
  prom = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  prom.stderr!.on('data', (c: Buffer) => (promLog += c.toString()));
  const base = `http://127.0.0.1:${port}`;
  await eventually(async () => {
    try {
      const r = (await (await fetch(`${base}/api/v1/targets`)).json()) as { data: { activeTargets: Array<{ health: string }> } };
      return r.data.activeTargets.length === 3 && r.data.activeTargets.every((t) => t.health === 'up');
    } catch {
      return false;
    }
  }, 20_000, `Prometheus scraping 3 targets up (log: ${promLog.slice(-500)})`);

  // A steady load: RATE requests per second for LOAD_SECONDS, paced by the clock.
  const start = Date.now();
  let sent = 0;
  let failed = 0;
  while (Date.now() - start < LOAD_SECONDS * 1000) {
    const due = Math.floor(((Date.now() - start) / 1000) * RATE);
    while (sent < due) {
      sent++;
      if ((await fetchVia(client, 'web', `/load/${sent}`)).status !== 200) failed++;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const q = 'sum(rate(weft_requests_total{direction="inbound",destination_service="web.default",response_code="200"}[10s]))';
  let rate = 0;
  await eventually(async () => {
    const r = await query(base, q);
    rate = r.length === 0 ? 0 : Number(r[0]!.value[1]);
    return Math.abs(rate - RATE) <= RATE * TOLERANCE;
  }, 5000, `a rate within ${TOLERANCE * 100} % of ${RATE}/s (last answer ${rate})`);
  const control = await query(base, 'weft_control_proxies_connected{transport="mtls"}');
  assert.equal(Number(control[0]?.value[1]), 2, 'the control plane is scraped too');
  console.log(`prometheus: sent ${sent} requests at ${RATE}/s for ${LOAD_SECONDS} s (${failed} failed); Prometheus rate over 10 s = ${rate.toFixed(2)}/s (tolerance ±${TOLERANCE * 100} %)`);
  assert.equal(failed, 0);
});
