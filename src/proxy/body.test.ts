import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Body, type BodyFlow } from './body.js';

function recorder(full: () => boolean = () => false): { events: string[]; flow: BodyFlow; sink: Parameters<Body['pipe']>[0] } {
  const events: string[] = [];
  return {
    events,
    flow: { pause: () => events.push('pause'), resume: () => events.push('resume'), abort: (e) => events.push(`abort:${e.message}`) },
    sink: {
      data: (c) => {
        events.push(`data:${c.toString()}`);
        return !full();
      },
      end: () => events.push('end'),
      error: (e) => events.push(`error:${e.message}`),
    },
  };
}

test('an end that arrives while the sink is full is delivered once, after the sink drains, and the producer resumes', () => {
  let full = true;
  const r = recorder(() => full);
  const b = new Body(-1, r.flow);
  b.pipe(r.sink);
  b.push(Buffer.from('a'));
  b.push(Buffer.from('b'));
  b.end(null);
  assert.deepEqual(r.events, ['data:a', 'pause', 'resume']);
  full = false;
  b.resume();
  b.resume();
  assert.deepEqual(r.events, ['data:a', 'pause', 'resume', 'data:b', 'end']);
});

test('bytes pushed before a consumer are held in order; past 64 KiB the producer pauses until they drain', () => {
  const r = recorder();
  const b = new Body(-1, r.flow);
  b.push(Buffer.from('x'));
  b.push(Buffer.alloc(70 * 1024, 'y'));
  assert.deepEqual(r.events, ['pause']);
  b.pipe(r.sink);
  assert.equal(r.events[1], 'data:x');
  assert.equal(r.events[3], 'resume');
  b.end(null);
  assert.equal(r.events.at(-1), 'end');
  assert.equal(r.events.filter((e) => e === 'end').length, 1);
});

test('a failure reaches the sink at once and only once; an abort tells the producer', () => {
  const r = recorder(() => true);
  const b = new Body(10, r.flow);
  b.pipe(r.sink);
  b.push(Buffer.from('a'));
  b.fail(new Error('cut'));
  b.end(null);
  b.resume();
  assert.deepEqual(r.events, ['data:a', 'pause', 'error:cut']);
  const r2 = recorder();
  const b2 = new Body(10, r2.flow);
  let settled = false;
  b2.onSettled(() => (settled = true));
  b2.abort(new Error('not wanted'));
  assert.deepEqual(r2.events, ['abort:not wanted']);
  assert.ok(settled);
});
