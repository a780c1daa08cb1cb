import { afterEach, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ClusterInformers } from '../../../src/attribute/kubernetes/cluster-informers.js';
import { EndpointSliceIndex } from '../../../src/attribute/kubernetes/endpoint-slice-index.js';
import { KubernetesResolver } from '../../../src/attribute/kubernetes/kubernetes-resolver.js';
import { NodeAddressIndex } from '../../../src/attribute/kubernetes/node-address-index.js';
import { PodIpIndex } from '../../../src/attribute/kubernetes/pod-ip-index.js';
import { ServiceIndex } from '../../../src/attribute/kubernetes/service-index.js';
import { systemClock } from '../../../src/shared/clock.js';
import { unrefTimers } from '../../../src/shared/timers.js';
import { dnsDrop, insertFailure } from '../../support/events.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { stored } from '../../support/k8s-fixtures.js';

const NODE = 'lab-node';
const DUAL_STACK_POD = {
  namespace: 'default',
  name: 'dns-client-dualstack-6f8b9c7d5-k2v8r',
  uid: '7e2b4d6f-1a3c-4e5a-9b7d-2c4e6a8b0d13',
  hostNetwork: false,
};
const KUBE_DNS = { namespace: 'kube-system', name: 'kube-dns' };

const running: Array<{ fake: FakeApiServer; informers: ClusterInformers }> = [];

/** Informers against a fake API server holding a dual-stack node, pod, Service and slices. */
async function start(): Promise<{ resolver: KubernetesResolver; indexes: IndexesOf }> {
  const fake = await startFakeApiServer({
    pods: [stored('pod-dns-client-dualstack'), stored('pod-coredns')],
    services: [stored('service-kube-dns-dualstack')],
    endpointSlices: [stored('endpointslice-kube-dns'), stored('endpointslice-kube-dns-ipv6')],
    nodes: [stored('node-lab-node-dualstack')],
  });
  const indexes = {
    pods: new PodIpIndex({ retentionMs: 600_000 }),
    services: new ServiceIndex(),
    endpointSlices: new EndpointSliceIndex(),
    node: new NodeAddressIndex(NODE),
  };
  const informers = new ClusterInformers({
    kubeConfig: fake.kubeConfig(),
    nodeName: NODE,
    indexes,
    registry: new Registry(),
    logger: pino({ level: 'silent' }),
    clock: systemClock,
    delay: unrefTimers.delay,
    initialBackoffMs: 20,
    maxBackoffMs: 200,
  });
  running.push({ fake, informers });
  informers.start();
  await informers.whenSynced();
  return { resolver: new KubernetesResolver(indexes), indexes };
}
type IndexesOf = ConstructorParameters<typeof KubernetesResolver>[0];

afterEach(async () => {
  for (const { fake, informers } of running.splice(0)) {
    await informers.stop();
    await fake.close();
  }
});

describe('Attribution on a dual-stack cluster', () => {
  it('finds a pod by every address of status.podIPs, however the event writes it', async () => {
    const { indexes } = await start();
    const now = Date.now();
    expect(indexes.pods.podAt('10.244.0.4', now)).toEqual(DUAL_STACK_POD);
    expect(indexes.pods.podAt('fd00:10:244::4', now)).toEqual(DUAL_STACK_POD);
    expect(indexes.pods.podAt('FD00:10:244:0:0:0:0:4', now)).toEqual(DUAL_STACK_POD);
    expect(indexes.pods.podAt('fd00:10:244::5', now)).toBeUndefined();
  });

  it('blames an IPv6 SNAT race on the pod and sees the reply come back to the node’s IPv6 address', async () => {
    const { resolver } = await start();
    const event = insertFailure({
      original: {
        srcIp: 'fd00:10:244:0::4',
        srcPort: 40000,
        dstIp: '2001:db8:53::35',
        dstPort: 53,
      },
      reply: { srcIp: '2001:db8:53::35', srcPort: 53, dstIp: '2001:db8:0::1', dstPort: 40000 },
    });
    expect(resolver.attribute(event, Date.now())).toEqual({
      sourceIp: 'fd00:10:244::4',
      netnsInode: 4026532512,
      pod: DUAL_STACK_POD,
      snatToNode: true,
    });
  });

  it('names the Service of an IPv6 ClusterIP and the backend of its IPv6 EndpointSlice', async () => {
    const { resolver } = await start();
    const event = insertFailure({
      original: {
        srcIp: 'fd00:10:244::4',
        srcPort: 41522,
        dstIp: 'fd00:10:96:0:0:0:0:a',
        dstPort: 53,
      },
      reply: { srcIp: 'FD00:10:244:2:0::3', srcPort: 53, dstIp: 'fd00:10:244::4', dstPort: 41522 },
      race: 'dnat',
    });
    expect(resolver.attribute(event, Date.now())).toEqual({
      sourceIp: 'fd00:10:244::4',
      netnsInode: 4026532512,
      pod: DUAL_STACK_POD,
      service: KUBE_DNS,
      backendPod: {
        namespace: 'kube-system',
        name: 'coredns-5d78c9869d-q9w4t',
        uid: 'd4f6a8c0-2e4a-4c6e-b8d0-1f3b5d7f9a57',
        hostNetwork: false,
      },
    });
  });

  it('keeps the IPv4 half of the dual-stack Service and slices working', async () => {
    const { resolver, indexes } = await start();
    expect(indexes.services.ipsOf('kube-system', 'kube-dns')).toEqual([
      '10.96.0.10',
      'fd00:10:96::a',
    ]);
    const event = dnsDrop({
      tuple: { srcIp: '10.244.0.4', srcPort: 41234, dstIp: '10.244.0.10', dstPort: 53 },
    });
    expect(resolver.attribute(event, Date.now())).toMatchObject({
      pod: DUAL_STACK_POD,
      service: KUBE_DNS,
      backendPod: { name: 'coredns-5d78c9869d-x7k2p' },
    });
  });

  it('attributes an IPv6 DNS query dropped after DNAT to the pod and the Service', async () => {
    const { resolver } = await start();
    const event = dnsDrop({
      tuple: { srcIp: 'fd00:10:244::4', srcPort: 41234, dstIp: 'fd00:10:244::a', dstPort: 53 },
    });
    expect(resolver.attribute(event, Date.now())).toMatchObject({
      sourceIp: 'fd00:10:244::4',
      pod: DUAL_STACK_POD,
      service: KUBE_DNS,
      backendPod: { name: 'coredns-5d78c9869d-x7k2p' },
    });
  });
});
