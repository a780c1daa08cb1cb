import { afterEach, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { systemClock } from '../../../src/shared/clock.js';
import { ClusterInformers } from '../../../src/attribute/kubernetes/cluster-informers.js';
import { EndpointSliceIndex } from '../../../src/attribute/kubernetes/endpoint-slice-index.js';
import { KubernetesResolver } from '../../../src/attribute/kubernetes/kubernetes-resolver.js';
import { NodeAddressIndex } from '../../../src/attribute/kubernetes/node-address-index.js';
import { PodIpIndex } from '../../../src/attribute/kubernetes/pod-ip-index.js';
import { unrefTimers } from '../../../src/shared/timers.js';
import { ServiceIndex } from '../../../src/attribute/kubernetes/service-index.js';
import type { DnsDropEvent } from '../../../src/events/types.js';
import { eventually } from '../../support/eventually.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { podFrom, stored } from '../../support/k8s-fixtures.js';

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
  deleted: string[];
}

const running: Harness[] = [];

async function start(): Promise<Harness> {
  const fake = await startFakeApiServer({
    pods: [
      stored('pod-dns-client-a'),
      stored('pod-coredns'),
      stored('pod-kube-proxy-hostnetwork'),
      podFrom('pod-dns-client-b', { nodeName: 'lab-node-2', ip: '10.244.2.9' }),
    ],
    services: [stored('service-kube-dns')],
    endpointSlices: [stored('endpointslice-kube-dns')],
    nodes: [
      stored('node-lab-node'),
      { ...stored('node-lab-node'), metadata: { name: 'lab-node-2' } },
    ],
  });
  const indexes = {
    pods: new PodIpIndex({ retentionMs: 600_000 }),
    services: new ServiceIndex(),
    endpointSlices: new EndpointSliceIndex(),
    node: new NodeAddressIndex(NODE),
  };
  const registry = new Registry();
  const deleted: string[] = [];
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
    onPodDeleted: (pod) => deleted.push(pod.metadata?.name ?? ''),
  });
  const harness = { fake, informers, indexes, registry, deleted };
  running.push(harness);
  informers.start();
  await informers.whenSynced();
  return harness;
}

afterEach(async () => {
  for (const harness of running.splice(0)) {
    await harness.informers.stop();
    await harness.fake.close();
  }
});

async function metric(registry: Registry, name: string, resource: string): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return values.find((value) => value.labels.resource === resource)?.value ?? Number.NaN;
}

function dnsQuery(srcIp: string): DnsDropEvent {
  return {
    kind: 'dns_drop',
    probe: 'tracepoint/dns-drop',
    monotonicNs: 0n,
    cpu: 0,
    netnsInode: 4026531840,
    protocol: 'udp',
    reason: 'NETFILTER_DROP',
    direction: 'query',
    tuple: { srcIp, srcPort: 41522, dstIp: '10.96.0.10', dstPort: 53 },
    location: 'nf_hook_slow',
  };
}

