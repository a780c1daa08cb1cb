/**
 * The Kubernetes view of a network-namespace lab, for the fake API server: the lab's two pods
 * as Pods on node `lab-node`, the ClusterIP as the kube-dns Service, its dnsmasq backends as
 * the Service's EndpointSlice, and the node with the lab's SNAT address as InternalIP. In a
 * dual-stack lab each Pod has both addresses in `status.podIPs` (IPv4 first, as `podIP`) and the
 * node both of its upstream addresses.
 */
import type { Lab } from '../lab/index.js';
import { labAddresses, labAddresses6 } from '../lab/index.js';
import type { FakeApiServerOptions, K8sObject } from './fake-apiserver.js';
import { podFrom, stored } from './k8s-fixtures.js';

export const LAB_NODE_NAME = 'lab-node';

export interface LabPodObject {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly ip: string;
  /** Its IPv6 address, in a dual-stack lab. */
  readonly ip6?: string;
}

export interface LabCluster {
  readonly objects: FakeApiServerOptions;
  /** One per lab pod, in the lab's order. */
  readonly pods: readonly LabPodObject[];
}

export function labCluster(lab: Lab): LabCluster {
  const [podA, podB] = lab.pods;
  if (!podA || !podB) throw new Error('the lab needs two pods');
  const pods = [
    podFrom('pod-dns-client-a', { ip: podA.ip, nodeName: LAB_NODE_NAME }),
    podFrom('pod-dns-client-b', { ip: podB.ip, nodeName: LAB_NODE_NAME }),
  ];
  lab.pods.forEach((labPod, index) => {
    if (labPod.ip6) (pods[index]!.status.podIPs as K8sObject[]).push({ ip: labPod.ip6 });
  });
  const dualStack = lab.pods.some((labPod) => labPod.ip6 !== undefined);
  const service = stored('service-kube-dns');
  service.spec.clusterIP = labAddresses.clusterDns;
  // Dual-stack: the Service's IPv6 ClusterIP too, as kube-proxy DNATs it in the lab.
  service.spec.clusterIPs = dualStack
    ? [labAddresses.clusterDns, labAddresses6.clusterDns]
    : [labAddresses.clusterDns];
  const slice = stored('endpointslice-kube-dns');
  // The slice's two endpoints become the lab's two dnsmasq backends.
  (slice.endpoints as K8sObject[]).forEach((endpoint, index) => {
    endpoint.addresses = [labAddresses.dnsBackends[index]];
  });
  const node = stored('node-lab-node');
  node.status.addresses = [
    { address: labAddresses.nodeUpstream, type: 'InternalIP' },
    ...(dualStack ? [{ address: labAddresses6.nodeUpstream, type: 'InternalIP' }] : []),
    { address: LAB_NODE_NAME, type: 'Hostname' },
  ];
  return {
    objects: { pods, services: [service], endpointSlices: [slice], nodes: [node] },
    pods: pods.map((pod, index) => ({
      namespace: pod.metadata.namespace as string,
      name: pod.metadata.name as string,
      uid: pod.metadata.uid as string,
      ip: lab.pods[index]!.ip,
      ...(lab.pods[index]!.ip6 ? { ip6: lab.pods[index]!.ip6 } : {}),
    })),
  };
}
