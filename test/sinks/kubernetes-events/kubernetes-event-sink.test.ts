import { advised } from '../../../src/diagnose/remedies.js';
import { afterEach, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { systemClock } from '../../../src/shared/clock.js';
import type {
  AttributedEvent,
  DnsDropEvent,
  InsertFailureEvent,
  ProbeEvent,
} from '../../../src/events/types.js';
import {
  kubernetesParts,
  type KubernetesParts,
  type KubernetesTuning,
} from '../../../src/kubernetes-parts.js';
import { unrefTimers } from '../../../src/shared/timers.js';
import { LifecycleStack } from '../../../src/shared/lifecycle.js';
import { eventually } from '../../support/eventually.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { podFrom, stored } from '../../support/k8s-fixtures.js';
import { eventDiagnosis, muslSeed004Diagnosis } from '../../support/pod-diagnoses.js';
import {
  dnsDrop as baseDnsDrop,
  dnsNoData as baseDnsNoData,
  dnsLookups,
  dnsQuery as baseDnsQuery,
  insertFailure as baseInsertFailure,
} from '../../support/events.js';

const CLIENT_A = 'dns-client-7c9f8d6b54-4xq2m';

interface Harness {
  fake: FakeApiServer;
  parts: KubernetesParts;
  stack: LifecycleStack;
  forgotten: string[];
  registry: Registry;
}

const running: Harness[] = [];

/** The Kubernetes parts wired and started as the agent does, against a fake API server. */
async function start(extraTuning: KubernetesTuning = {}): Promise<Harness> {
  const fake = await startFakeApiServer({
    pods: [stored('pod-dns-client-a'), stored('pod-coredns'), stored('pod-kube-proxy-hostnetwork')],
    services: [stored('service-kube-dns')],
    endpointSlices: [stored('endpointslice-kube-dns')],
    nodes: [stored('node-lab-node')],
  });
  const forgotten: string[] = [];
  const registry = new Registry();
  const parts = kubernetesParts({
    kubeConfig: fake.kubeConfig(),
    nodeName: 'lab-node',
    registry,
    logger: pino({ level: 'silent' }),
    clock: systemClock,
    delay: unrefTimers.delay,
    forgetPod: (namespace, name) => forgotten.push(`${namespace}/${name}`),
    tuning: {
      seriesGraceMs: 100,
      janitorSweepMs: 20,
      informerInitialBackoffMs: 20,
      recorder: { initialRetryMs: 20, maxRetryMs: 100, patchIntervalMs: 20 },
      ...extraTuning,
    },
  });
  const stack = new LifecycleStack();
  const harness = { fake, parts, stack, forgotten, registry };
  running.push(harness);
  await stack.push(parts.janitor);
  await stack.push(parts.events);
  await stack.push(parts.cluster);
  await parts.cluster.whenSynced();
  return harness;
}

afterEach(async () => {
  for (const { stack, fake } of running.splice(0)) {
    await stack.stop();
    await fake.close();
  }
});

function snatRace(srcIp: string, srcPort = 40000): InsertFailureEvent {
  return baseInsertFailure({
    race: 'snat',
    original: { srcIp, srcPort, dstIp: '192.0.2.53', dstPort: 53 },
    reply: { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1', dstPort: srcPort },
  });
}

function dnsQueryDrop(srcIp: string): DnsDropEvent {
  return baseDnsDrop({
    tuple: { srcIp, srcPort: 41522, dstIp: '10.96.0.10', dstPort: 53 },
    location: 'nf_hook_slow',
  });
}

function attributed(
  { cluster }: KubernetesParts,
  event: ProbeEvent,
  wallTimeMs = Date.now(),
): AttributedEvent {
  return advised(
    { event, attribution: cluster.resolver.attribute(event, wallTimeMs), wallTimeMs },
    undefined,
  );
}

describe('the Kubernetes parts against a fake API server', () => {
  it('returns at once and reports synced once every informer has listed', async () => {
    const { parts } = await start();
    expect(parts.cluster.waitingFor()).toBeUndefined();
  });

  it('posts the race on the pod it came from, with the race kind and the remedies', async () => {
    const { fake, parts } = await start();
    for (let i = 0; i < 3; i += 1) parts.events.handle(attributed(parts, snatRace('10.244.0.2')));
    await eventually('event with count 3', () => fake.events()[0]?.count === 3);
    const [event] = fake.events();
    expect(event).toMatchObject({
      reason: 'ConntrackInsertFailed',
      type: 'Warning',
      involvedObject: {
        kind: 'Pod',
        name: CLIENT_A,
        namespace: 'default',
        uid: '3f1c2a9e-8b7d-4c6e-a5f4-1e2d3c4b5a61',
      },
    });
    expect(event!.message).toContain('SNAT port-allocation race');
    expect(event!.message).toContain('--random-fully');
  });

  it('reports a dropped DNS query with the Service name', async () => {
    const { fake, parts } = await start();
    parts.events.handle(attributed(parts, dnsQueryDrop('10.244.0.2')));
    await eventually('dns event', () => fake.events().length === 1);
    expect(fake.events()[0]).toMatchObject({
      reason: 'DNSQueryDropped',
      involvedObject: { name: CLIENT_A },
    });
    expect(fake.events()[0]!.message).toContain(
      'UDP query 10.244.0.2:41522 → kube-dns 10.96.0.10:53',
    );
  });

  it('tells the pod how many DNS queries went unanswered, the stall it felt and the cause, and nothing of answered ones', async () => {
    const { fake, parts } = await start();
    const client = { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 };
    parts.events.handle(attributed(parts, baseDnsQuery({ tuple: client, count: 40 })));
    parts.events.handle(
      attributed(
        parts,
        baseDnsQuery({
          tuple: client,
          outcome: 'unanswered',
          answer: undefined,
          count: 3,
          cause: 'firewall',
        }),
      ),
    );
    await eventually('unanswered event', () => fake.events().length === 1);
    const event = fake.events()[0]!;
    expect(event).toMatchObject({
      reason: 'DNSQueryUnanswered',
      involvedObject: { name: CLIENT_A },
      count: 3,
    });
    expect(event.message).toContain(
      '3 DNS queries (UDP query 10.244.0.2 → kube-dns 10.96.0.10:53)',
    );
    expect(event.message).toContain('exactly 5 s');
    expect(event.message).toContain('firewall rule');
    expect(event.message).toContain('Remedies:');
  });

  it('tells a musl pod its lookup stopped on NODATA from a search domain, and tells a glibc pod nothing', async () => {
    const { fake, parts } = await start();
    const glibc = attributed(parts, baseDnsNoData({ name: 'www.glibc.test.corp.test' }));
    parts.events.handle({ ...glibc, diagnosis: eventDiagnosis(muslSeed004Diagnosis('glibc')) });
    const musl = attributed(parts, baseDnsNoData());
    parts.events.handle({ ...musl, diagnosis: eventDiagnosis(muslSeed004Diagnosis('musl')) });
    await eventually('nodata event', () => fake.events().length === 1);
    const event = fake.events()[0]!;
    expect(event).toMatchObject({
      reason: 'DNSLookupStoppedOnNoData',
      type: 'Warning',
      involvedObject: { name: CLIENT_A },
      count: 1,
    });
    expect(event.message).toContain('"www.example.test" stopped at "www.example.test.corp.test"');
    expect(event.message).toContain(
      'Names tried, in the order of its search list: www.example.test.shop.svc.cluster.local, www.example.test.svc.cluster.local, www.example.test.corp.test (NODATA: stopped there',
    );
    expect(event.message).toContain('search domain corp.test');
    expect(event.message).toContain('musl');
    expect(event.message).toContain('glibc would go on');
    expect(event.message).toContain('"www.example.test."');
    expect(event.message).toContain('ndots:1 or ndots:2');
    expect(event.message).not.toContain('glibc.test');
  });

  it('tells a pod whose lookups walk the search list what they cost, why and what to do, once per window, and a pod whose lookups cost 2 nothing', async () => {
    const { fake, parts } = await start();
    const lookups = (queriesPerLookup: number, count: number, srcIp: string) =>
      dnsLookups(queriesPerLookup, count, {
        lookupEnd: queriesPerLookup === 2 ? 'answered' : 'nxdomain',
        tuple: { srcIp, srcPort: 0, dstIp: '0.0.0.0', dstPort: 53 },
      });
    const diagnosis = eventDiagnosis(muslSeed004Diagnosis());
    for (let i = 0; i < 5; i += 1) {
      parts.events.handle({ ...attributed(parts, lookups(2, 1, '10.244.0.2')), diagnosis });
    }
    expect(fake.events()).toEqual([]);
    parts.events.handle({ ...attributed(parts, lookups(8, 5, '10.244.0.2')), diagnosis });
    await eventually('fan-out event', () => fake.events().length === 1);
    const event = fake.events()[0]!;
    expect(event).toMatchObject({
      reason: 'DNSSearchListFanOut',
      type: 'Warning',
      involvedObject: { name: CLIENT_A },
      count: 1,
    });
    expect(event.message).toContain('5 DNS lookups of this pod cost 8 queries each on average');
    expect(event.message).toContain('ndots:5 and 3 search domains');
    expect(event.message).toContain('shop.svc.cluster.local svc.cluster.local corp.test');
    expect(event.message).toContain('trailing dot');
    expect(event.message).toContain('ndots:1 or ndots:2');
    expect(event.message).toContain('NodeLocal DNSCache');
    expect(fake.events().length).toBe(1);
  });

  it('posts no DNS Event for a race loser or a late answer, only the race itself', async () => {
    const { fake, parts } = await start();
    const afterSnat = dnsQueryDrop('192.0.2.1');
    // The race loser as the DNS probe sees it after SNAT, with its conntrack entry.
    parts.events.handle(
      attributed(parts, {
        ...afterSnat,
        conntrack: {
          status: 0x190,
          original: { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '10.96.0.10', dstPort: 53 },
          lostInsertRace: true,
        },
      }),
    );
    parts.events.handle(
      attributed(parts, {
        ...dnsQueryDrop('10.244.0.2'),
        reason: 'NOT_SPECIFIED',
        location: 'udp_destruct_common',
      }),
    );
    parts.events.handle(attributed(parts, snatRace('10.244.0.2')));
    await eventually('race event', () => fake.events().length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(fake.events().map((event) => event.reason)).toEqual(['ConntrackInsertFailed']);
  });

  it('puts races from the node address on the Node, and ignores resolved clashes and strangers', async () => {
    const { fake, parts } = await start();
    parts.events.handle(attributed(parts, snatRace('192.0.2.1', 33000)));
    parts.events.handle(attributed(parts, { ...snatRace('10.244.0.2'), kind: 'clash_resolved' }));
    parts.events.handle(attributed(parts, snatRace('10.244.9.9')));
    await eventually('node event', () => fake.events().length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(fake.events()).toHaveLength(1);
    expect(fake.events()[0]).toMatchObject({
      reason: 'ConntrackInsertFailedHostNetwork',
      metadata: { namespace: 'default' },
      involvedObject: {
        kind: 'Node',
        name: 'lab-node',
        uid: '2b4d6f8a-0c2e-4a4c-9e6a-7b9d1f3b5d79',
      },
    });
  });

  it('posts a full table on the Node', async () => {
    const { fake, parts } = await start();
    parts.events.recordTableFull({
      entries: 65536,
      limit: 65536,
      drops: 12,
      wallTimeMs: Date.now(),
    });
    await eventually('table full event', () => fake.events().length === 1);
    expect(fake.events()[0]).toMatchObject({
      reason: 'ConntrackTableFull',
      involvedObject: { kind: 'Node' },
    });
  });

  it('blames a reused IP on the pod that held it when the event happened', async () => {
    const { fake, parts } = await start();
    const beforeDeletion = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
    fake.remove('pods', 'default', CLIENT_A);
    await eventually(
      'pod a gone',
      () => parts.cluster.resolver.attribute(snatRace('10.244.0.2'), Date.now()).pod === undefined,
    );
    // Pod B is given A's address. Its readiness time has one-second resolution and may read as
    // before A's deletion; the index still starts B's hold no earlier than A's end.
    fake.apply(
      'pods',
      podFrom('pod-dns-client-b', {
        ip: '10.244.0.2',
        networkReadyAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      }),
    );
    await eventually(
      'pod b holds the ip',
      () => parts.cluster.resolver.attribute(snatRace('10.244.0.2'), Date.now()).pod !== undefined,
    );
    const later = parts.cluster.resolver.attribute(snatRace('10.244.0.2'), Date.now());
    const earlier = parts.cluster.resolver.attribute(snatRace('10.244.0.2'), beforeDeletion);
    expect(later.pod?.name).toBe('dns-client-7c9f8d6b54-k8v7n');
    expect(earlier.pod?.name).toBe(CLIENT_A);
  });

  it('forgets a deleted pod’s metric series after the grace period', async () => {
    const { fake, forgotten } = await start();
    fake.remove('pods', 'default', CLIENT_A);
    await eventually('series forgotten', () => forgotten.includes(`default/${CLIENT_A}`));
  });

  it('keeps recording through an API outage and delivers once the server is back', async () => {
    const { fake, parts } = await start();
    await fake.down();
    for (let i = 0; i < 100; i += 1) parts.events.handle(attributed(parts, snatRace('10.244.0.2')));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await fake.up();
    await eventually('delivered', () => fake.events()[0]?.count === 100, 8000);
  });

  it('stops within its flush budget when the API is slow, counting what it could not write', async () => {
    const { fake, parts, stack, registry } = await start({ eventFlushMs: 200 });
    // Far beyond the flush budget: only abandoning the request lets stop() return in time.
    fake.setLatency(60_000, (request) => request.resource === 'events');
    parts.events.handle(attributed(parts, snatRace('10.244.0.2')));
    await eventually('the Event write under way', () =>
      fake.requests().some((request) => request.resource === 'events'),
    );
    const stopped = stack.stop();
    const outcome = await Promise.race([
      stopped.then(() => 'stopped'),
      new Promise((resolve) => setTimeout(resolve, 10_000, 'still stopping after 10 s')),
    ]);
    expect(outcome).toBe('stopped');
    const dropped = await registry
      .getSingleMetric('conntrack_observer_k8s_events_dropped_total')!
      .get();
    expect(dropped.values.find((v) => v.labels.cause === 'shutdown')?.value).toBe(1);
    expect(fake.events()).toEqual([]);
  });
});
