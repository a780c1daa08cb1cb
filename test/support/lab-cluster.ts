/**
 * The Kubernetes view of a network-namespace lab, for the fake API server: the lab's two pods
 * as Pods on node `lab-node`, the ClusterIP as the kube-dns Service, its dnsmasq backends as
 * the Service's EndpointSlice, and the node with the lab's SNAT address as InternalIP.
 */
import type { Lab } from '../lab/index.js';
import { labAddresses } from '../lab/index.js';
import type { FakeApiServerOptions, K8sObject } from './fake-apiserver.js';
import { podFrom, stored } from './k8s-fixtures.js';

export const LAB_NODE_NAME = 'lab-node';

export interface LabPodObject {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly ip: string;
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
  const service = stored('service-kube-dns');
  service.spec.clusterIP = labAddresses.clusterDns;
  service.spec.clusterIPs = [labAddresses.clusterDns];
  const slice = stored('endpointslice-kube-dns');
  // The slice's two endpoints become the lab's two dnsmasq backends.
  (slice.endpoints as K8sObject[]).forEach((endpoint, index) => {
    endpoint.addresses = [labAddresses.dnsBackends[index]];
  });
  const node = stored('node-lab-node');
  node.status.addresses = [
    { address: labAddresses.nodeUpstream, type: 'InternalIP' },
    { address: LAB_NODE_NAME, type: 'Hostname' },
  ];
  return {
    objects: { pods, services: [service], endpointSlices: [slice], nodes: [node] },
    pods: pods.map((pod, index) => ({
      namespace: pod.metadata.namespace as string,
      name: pod.metadata.name as string,
      uid: pod.metadata.uid as string,
      ip: lab.pods[index]!.ip,
    })),
  };
}
