import { canonicalIp } from '../../shared/canonical-ip.js';
import type {
  Attribution,
  AttributionResolver,
  BackendRef,
  FlowTuple,
  PodRef,
  ProbeEvent,
  ServiceRef,
} from '../../events/types.js';
import type { EndpointSliceIndex } from './endpoint-slice-index.js';
import type { NodeAddressIndex } from './node-address-index.js';
import type { PodIpIndex } from './pod-ip-index.js';
import type { ServiceIndex } from './service-index.js';

export interface KubernetesIndexes {
  readonly pods: PodIpIndex;
  readonly services: ServiceIndex;
  readonly endpointSlices: EndpointSliceIndex;
  readonly node: NodeAddressIndex;
}

/**
 * Blames events on pods, Services and this node from the informers' indexes. Synchronous and
 * allocation-light: it runs for every event. What it cannot attribute comes back with only
 * `sourceIp` and `netnsInode`, which the caller counts as unattributed.
 */
export class KubernetesResolver implements AttributionResolver {
  constructor(private readonly indexes: KubernetesIndexes) {}

  attribute(event: ProbeEvent, wallTimeMs: number): Attribution {
    if (event.kind === 'dns_drop') {
      // With a conntrack entry the original tuple names the client and the ClusterIP as the
      // client addressed them, whatever NAT did to the packet since.
      return event.conntrack
        ? this.attributeDns(event.conntrack.original, 'query', event.netnsInode, wallTimeMs)
        : this.attributeDns(event.tuple, event.direction, event.netnsInode, wallTimeMs);
    }
    if (event.kind === 'dns_query' || event.kind === 'dns_nodata') {
      // Seen in the client's own namespace, before DNAT: the server is the address it asked.
      const attribution = this.attributeDns(event.tuple, 'query', event.netnsInode, wallTimeMs);
      if (event.kind !== 'dns_query' || event.backends === undefined) return attribution;
      const backends = event.backends.map((ip): BackendRef => {
        const { backendPod } = this.destination(event.tuple.dstIp, ip, wallTimeMs);
        return backendPod ? { ip, pod: backendPod } : { ip };
      });
      return { ...attribution, backends };
    }
    if (event.kind === 'snat_port_alloc') {
      const reply = {
        srcIp: event.original.dstIp,
        srcPort: event.original.dstPort,
        dstIp: event.translatedIp,
        dstPort: event.translatedPort,
      };
      return this.attributeConntrack(event.original, reply, event.netnsInode, wallTimeMs);
    }
    return this.attributeConntrack(event.original, event.reply, event.netnsInode, wallTimeMs);
  }

  /**
   * True for this node's own addresses and those hostNetwork pods report (the same addresses):
   * events from them come from the host network namespace and cannot be blamed on one pod.
   */
  isNodeAddress(ip: string): boolean {
    return this.indexes.node.has(ip) || this.indexes.pods.hostNetworkIps().has(canonicalIp(ip));
  }

  private attributeConntrack(
    original: FlowTuple,
    reply: FlowTuple,
    netnsInode: number,
    atMs: number,
  ): Attribution {
    const sourceIp = canonicalIp(original.srcIp);
    const pod = this.indexes.pods.podAt(sourceIp, atMs);
    // After DNAT the reply comes from the chosen backend, so reply.srcIp is the backend address.
    const dnat = reply.srcIp !== original.dstIp || reply.srcPort !== original.dstPort;
    const snat = reply.dstIp !== original.srcIp || reply.dstPort !== original.srcPort;
    const target = this.destination(original.dstIp, dnat ? reply.srcIp : undefined, atMs);
    const snatToNode = snat && this.isNodeAddress(reply.dstIp);
    return compact({ sourceIp, netnsInode, pod, ...target, snatToNode: snatToNode || undefined });
  }

  private attributeDns(
    tuple: FlowTuple,
    direction: 'query' | 'response',
    netnsInode: number,
    atMs: number,
  ): Attribution {
    // A query's sender is its source; a response travels back to the sender.
    const sourceIp = canonicalIp(direction === 'query' ? tuple.srcIp : tuple.dstIp);
    const serverIp = direction === 'query' ? tuple.dstIp : tuple.srcIp;
    const pod = this.indexes.pods.podAt(sourceIp, atMs);
    // The datagram may have been dropped before DNAT (server = ClusterIP) or after it
    // (server = a backend address): both name the Service.
    const target = this.indexes.services.serviceAt(serverIp)
      ? this.destination(serverIp, undefined, atMs)
      : this.destination(serverIp, serverIp, atMs);
    return compact({ sourceIp, netnsInode, pod, ...target });
  }

  private destination(
    originalDstIp: string,
    backendIp: string | undefined,
    atMs: number,
  ): { service?: ServiceRef; backendPod?: PodRef } {
    const service = this.indexes.services.serviceAt(originalDstIp);
    if (backendIp === undefined) return { service };
    const backend = this.indexes.endpointSlices.backendAt(backendIp, service);
    let backendPod: PodRef | undefined;
    if (backend?.pod) {
      // A backend on this node is in the pod index, which knows its hostNetwork flag.
      const local = this.indexes.pods.podAt(backendIp, atMs);
      backendPod =
        local && local.name === backend.pod.name && local.namespace === backend.pod.namespace
          ? local
          : { ...backend.pod, hostNetwork: false };
    }
    return { service: service ?? backend?.service, backendPod };
  }
}

/** Leaves unknown fields out rather than present-and-undefined, so logs and tests stay plain. */
function compact(attribution: Attribution): Attribution {
  const result: { -readonly [K in keyof Attribution]: Attribution[K] } = {
    sourceIp: attribution.sourceIp,
    netnsInode: attribution.netnsInode,
  };
  if (attribution.pod) result.pod = attribution.pod;
  if (attribution.service) result.service = attribution.service;
  if (attribution.backendPod) result.backendPod = attribution.backendPod;
  if (attribution.snatToNode) result.snatToNode = true;
  return result;
}
