import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from '@jest/globals';
import type { CoreV1Event } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createHostFiles } from '../../../src/diagnose/host-files.js';
import { diagnosePod } from '../../../src/diagnose/pod-diagnoser.js';
import { advised } from '../../../src/diagnose/remedies.js';
import type { EventDiagnosis, PodDiagnosis } from '../../../src/events/diagnosis.js';
import type { AttributedEvent } from '../../../src/events/types.js';
import { EventRecorder } from '../../../src/sinks/kubernetes-events/event-recorder.js';
import type {
  EventCountPatch,
  EventsApi,
} from '../../../src/sinks/kubernetes-events/events-api.js';
import { KubernetesEventSink } from '../../../src/sinks/kubernetes-events/kubernetes-event-sink.js';
import { makeContainerRoot, makeProcTree } from '../../support/container-roots.js';
import { eventually } from '../../support/eventually.js';
import { attributed, insertFailure, podA } from '../../support/events.js';
import { ManualClock } from '../../support/manual-clock.js';
import { ManualDelay } from '../../support/manual-delay.js';

const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((remove) => remove()));

/** The Events API in memory: what was created and patched, in order. */
class MemoryEventsApi implements EventsApi {
  readonly writes: { op: 'create' | 'patch'; message: string; count: number }[] = [];
  async create(_namespace: string, event: CoreV1Event): Promise<void> {
    this.writes.push({ op: 'create', message: event.message ?? '', count: event.count ?? 0 });
  }
  async patch(_namespace: string, _name: string, patch: EventCountPatch): Promise<void> {
    this.writes.push({ op: 'patch', message: patch.message, count: patch.count });
  }
}

/** A real diagnosis of a musl pod, read from a root made of this machine's musl. */
async function muslPod(): Promise<PodDiagnosis> {
  const root = makeContainerRoot('musl', 'nameserver 10.96.0.10\noptions ndots:5\n');
  const proc = makeProcTree([{ pid: 100, root: root.path, netnsInode: 501, comm: 'cart' }]);
  cleanup.push(root.remove, () => rmSync(proc, { recursive: true, force: true }));
  const diagnosis = await diagnosePod(
    {
      files: createHostFiles(),
      procRoot: proc,
      clock: new ManualClock(),
      nameserverContext: () => ({ clusterDnsIps: new Set(), nodeLocalDnsIps: new Set() }),
    },
    { target: { by: 'netns', inode: 501 }, foundBy: 'netns' },
  );
  if (!diagnosis) throw new Error('the musl root was not read');
  return diagnosis;
}

const NOT_YET: EventDiagnosis = {
  pod: { status: 'unknown', reason: 'not read yet: the pod is being diagnosed in the background' },
  node: { status: 'unknown', reason: 'the node is being read' },
};

function harness(whenDiagnosed: (event: AttributedEvent) => Promise<EventDiagnosis> | undefined) {
  const api = new MemoryEventsApi();
  const delay = new ManualDelay();
  const clock = new ManualClock();
  const recorder = new EventRecorder({
    api,
    clock,
    delay: delay.delay,
    registry: new Registry(),
    logger: pino({ level: 'silent' }),
    nodeName: 'lab-node',
  });
  const sink = new KubernetesEventSink({
    recorder,
    nodeName: 'lab-node',
    nodeUid: () => 'node-uid',
    isNodeAddress: () => false,
    logger: pino({ level: 'silent' }),
    flushTimeoutMs: 100,
    // The event diagnosed anew goes through the advice stage again, as the agent wires it.
    whenDiagnosed: (event) => whenDiagnosed(event)?.then((diagnosis) => advised(event, diagnosis)),
  });
  sink.start(new AbortController().signal);
  return { api, delay, clock, sink };
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => undefined;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe("a pod's first Event waits for the diagnosis being read", () => {
  it('an event arriving while its pod is read gets an Event with the tailored advice, not the generic', async () => {
    const musl = await muslPod();
    const reading = deferred<EventDiagnosis>();
    const { api, delay, sink } = harness((event) =>
      event.diagnosis?.pod.status === 'diagnosed' ? undefined : reading.promise,
    );
    const event = advised(attributed(insertFailure(), podA), NOT_YET);
    sink.handle(event);
    sink.handle(event);
    await eventually('the writer waiting for the hold', () =>
      delay.pendingDurations().includes(2_000),
    );
    expect(api.writes).toEqual([]);

    reading.resolve({ pod: musl, node: NOT_YET.node });
    await eventually('the Event created', () => api.writes.length === 1);
    const [created] = api.writes;
    expect(created).toMatchObject({ op: 'create', count: 2 });
    expect(created?.message).toContain('musl always sends A and AAAA in parallel');
    // The generic remedy offered to any pod: never to a musl one.
    expect(created?.message).not.toContain('dnsConfig option single-request-reopen');
    await sink.stop();
  });

  it('waits at most the bound: a diagnosis not read within 2 s leaves the generic advice', async () => {
    const { api, delay, clock, sink } = harness(() => new Promise<EventDiagnosis>(() => undefined));
    sink.handle(advised(attributed(insertFailure(), podA), NOT_YET));
    await eventually('the writer waiting for the hold', () =>
      delay.pendingDurations().includes(2_000),
    );
    clock.advance(1_999);
    await delay.elapse(2_000);
    await eventually('the writer waiting the rest of the hold', () =>
      delay.pendingDurations().includes(1),
    );
    expect(api.writes).toEqual([]);
    clock.advance(1);
    await delay.elapse(1);
    await eventually('the Event created', () => api.writes.length === 1);
    expect(api.writes[0]?.message).toContain('dnsConfig option single-request-reopen');
    await sink.stop();
  });

  it('does not wait when the diagnosis is already read', async () => {
    const musl = await muslPod();
    let asked = 0;
    const { api, sink } = harness(() => {
      asked += 1;
      return undefined;
    });
    sink.handle(advised(attributed(insertFailure(), podA), { pod: musl, node: NOT_YET.node }));
    await eventually('the Event created', () => api.writes.length === 1);
    expect(asked).toBe(1);
    expect(api.writes[0]?.message).toContain('musl always sends A and AAAA in parallel');
    await sink.stop();
  });
});
