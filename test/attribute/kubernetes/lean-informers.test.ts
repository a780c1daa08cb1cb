import { afterEach, describe, expect, it } from '@jest/globals';
import type { V1EndpointSlice, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ClusterInformers } from '../../../src/attribute/kubernetes/cluster-informers.js';
import { EndpointSliceIndex } from '../../../src/attribute/kubernetes/endpoint-slice-index.js';
import {
  leanEndpointSlice,
  leanNode,
  leanPod,
  leanService,
} from '../../../src/attribute/kubernetes/lean-objects.js';
import { NodeAddressIndex } from '../../../src/attribute/kubernetes/node-address-index.js';
import { PodIpIndex } from '../../../src/attribute/kubernetes/pod-ip-index.js';
import { ServiceIndex } from '../../../src/attribute/kubernetes/service-index.js';
import { PodFactsIndex } from '../../../src/diagnose/pod-facts-index.js';
import { systemClock } from '../../../src/shared/clock.js';
import { unrefTimers } from '../../../src/shared/timers.js';
import { eventually } from '../../support/eventually.js';
import {
  startFakeApiServer,
  type FakeApiServer,
  type FakeApiServerOptions,
} from '../../support/fake-apiserver.js';
import { fixture, podFrom, stored } from '../../support/k8s-fixtures.js';
import { scaleEndpointSlice, scaleService } from '../../support/k8s-scale.js';

const NODE = 'lab-node';

interface Harness {
  fake: FakeApiServer;
  informers: ClusterInformers;
  indexes: {
    pods: PodIpIndex;
    services: ServiceIndex;
    endpointSlices: EndpointSliceIndex;
    node: NodeAddressIndex;
  };
  registry: Registry;
}

const running: Harness[] = [];

afterEach(async () => {
  for (const harness of running.splice(0)) {
    await harness.informers.stop();
    await harness.fake.close();
  }
});

async function start(
  objects: FakeApiServerOptions,
  options: { pageSize?: number; maxServices?: number } = {},
): Promise<Harness> {
  const fake = await startFakeApiServer({ nodes: [stored('node-lab-node')], ...objects });
  const indexes = {
    pods: new PodIpIndex({ retentionMs: 600_000 }),
    services: new ServiceIndex(),
    endpointSlices: new EndpointSliceIndex(),
    node: new NodeAddressIndex(NODE),
  };
  const registry = new Registry();
  const informers = new ClusterInformers({
    kubeConfig: fake.kubeConfig(),
    nodeName: NODE,
    indexes,
    registry,
    logger: pino({ level: 'silent' }),
    clock: systemClock,
    delay: unrefTimers.delay,
    initialBackoffMs: 20,
    maxBackoffMs: 200,
    pageSize: options.pageSize,
    ...(options.maxServices !== undefined ? { maxObjects: { services: options.maxServices } } : {}),
    random: () => 0.5,
  });
  const harness = { fake, informers, indexes, registry };
  running.push(harness);
  informers.start();
  await informers.whenSynced();
  return harness;
}

async function metric(registry: Registry, name: string, resource: string): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return values.find((value) => value.labels.resource === resource)?.value ?? Number.NaN;
}

/** A real object with what a real API server adds: managedFields and annotations. */
function withServerFields<T>(object: T): T {
  const copy = structuredClone(object) as { metadata: Record<string, unknown> };
  copy.metadata.managedFields = [{ manager: 'kube-controller-manager', operation: 'Update' }];
  copy.metadata.annotations = { 'kubectl.kubernetes.io/last-applied-configuration': '{}' };
  return copy as T;
}

describe('lean objects', () => {
  it('keep what the pod index and the diagnosis read, and drop managedFields and annotations', () => {
    for (const name of [
      'pod-dns-client-a',
      'pod-coredns',
      'pod-kube-proxy-hostnetwork',
      'pod-dns-client-b',
    ]) {
      const full = withServerFields(fixture(name) as V1Pod);
      const lean = leanPod(full);
      expect(lean.metadata).not.toHaveProperty('managedFields');
      expect(lean.metadata).not.toHaveProperty('annotations');
      expect(lean.metadata).not.toHaveProperty('labels');

      const fullIndex = new PodIpIndex({ retentionMs: 1000 });
      const leanIndex = new PodIpIndex({ retentionMs: 1000 });
      const observedMs = Date.parse('2026-12-01T00:00:00Z');
      fullIndex.upsert(full, observedMs);
      leanIndex.upsert(lean, observedMs);
      for (const ip of [full.status?.podIP ?? '', ...(full.status?.podIPs ?? []).map((p) => p.ip)])
        for (const atMs of [observedMs - 3_600_000, observedMs, observedMs + 1])
          expect(leanIndex.podAt(ip, atMs)).toEqual(fullIndex.podAt(ip, atMs));
      expect([...leanIndex.hostNetworkIps()]).toEqual([...fullIndex.hostNetworkIps()]);

      const fullFacts = new PodFactsIndex();
      const leanFacts = new PodFactsIndex();
      fullFacts.upsert(full);
      leanFacts.upsert(lean);
      const uid = full.metadata?.uid ?? '';
      expect(leanFacts.get(uid)).toEqual(fullFacts.get(uid));
    }
  });

  it('keep what the Service, EndpointSlice and Node indexes read', () => {
    const service = withServerFields(scaleService(7) as V1Service);
    const fullServices = new ServiceIndex();
    const leanServices = new ServiceIndex();
    fullServices.upsert(service);
    leanServices.upsert(leanService(service));
    const ip = service.spec?.clusterIP ?? '';
    expect(leanServices.serviceAt(ip)).toEqual(fullServices.serviceAt(ip));
    expect(leanService(service).spec).not.toHaveProperty('ports');
    expect(leanService(service).metadata).not.toHaveProperty('managedFields');

    for (const slice of [
      fixture('endpointslice-kube-dns') as V1EndpointSlice,
      scaleEndpointSlice(3, 10) as V1EndpointSlice,
    ]) {
      const fullSlices = new EndpointSliceIndex();
      const leanSlices = new EndpointSliceIndex();
      fullSlices.upsert(slice);
      leanSlices.upsert(leanEndpointSlice(slice));
      for (const endpoint of slice.endpoints)
        for (const address of endpoint.addresses)
          expect(leanSlices.backendAt(address)).toEqual(fullSlices.backendAt(address));
      expect(leanEndpointSlice(slice).metadata).not.toHaveProperty('managedFields');
    }

    const node = withServerFields(fixture('node-lab-node') as V1Node);
    const fullNode = new NodeAddressIndex(NODE);
    const leanNodeIndex = new NodeAddressIndex(NODE);
    fullNode.upsert(node);
    leanNodeIndex.upsert(leanNode(node));
    expect(leanNodeIndex.list()).toEqual(fullNode.list());
    expect(leanNodeIndex.nodeUid()).toBe(fullNode.nodeUid());
  });
});

