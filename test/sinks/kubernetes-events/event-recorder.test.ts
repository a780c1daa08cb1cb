import { afterEach, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { systemClock, type Clock } from '../../../src/shared/clock.js';
import {
  EventRecorder,
  type EventOccurrence,
  type EventRecorderOptions,
} from '../../../src/sinks/kubernetes-events/event-recorder.js';
import { coreV1EventsApi } from '../../../src/sinks/kubernetes-events/events-api.js';
import { unrefTimers } from '../../../src/shared/timers.js';
import { eventually } from '../../support/eventually.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { ManualClock } from '../../support/manual-clock.js';

const POD = {
  kind: 'Pod',
  namespace: 'default',
  name: 'dns-client-7c9f8d6b54-4xq2m',
  uid: '3f1c2a9e-8b7d-4c6e-a5f4-1e2d3c4b5a61',
} as const;

function occurrence(changes: Partial<EventOccurrence> = {}): EventOccurrence {
  return {
    involvedObject: POD,
    reason: 'ConntrackInsertFailed',
    aggregationKey: 'snat',
    message: 'UDP query 10.244.0.2:40000 → 192.0.2.53:53, SNAT to 192.0.2.1:40000 was dropped.',
    wallTimeMs: Date.parse('2025-03-14T10:04:17.250Z'),
    ...changes,
  };
}

interface Harness {
  fake: FakeApiServer;
  recorder: EventRecorder;
  registry: Registry;
}

const running: Harness[] = [];

async function start(
  options: Partial<EventRecorderOptions> & { clock?: Clock; requestTimeoutMs?: number } = {},
): Promise<Harness> {
  const fake = await startFakeApiServer();
  const registry = new Registry();
  const recorder = new EventRecorder({
    api: coreV1EventsApi(fake.kubeConfig(), { requestTimeoutMs: options.requestTimeoutMs ?? 2000 }),
    clock: systemClock,
    delay: unrefTimers.delay,
    registry,
    logger: pino({ level: 'silent' }),
    nodeName: 'lab-node',
    initialRetryMs: 10,
    maxRetryMs: 50,
    patchIntervalMs: 20,
    ...options,
  });
  recorder.start();
  const harness = { fake, recorder, registry };
  running.push(harness);
  return harness;
}

afterEach(async () => {
  for (const { recorder, fake } of running.splice(0)) {
    await recorder.stop(100);
    await fake.close();
  }
});

async function counter(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return values
    .filter((value) => Object.entries(labels).every(([key, label]) => value.labels[key] === label))
    .reduce((sum, value) => sum + value.value, 0);
}

const dropped = (registry: Registry, cause: string) =>
  counter(registry, 'conntrack_observer_k8s_events_dropped_total', { cause });

function totalCount(fake: FakeApiServer): number {
  return fake.events().reduce((sum, event) => sum + Number(event.count), 0);
}

describe('EventRecorder', () => {
  it('creates a Warning Event on the pod, reported by this agent and node', async () => {
    const { fake, recorder, registry } = await start();
    expect(recorder.record(occurrence())).toBe('queued');
    await eventually('event created', () => fake.events().length === 1);
    const event = fake.events()[0]!;
    expect(event).toMatchObject({
      kind: 'Event',
      type: 'Warning',
      reason: 'ConntrackInsertFailed',
      count: 1,
      involvedObject: { apiVersion: 'v1', ...POD },
      source: { component: 'conntrack-race-observer', host: 'lab-node' },
      reportingComponent: 'conntrack-race-observer',
      reportingInstance: 'lab-node',
      firstTimestamp: '2025-03-14T10:04:17.000Z',
      lastTimestamp: '2025-03-14T10:04:17.000Z',
      metadata: { namespace: 'default' },
    });
    expect(event.metadata.name).toMatch(/^dns-client-7c9f8d6b54-4xq2m\.[0-9a-f]+$/);
    expect(fake.eventWrites()).toEqual([expect.objectContaining({ method: 'POST', status: 201 })]);
    // The server stores the Event before its answer reaches the recorder.
    await eventually(
      'write counted',
      async () =>
        (await counter(registry, 'conntrack_observer_k8s_events_written_total', {
          reason: 'ConntrackInsertFailed',
          operation: 'create',
        })) === 1,
    );
  });

  it('puts Node Events in the default namespace, as the API server requires for cluster-scoped objects', async () => {
    const { fake, recorder } = await start();
    recorder.record(
      occurrence({
        involvedObject: {
          kind: 'Node',
          namespace: '',
          name: 'lab-node',
          uid: '2b4d6f8a-0c2e-4a4c-9e6a-7b9d1f3b5d79',
        },
        reason: 'ConntrackTableFull',
        aggregationKey: 'table_full',
      }),
    );
    await eventually('node event created', () => fake.events().length === 1);
    const event = fake.events()[0]!;
    expect(event.metadata.namespace).toBe('default');
    expect(event.involvedObject).toEqual({
      apiVersion: 'v1',
      kind: 'Node',
      name: 'lab-node',
      uid: '2b4d6f8a-0c2e-4a4c-9e6a-7b9d1f3b5d79',
    });
  });

  it('turns a storm of 10,000 occurrences into a handful of writes whose count is exact', async () => {
    const { fake, recorder, registry } = await start();
    for (let batch = 0; batch < 20; batch += 1) {
      for (let i = 0; i < 500; i += 1)
        recorder.record(
          occurrence({ wallTimeMs: Date.parse('2025-03-14T10:04:17Z') + batch * 1000 + i }),
        );
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await eventually(
      'all occurrences written',
      () => recorder.pendingOccurrences() === 0 && totalCount(fake) === 10_000,
    );
    const writes = fake.eventWrites();
    expect(fake.events()).toHaveLength(1);
    expect(writes.length).toBeLessThanOrEqual(10);
    expect(writes[0]).toMatchObject({ method: 'POST', status: 201 });
    for (const patch of writes.slice(1)) {
      expect(patch).toMatchObject({
        method: 'PATCH',
        status: 200,
        contentType: 'application/strategic-merge-patch+json',
      });
    }
    expect(fake.events()[0]!.lastTimestamp).toBe('2025-03-14T10:04:36Z');
    const written = await counter(registry, 'conntrack_observer_k8s_events_written_total', {});
    expect(written).toBe(writes.length);
  });

  it('starts a new Event for a key after a quiet aggregation window', async () => {
    const clock = new ManualClock();
    const { fake, recorder } = await start({
      clock,
      patchIntervalMs: 0,
      aggregationWindowMs: 600_000,
    });
    recorder.record(occurrence());
    recorder.record(occurrence());
    await eventually(
      'first event written',
      () => totalCount(fake) === 2 && recorder.pendingOccurrences() === 0,
    );
    clock.advance(600_001);
    recorder.record(occurrence());
    await eventually('second event', () => fake.events().length === 2);
    expect(fake.events().map((event) => event.count)).toEqual([2, 1]);
  });

  it('keeps separate Events per race kind and per object', async () => {
    const { fake, recorder } = await start();
    recorder.record(occurrence({ aggregationKey: 'snat' }));
    recorder.record(occurrence({ aggregationKey: 'dnat' }));
    recorder.record(occurrence({ involvedObject: { ...POD, name: 'other', uid: 'uid-other' } }));
    await eventually('three events', () => fake.events().length === 3);
  });

  it('retries on 429 and 500 and delivers the full count', async () => {
    const { fake, recorder, registry } = await start();
    fake.failRequests({ status: 429, times: 2, match: 'event-writes', retryAfterSeconds: 0 });
    fake.failRequests({ status: 500, times: 2, match: 'event-writes' });
    for (let i = 0; i < 7; i += 1) expect(recorder.record(occurrence())).not.toBe('dropped');
    await eventually('delivered', () => totalCount(fake) === 7);
    expect(fake.eventWrites().filter((write) => write.status >= 400)).toHaveLength(4);
    expect(await dropped(registry, 'api_error')).toBe(0);
  });

  it('never blocks or throws while the API server is down, and delivers once it is back', async () => {
    const { fake, recorder } = await start();
    await fake.down();
    const outcomes = new Set<string>();
    for (let i = 0; i < 1000; i += 1) {
      outcomes.add(recorder.record(occurrence({ aggregationKey: i % 2 === 0 ? 'snat' : 'dnat' })));
    }
    // Synchronous: all thousand calls returned, with nothing dropped, before any I/O could happen.
    expect([...outcomes].sort()).toEqual(['aggregated', 'queued']);
    expect(recorder.pendingOccurrences()).toBe(1000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await fake.up();
    await eventually('delivered after the outage', () => totalCount(fake) === 1000);
    expect(fake.events()).toHaveLength(2);
  });

  it('drops what a long outage outlasts, counted as api_error, and the counts still add up', async () => {
    const { fake, recorder, registry } = await start({ maxAttempts: 3 });
    const outage = fake.failRequests({ status: 503, match: 'event-writes' });
    for (let i = 0; i < 50; i += 1) recorder.record(occurrence());
    await eventually('given up', async () => (await dropped(registry, 'api_error')) === 50);
    outage.clear();
    for (let i = 0; i < 5; i += 1) recorder.record(occurrence());
    await eventually('later occurrences delivered', () => totalCount(fake) === 5);
    expect(totalCount(fake) + (await dropped(registry, 'api_error'))).toBe(55);
  });

  it('creates the Event anew with its whole count when the patched one has expired (404)', async () => {
    const { fake, recorder } = await start();
    recorder.record(occurrence());
    await eventually('created', () => fake.events().length === 1);
    const first = fake.events()[0]!;
    fake.remove('events', 'default', first.metadata.name);
    recorder.record(occurrence());
    await eventually(
      'recreated',
      () => fake.events().length === 1 && fake.events()[0]!.count === 2,
    );
    expect(fake.events()[0]!.metadata.name).not.toBe(first.metadata.name);
    expect(fake.eventWrites().map((write) => `${write.method} ${write.status}`)).toEqual([
      'POST 201',
      'PATCH 404',
      'POST 201',
    ]);
  });

  it('treats a 409 on a retried create as its own earlier success and patches the count', async () => {
    const { fake, recorder } = await start();
    fake.failRequests({ status: 0, loseAnswer: true, times: 1, match: 'event-writes' });
    recorder.record(occurrence());
    await eventually('settled', () => recorder.pendingOccurrences() === 0);
    recorder.record(occurrence());
    await eventually('count 2', () => fake.events()[0]?.count === 2);
    expect(fake.events()).toHaveLength(1);
    expect(fake.eventWrites().map((write) => `${write.method} ${write.status}`)).toEqual([
      'POST 201',
      'POST 409',
      'PATCH 200',
      'PATCH 200',
    ]);
  });

  it('gives up on a request the server never answers in time, and retries it', async () => {
    const { fake, recorder } = await start({ requestTimeoutMs: 100 });
    let slowOnce = true;
    fake.setLatency(400, (request) => {
      const slow = slowOnce && request.resource === 'events';
      slowOnce = false;
      return slow;
    });
    recorder.record(occurrence());
    await eventually(
      'event exists with count 1',
      () => fake.events().length === 1 && fake.events()[0]!.count === 1,
      3000,
    );
    // Whichever attempt the server stored first, the retry never makes a duplicate Event.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fake.events()).toHaveLength(1);
    expect(fake.events()[0]!.count).toBe(1);
  });

  it('drops new Events beyond the per-object budget as rate_limited', async () => {
    const { fake, recorder, registry } = await start({
      perObjectBurst: 2,
      perObjectPerSecond: 0.001,
    });
    expect(recorder.record(occurrence({ aggregationKey: 'snat' }))).toBe('queued');
    expect(recorder.record(occurrence({ aggregationKey: 'dnat' }))).toBe('queued');
    expect(recorder.record(occurrence({ aggregationKey: 'none' }))).toBe('dropped');
    // Occurrences of Events already open are never rate-limited away.
    expect(recorder.record(occurrence({ aggregationKey: 'snat' }))).toBe('aggregated');
    await eventually('two events', () => totalCount(fake) === 3);
    expect(await dropped(registry, 'rate_limited')).toBe(1);
  });

  it('drops occurrences of new Events when every tracked Event is waiting, as queue_full', async () => {
    const { fake, recorder, registry } = await start({ maxKeys: 2 });
    await fake.down();
    recorder.record(occurrence({ involvedObject: { ...POD, uid: 'a' } }));
    recorder.record(occurrence({ involvedObject: { ...POD, uid: 'b' } }));
    expect(recorder.record(occurrence({ involvedObject: { ...POD, uid: 'c' } }))).toBe('dropped');
    expect(await dropped(registry, 'queue_full')).toBe(1);
    await fake.up();
    await eventually(
      'two delivered',
      () => totalCount(fake) === 2 && recorder.pendingOccurrences() === 0,
    );
    // Once written, idle Events make room for new ones.
    expect(recorder.record(occurrence({ involvedObject: { ...POD, uid: 'c' } }))).toBe('queued');
  });

  it('does not retry a request the server refuses (403), and counts it as api_rejected', async () => {
    const { fake, recorder, registry } = await start();
    fake.failRequests({ status: 403, match: 'event-writes' });
    recorder.record(occurrence());
    recorder.record(occurrence());
    await eventually('rejected', async () => (await dropped(registry, 'api_rejected')) === 2);
    expect(fake.eventWrites()).toHaveLength(1);
  });

  it('flushes waiting occurrences on stop and counts what it could not write as shutdown', async () => {
    const { fake, recorder, registry } = await start({ patchIntervalMs: 60_000 });
    recorder.record(occurrence());
    await eventually('created', () => fake.events().length === 1);
    recorder.record(occurrence());
    recorder.record(occurrence());
    await recorder.stop(1000);
    expect(fake.events()[0]!.count).toBe(3);
    expect(recorder.record(occurrence())).toBe('dropped');
    expect(await dropped(registry, 'shutdown')).toBe(1);
  });

  it('counts occurrences it cannot flush before the deadline as shutdown', async () => {
    const { fake, recorder, registry } = await start();
    await fake.down();
    for (let i = 0; i < 4; i += 1) recorder.record(occurrence());
    await recorder.stop(50);
    expect(await dropped(registry, 'shutdown')).toBe(4);
  });
});
