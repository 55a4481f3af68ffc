import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EndpointHealthReport } from '../../model/endpoint-health.js';
import { HealthReporter } from './health-reporter.js';

const view = (health: 'HEALTHY' | 'EJECTED'): EndpointHealthReport => ({
  clusters: [{ name: 'web.default:80', outlierDetection: true, healthCheck: false, partial: false, endpoints: [{ workload: 'default/web-a', address: '127.0.0.1:1', health, reason: null, ejectedUntil: null, lastCheck: null }] }],
});
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('sends the view on connect, then changes at most once per interval, never the same view twice', async () => {
  let current: EndpointHealthReport = view('HEALTHY');
  const sent: string[] = [];
  let up = true;
  const r = new HealthReporter(() => current, (rep) => up && sent.push(rep.clusters[0]!.endpoints[0]!.health) > 0, 100);
  r.connected();
  assert.deepEqual(sent, ['HEALTHY']);
  // A burst of changes within the interval: one report, of the latest view.
  current = view('EJECTED');
  r.changed();
  current = view('HEALTHY');
  r.changed();
  current = view('EJECTED');
  r.changed();
  assert.equal(sent.length, 1, 'nothing before the interval has passed');
  await sleep(150);
  assert.deepEqual(sent, ['HEALTHY', 'EJECTED']);
  r.changed();
  await sleep(150);
  assert.deepEqual(sent, ['HEALTHY', 'EJECTED'], 'an unchanged view is not resent');
  // While the stream is down nothing goes; a reconnect sends the whole view again.
  up = false;
  current = view('HEALTHY');
  r.changed();
  await sleep(150);
  up = true;
  r.connected();
  assert.deepEqual(sent, ['HEALTHY', 'EJECTED', 'HEALTHY']);
  r.stop();
});

test('a proxy that watches nothing sends nothing; an empty view goes once to withdraw an earlier one', async () => {
  let current: EndpointHealthReport = { clusters: [] };
  let sent = 0;
  const r = new HealthReporter(() => current, () => ++sent > 0, 10);
  r.connected();
  r.changed();
  await sleep(30);
  assert.equal(sent, 0);
  current = view('HEALTHY');
  r.changed();
  await sleep(30);
  assert.equal(sent, 1);
  current = { clusters: [] };
  r.changed();
  await sleep(30);
  assert.equal(sent, 2);
  r.stop();
});
