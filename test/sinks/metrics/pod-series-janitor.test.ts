import { describe, expect, it } from '@jest/globals';
import { PodSeriesJanitor } from '../../../src/sinks/metrics/pod-series-janitor.js';
import { ManualClock } from '../../support/manual-clock.js';
import { ManualDelay } from '../../support/manual-delay.js';

const SWEEP_MS = 30_000;

function janitor(
  clock: ManualClock,
  forgotten: string[],
  graceMs = 600_000,
  delays = new ManualDelay(),
): PodSeriesJanitor {
  return new PodSeriesJanitor({
    clock,
    graceMs,
    forgetPod: (namespace, name) => forgotten.push(`${namespace}/${name}`),
    sweepMs: SWEEP_MS,
    delay: delays.delay,
  });
}

describe('PodSeriesJanitor', () => {
  it('forgets a deleted pod’s series once the grace period has passed, not before', () => {
    const clock = new ManualClock();
    const forgotten: string[] = [];
    const j = janitor(clock, forgotten);
    j.onPodDeleted('default', 'web-1');
    clock.advance(599_999);
    expect(j.sweep()).toBe(0);
    expect(forgotten).toEqual([]);
    clock.advance(1);
    expect(j.sweep()).toBe(1);
    expect(forgotten).toEqual(['default/web-1']);
    expect(j.pendingCount()).toBe(0);
    expect(j.sweep()).toBe(0);
  });

  it('keeps the series of a pod recreated under the same name within the grace period', () => {
    const clock = new ManualClock();
    const forgotten: string[] = [];
    const j = janitor(clock, forgotten);
    j.onPodDeleted('default', 'web-0');
    clock.advance(10_000);
    j.onPodSeen('default', 'web-0');
    clock.advance(600_000);
    j.sweep();
    expect(forgotten).toEqual([]);
  });

  it('restarts the grace period when a pod is deleted again and says when the next deadline is', () => {
    const clock = new ManualClock();
    const forgotten: string[] = [];
    const j = janitor(clock, forgotten, 1000);
    expect(j.msUntilNextDeadline()).toBeUndefined();
    j.onPodDeleted('a', 'p');
    clock.advance(600);
    j.onPodDeleted('b', 'q');
    expect(j.msUntilNextDeadline()).toBe(400);
    clock.advance(400);
    j.sweep();
    expect(forgotten).toEqual(['a/p']);
    expect(j.msUntilNextDeadline()).toBe(600);
  });

  it('goes on with the other pods when the callback throws', () => {
    const clock = new ManualClock();
    const errors: string[] = [];
    const forgotten: string[] = [];
    const j = new PodSeriesJanitor({
      clock,
      graceMs: 0,
      sweepMs: SWEEP_MS,
      delay: new ManualDelay().delay,
      forgetPod: (namespace, name) => {
        if (name === 'bad') throw new Error('boom');
        forgotten.push(name);
      },
      onError: (_error, _namespace, name) => errors.push(name),
    });
    j.onPodDeleted('ns', 'bad');
    j.onPodDeleted('ns', 'good');
    expect(j.sweep()).toBe(2);
    expect(forgotten).toEqual(['good']);
    expect(errors).toEqual(['bad']);
  });

  it('once started, sweeps at every interval until stopped', async () => {
    const clock = new ManualClock();
    const forgotten: string[] = [];
    const delays = new ManualDelay();
    const j = janitor(clock, forgotten, 1000, delays);
    const lifetime = new AbortController();
    j.start(lifetime.signal);
    j.onPodDeleted('default', 'web-1');
    clock.advance(1000);
    await delays.elapse(SWEEP_MS);
    await delays.elapse(SWEEP_MS);
    expect(forgotten).toEqual(['default/web-1']);
    lifetime.abort();
    await j.stop();
    expect(delays.pendingDurations()).toEqual([]);
  });
});
