import type { V1Node } from '@kubernetes/client-node';
import { canonicalIp } from '../../shared/canonical-ip.js';

/** Address types that are IPs (Hostname and InternalDNS are names). */
const IP_ADDRESS_TYPES = new Set(['InternalIP', 'ExternalIP']);

/** This node's identity and addresses of both families: where SNAT replies come back to. */
export class NodeAddressIndex {
  private addresses = new Set<string>();
  private uid: string | undefined;

  constructor(readonly nodeName: string) {}

  upsert(node: V1Node): void {
    if (node.metadata?.name !== this.nodeName) return;
    this.uid = node.metadata.uid;
    const addresses = new Set<string>();
    for (const address of node.status?.addresses ?? []) {
      if (IP_ADDRESS_TYPES.has(address.type) && address.address)
        addresses.add(canonicalIp(address.address));
    }
    this.addresses = addresses;
  }

  remove(node: V1Node): void {
    if (node.metadata?.name !== this.nodeName) return;
    this.addresses = new Set();
    this.uid = undefined;
  }

  has(ip: string): boolean {
    return this.addresses.has(canonicalIp(ip));
  }

  /** The Node's uid once seen; Events about the node fall back to its name, as the kubelet does. */
  nodeUid(): string {
    return this.uid ?? this.nodeName;
  }

  list(): string[] {
    return [...this.addresses];
  }
}
