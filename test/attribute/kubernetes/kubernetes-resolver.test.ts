import { describe, expect, it } from '@jest/globals';
import type { V1EndpointSlice, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import type {
  DnsDropEvent,
  FlowTuple,
  InsertFailureEvent,
  RaceKind,
} from '../../../src/events/types.js';
import { EndpointSliceIndex } from '../../../src/attribute/kubernetes/endpoint-slice-index.js';
import { KubernetesResolver } from '../../../src/attribute/kubernetes/kubernetes-resolver.js';
import { NodeAddressIndex } from '../../../src/attribute/kubernetes/node-address-index.js';
import { PodIpIndex } from '../../../src/attribute/kubernetes/pod-ip-index.js';
import { ServiceIndex } from '../../../src/attribute/kubernetes/service-index.js';
import { fixture } from '../../support/k8s-fixtures.js';
import {
  dnsDrop as baseDnsDrop,
  dnsQuery as baseDnsQuery,
  insertFailure as baseInsertFailure,
} from '../../support/events.js';

const NOW = Date.parse('2025-03-14T10:05:00Z');

function resolver(): KubernetesResolver {
  const pods = new PodIpIndex({ retentionMs: 600_000 });
  for (const name of [
    'pod-dns-client-a',
    'pod-dns-client-b',
    'pod-coredns',
    'pod-kube-proxy-hostnetwork',
  ]) {
    pods.upsert(fixture(name) as V1Pod, NOW - 60_000);
  }
  const services = new ServiceIndex();
  services.upsert(fixture('service-kube-dns') as V1Service);
  const endpointSlices = new EndpointSliceIndex();
  endpointSlices.upsert(fixture('endpointslice-kube-dns') as V1EndpointSlice);
  const node = new NodeAddressIndex('lab-node');
  node.upsert(fixture('node-lab-node') as V1Node);
  return new KubernetesResolver({ pods, services, endpointSlices, node });
}

function insertFailure(original: FlowTuple, reply: FlowTuple, race: RaceKind): InsertFailureEvent {
  return baseInsertFailure({ original, reply, race });
}

function dnsDrop(tuple: FlowTuple, direction: 'query' | 'response'): DnsDropEvent {
  return baseDnsDrop({ tuple, direction, location: 'nf_hook_slow' });
}

const CLIENT_A = {
  namespace: 'default',
  name: 'dns-client-7c9f8d6b54-4xq2m',
  uid: '3f1c2a9e-8b7d-4c6e-a5f4-1e2d3c4b5a61',
  hostNetwork: false,
};
const KUBE_DNS = { namespace: 'kube-system', name: 'kube-dns' };

describe('KubernetesResolver', () => {
  it('blames an SNAT race on the source pod and sees the reply come back to this node', () => {
    const event = insertFailure(
      { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '192.0.2.53', dstPort: 53 },
      { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1', dstPort: 40000 },
      'snat',
    );
    expect(resolver().attribute(event, NOW)).toEqual({
      sourceIp: '10.244.0.2',
      netnsInode: 4026532512,
      pod: CLIENT_A,
      snatToNode: true,
    });
  });

  it('names the Service of a DNAT race and the backend pod it was translated to', () => {
    const event = insertFailure(
      { srcIp: '10.244.0.2', srcPort: 41522, dstIp: '10.96.0.10', dstPort: 53 },
      { srcIp: '10.244.2.3', srcPort: 53, dstIp: '10.244.0.2', dstPort: 41522 },
      'dnat',
    );
    expect(resolver().attribute(event, NOW)).toEqual({
      sourceIp: '10.244.0.2',
      netnsInode: 4026532512,
      pod: CLIENT_A,
      service: KUBE_DNS,
      backendPod: {
        namespace: 'kube-system',
        name: 'coredns-5d78c9869d-q9w4t',
        uid: 'd4f6a8c0-2e4a-4c6e-b8d0-1f3b5d7f9a57',
        hostNetwork: false,
      },
    });
  });

  it('uses the pod index for a backend on this node', () => {
    const event = insertFailure(
      { srcIp: '10.244.0.3', srcPort: 41522, dstIp: '10.96.0.10', dstPort: 53 },
      { srcIp: '10.244.0.10', srcPort: 53, dstIp: '10.244.0.3', dstPort: 41522 },
      'dnat',
    );
    const attribution = resolver().attribute(event, NOW);
    expect(attribution.pod?.name).toBe('dns-client-7c9f8d6b54-k8v7n');
    expect(attribution.backendPod).toEqual({
      namespace: 'kube-system',
      name: 'coredns-5d78c9869d-x7k2p',
      uid: '5a7c9e1b-3d5f-4a6b-8c0d-2e4f6a8b0c24',
      hostNetwork: false,
    });
  });

  it('names the Service of a DNS query dropped before DNAT (ClusterIP) or after it (backend address)', () => {
    const r = resolver();
    const before = r.attribute(
      dnsDrop({ srcIp: '10.244.0.2', srcPort: 41522, dstIp: '10.96.0.10', dstPort: 53 }, 'query'),
      NOW,
    );
    expect(before).toMatchObject({ pod: CLIENT_A, service: KUBE_DNS });
    const after = r.attribute(
      dnsDrop({ srcIp: '10.244.0.2', srcPort: 41522, dstIp: '10.244.2.3', dstPort: 53 }, 'query'),
      NOW,
    );
    expect(after).toMatchObject({
      pod: CLIENT_A,
      service: KUBE_DNS,
      backendPod: { name: 'coredns-5d78c9869d-q9w4t' },
    });
  });

  it('blames a dropped DNS response on the pod it was going back to', () => {
    const event = dnsDrop(
      { srcIp: '10.96.0.10', srcPort: 53, dstIp: '10.244.0.2', dstPort: 41522 },
      'response',
    );
    expect(resolver().attribute(event, NOW)).toMatchObject({
      sourceIp: '10.244.0.2',
      pod: CLIENT_A,
      service: KUBE_DNS,
    });
  });

  it('does not blame any hostNetwork pod for an event from the node address', () => {
    const r = resolver();
    const event = insertFailure(
      { srcIp: '192.0.2.1', srcPort: 33000, dstIp: '10.96.0.10', dstPort: 53 },
      { srcIp: '10.244.2.3', srcPort: 53, dstIp: '192.0.2.1', dstPort: 33000 },
      'dnat',
    );
    const attribution = r.attribute(event, NOW);
    expect(attribution.pod).toBeUndefined();
    expect(attribution.service).toEqual(KUBE_DNS);
    expect(r.isNodeAddress(attribution.sourceIp)).toBe(true);
  });

  it('returns only the source for what it cannot attribute', () => {
    const event = insertFailure(
      { srcIp: '10.244.9.9', srcPort: 1000, dstIp: '198.51.100.7', dstPort: 443 },
      { srcIp: '198.51.100.7', srcPort: 443, dstIp: '10.244.9.9', dstPort: 1000 },
      'none',
    );
    expect(resolver().attribute(event, NOW)).toEqual({
      sourceIp: '10.244.9.9',
      netnsInode: 4026532512,
    });
  });

  it('names the pods behind the backends an unanswered query was sent to, and the address alone where no slice has it', () => {
    const event = baseDnsQuery({
      outcome: 'unanswered',
      answer: undefined,
      cause: 'none',
      tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
      backends: ['10.244.0.10', '10.244.2.3', '10.244.7.7'],
    });
    const attribution = resolver().attribute(event, NOW);
    expect(attribution).toMatchObject({ pod: CLIENT_A, service: KUBE_DNS });
    expect(attribution.backends).toEqual([
      {
        ip: '10.244.0.10',
        // On this node: the pod index knows it, with its uid.
        pod: expect.objectContaining({
          namespace: 'kube-system',
          name: 'coredns-5d78c9869d-x7k2p',
        }) as unknown,
      },
      {
        ip: '10.244.2.3',
        pod: {
          namespace: 'kube-system',
          name: 'coredns-5d78c9869d-q9w4t',
          uid: expect.any(String) as unknown,
          hostNetwork: false,
        },
      },
      { ip: '10.244.7.7' },
    ]);
    expect(attribution.backendPod).toBeUndefined();
    // Without a read of the table, nothing is said of backends.
    expect(resolver().attribute({ ...event, backends: undefined }, NOW)).not.toHaveProperty(
      'backends',
    );
  });
});