describe('ClusterInformers against an API server', () => {
  it('lists only this node’s pods and Node, and all Services and EndpointSlices, then reports synced', async () => {
    const { indexes, informers, registry, fake } = await start();
    expect(informers.isSynced()).toBe(true);
    const now = Date.now();
    expect(indexes.pods.podAt('10.244.0.2', now)?.name).toBe('dns-client-7c9f8d6b54-4xq2m');
    expect(indexes.pods.podAt('10.244.0.10', now)?.name).toBe('coredns-5d78c9869d-x7k2p');
    expect(indexes.pods.podAt('10.244.2.9', now)).toBeUndefined();
    expect(indexes.pods.hostNetworkIps().has('192.0.2.1')).toBe(true);
    expect(indexes.services.serviceAt('10.96.0.10')).toEqual({
      namespace: 'kube-system',
      name: 'kube-dns',
    });
    expect(indexes.endpointSlices.backendAt('10.244.2.3')?.pod?.name).toBe(
      'coredns-5d78c9869d-q9w4t',
    );
    expect(indexes.node.list()).toEqual(['192.0.2.1']);
    for (const resource of ['pods', 'services', 'endpointslices', 'nodes']) {
      expect(await metric(registry, 'conntrack_observer_k8s_informer_synced', resource)).toBe(1);
    }
    await eventually('pod watch open', () => fake.watcherCount('pods') === 1);
    const podWatch = fake.requests().find((r) => r.resource === 'pods' && r.watch);
    expect(podWatch?.query.get('fieldSelector')).toBe('spec.nodeName=lab-node');
    expect(podWatch?.query.get('allowWatchBookmarks')).toBe('true');
    expect(
      fake
        .requests()
        .find((r) => r.resource === 'nodes' && !r.watch)
        ?.query.get('fieldSelector'),
    ).toBe('metadata.name=lab-node');
  });

  it('applies watch updates: a new pod is attributed, a deleted one reported', async () => {
    const { indexes, fake, deleted } = await start();
    fake.apply('pods', podFrom('pod-dns-client-b'));
    await eventually(
      'pod b indexed',
      () => indexes.pods.podAt('10.244.0.3', Date.now()) !== undefined,
    );
    fake.remove('pods', 'default', 'dns-client-7c9f8d6b54-4xq2m');
    await eventually('pod a deleted', () => deleted.includes('dns-client-7c9f8d6b54-4xq2m'));
    expect(indexes.pods.podAt('10.244.0.2', Date.now() + 1)).toBeUndefined();
  });

  it('resolves through the informers’ indexes', async () => {
    const { indexes } = await start();
    const resolver = new KubernetesResolver(indexes);
    const attribution = resolver.attribute(dnsQuery('10.244.0.2'), Date.now());
    expect(attribution.pod?.name).toBe('dns-client-7c9f8d6b54-4xq2m');
    expect(attribution.service).toEqual({ namespace: 'kube-system', name: 'kube-dns' });
  });

  it('relists after a watch answered with an ERROR 410 event, without counting a restart', async () => {
    const { indexes, fake, registry, deleted } = await start();
    const listsBefore = fake.requests().filter((r) => r.resource === 'pods' && !r.watch).length;
    // Changes while the history is compacted away: only a relist can see them.
    fake.remove('pods', 'default', 'dns-client-7c9f8d6b54-4xq2m');
    fake.apply('pods', podFrom('pod-dns-client-b'));
    fake.compact();
    fake.goneOnNextWatch({ resource: 'pods', as: 'event' });
    fake.endWatches();
    await eventually(
      'relisted pods',
      () => fake.requests().filter((r) => r.resource === 'pods' && !r.watch).length > listsBefore,
    );
    await eventually(
      'pod b seen after relist',
      () => indexes.pods.podAt('10.244.0.3', Date.now()) !== undefined,
    );
    expect(deleted).toContain('dns-client-7c9f8d6b54-4xq2m');
    expect(await metric(registry, 'conntrack_observer_k8s_informer_restarts_total', 'pods')).toBe(
      0,
    );
  });

  it('relists after a watch answered with HTTP 410', async () => {
    const { indexes, fake } = await start();
    const listsBefore = fake.requests().filter((r) => r.resource === 'services' && !r.watch).length;
    fake.compact();
    fake.goneOnNextWatch({ resource: 'services', as: 'http' });
    fake.endWatches();
    await eventually(
      'relisted services',
      () =>
        fake.requests().filter((r) => r.resource === 'services' && !r.watch).length > listsBefore,
    );
    expect(indexes.services.serviceAt('10.96.0.10')?.name).toBe('kube-dns');
  });

  it('restarts after watch errors other than 410, counts each restart, and catches up from its resourceVersion', async () => {
    const { indexes, fake, registry } = await start();
    const fault = fake.failRequests({
      status: 500,
      match: (r) => r.resource === 'pods' && r.watch,
      times: 3,
    });
    fake.endWatches();
    await eventually('three failed watches', () => fault.failed === 3);
    fake.apply('pods', podFrom('pod-dns-client-b'));
    await eventually(
      'pod b seen after restarts',
      () => indexes.pods.podAt('10.244.0.3', Date.now()) !== undefined,
    );
    expect(await metric(registry, 'conntrack_observer_k8s_informer_restarts_total', 'pods')).toBe(
      3,
    );
    // The watch resumed from the last resourceVersion it had: no relist was needed.
    const podLists = fake.requests().filter((r) => r.resource === 'pods' && !r.watch).length;
    expect(podLists).toBe(1);
  });

  it('restarts after a failed list and then syncs', async () => {
    const fake = await startFakeApiServer({ nodes: [stored('node-lab-node')] });
    const fault = fake.failRequests({
      status: 503,
      match: (r) => r.resource === 'nodes' && !r.watch,
      times: 2,
    });
    const registry = new Registry();
    const informers = new ClusterInformers({
      kubeConfig: fake.kubeConfig(),
      nodeName: NODE,
      indexes: {
        pods: new PodIpIndex({ retentionMs: 1000 }),
        services: new ServiceIndex(),
        endpointSlices: new EndpointSliceIndex(),
        node: new NodeAddressIndex(NODE),
      },
      registry,
      logger: pino({ level: 'silent' }),
      clock: systemClock,
      delay: unrefTimers.delay,
      initialBackoffMs: 20,
    });
    try {
      informers.start();
      await eventually('list failures seen', () => fault.failed === 2);
      expect(informers.pending()).toEqual(['nodes']);
      await informers.whenSynced();
      expect(informers.isSynced()).toBe(true);
      expect(
        await metric(registry, 'conntrack_observer_k8s_informer_restarts_total', 'nodes'),
      ).toBe(2);
    } finally {
      await informers.stop();
      await fake.close();
    }
  });

  it('survives the API server going down and coming back', async () => {
    const { indexes, fake, registry } = await start();
    await eventually('watches open', () => fake.watcherCount() === 4);
    await fake.down();
    await eventually(
      'a restart counted',
      async () =>
        (await metric(registry, 'conntrack_observer_k8s_informer_restarts_total', 'pods')) > 0,
    );
    fake.apply('pods', podFrom('pod-dns-client-b'));
    await fake.up();
    await eventually(
      'pod b seen after the outage',
      () => indexes.pods.podAt('10.244.0.3', Date.now()) !== undefined,
    );
    expect(
      await metric(registry, 'conntrack_observer_k8s_informer_restarts_total', 'pods'),
    ).toBeGreaterThanOrEqual(1);
  });

  it('resumes from a bookmark’s resourceVersion', async () => {
    const { fake } = await start();
    fake.apply('services', {
      ...stored('service-kube-dns'),
      metadata: { name: 'other', namespace: 'default' },
    });
    await eventually('services watch open', () => fake.watcherCount('services') === 1);
    fake.bookmark();
    const bookmarkRv = String(fake.resourceVersion());
    // Let the bookmark line arrive before the stream ends.
    await new Promise((resolve) => setTimeout(resolve, 50));
    fake.endWatches();
    await eventually('re-watched from the bookmark', () =>
      fake
        .requests()
        .some(
          (r) =>
            r.resource === 'services' && r.watch && r.query.get('resourceVersion') === bookmarkRv,
        ),
    );
  });
});