describe('lean informers against an API server', () => {
  it('follow continue tokens to the end of a paginated list', async () => {
    const services = Array.from({ length: 1_200 }, (_, i) => scaleService(i));
    const { fake, indexes } = await start({ services }, { pageSize: 500 });
    expect(indexes.services.size).toBe(1_200);
    expect(indexes.services.serviceAt(scaleService(1_199).spec.clusterIP)?.name).toBe('svc-1199');
    expect(fake.callCounts('services')).toMatchObject({ lists: 1, pages: 3 });
    const pages = fake.requests().filter((r) => r.resource === 'services' && !r.watch);
    expect(pages.map((r) => r.query.get('limit'))).toEqual(['500', '500', '500']);
    expect(pages[0]?.query.get('continue')).toBeNull();
    expect(pages[2]?.query.get('continue')).toBeTruthy();
  });

  it('resume a dropped watch from the last resourceVersion without relisting', async () => {
    const { fake, indexes, registry } = await start({
      services: [stored('service-kube-dns')],
      endpointSlices: [stored('endpointslice-kube-dns')],
    });
    await eventually('watches open', () => fake.watcherCount() === 4);
    fake.apply('services', scaleService(1));
    await eventually(
      'service seen by the watch',
      () => indexes.services.serviceAt(scaleService(1).spec.clusterIP) !== undefined,
    );
    const lastRv = String(fake.resourceVersion());
    const before = fake.callCounts('services');
    // An API server restart: every connection dropped, nothing answers for a moment.
    await fake.down();
    await fake.up();
    await eventually('services watched again', () => fake.watcherCount('services') === 1);
    const after = fake.callCounts('services');
    expect(after.lists).toBe(before.lists);
    expect(after.watches).toBeGreaterThan(before.watches);
    const resumed = fake.requests().filter((r) => r.resource === 'services' && r.watch);
    expect(resumed.at(-1)?.query.get('resourceVersion')).toBe(lastRv);
    expect(await metric(registry, 'conntrack_observer_k8s_informer_lists_total', 'services')).toBe(
      1,
    );
    fake.apply('services', scaleService(2));
    await eventually(
      'a change after the restart applied',
      () => indexes.services.serviceAt(scaleService(2).spec.clusterIP) !== undefined,
    );
  });

  it('relist on 410 Gone and count the list', async () => {
    const { fake, indexes, registry } = await start({ pods: [stored('pod-dns-client-a')] });
    await eventually('pods watched', () => fake.watcherCount('pods') === 1);
    fake.apply('pods', podFrom('pod-dns-client-b'));
    fake.compact();
    fake.goneOnNextWatch({ resource: 'pods', as: 'event' });
    fake.endWatches();
    await eventually('relisted', () => fake.callCounts('pods').lists === 2);
    await eventually(
      'pod b indexed',
      () => indexes.pods.podAt('10.244.0.3', Date.now()) !== undefined,
    );
    expect(await metric(registry, 'conntrack_observer_k8s_informer_lists_total', 'pods')).toBe(2);
  });

  it('keep at most their bound of objects, count the rest, and make room on deletion', async () => {
    const services = Array.from({ length: 3 }, (_, i) => scaleService(i));
    const { fake, indexes, registry } = await start({ services }, { maxServices: 2 });
    const held = () => metric(registry, 'conntrack_observer_k8s_informer_objects', 'services');
    const dropped = () =>
      metric(registry, 'conntrack_observer_k8s_informer_objects_dropped_total', 'services');
    expect(indexes.services.size).toBe(2);
    expect(await held()).toBe(2);
    expect(await dropped()).toBe(1);
    await eventually('services watched', () => fake.watcherCount('services') === 1);
    fake.apply('services', scaleService(3));
    await eventually('the new one counted', async () => (await dropped()) === 2);
    expect(indexes.services.serviceAt(scaleService(3).spec.clusterIP)).toBeUndefined();
    fake.remove('services', 'ns-0', 'svc-0');
    await eventually('room made', async () => (await held()) === 1);
    fake.apply('services', scaleService(4));
    await eventually(
      'the next new one kept',
      () => indexes.services.serviceAt(scaleService(4).spec.clusterIP) !== undefined,
    );
    expect(await held()).toBe(2);
  });
});
