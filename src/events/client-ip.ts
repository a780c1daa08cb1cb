import type { ProbeEvent } from './types.js';

/**
 * The address on the client side of an event: the original source of a conntrack entry, or
 * the sender of a DNS query (the receiver of a response), before NAT where the kernel knows it.
 * This is who suffered the drop.
 */
export function clientIpOf(event: ProbeEvent): string {
  if (event.kind === 'dns_drop') {
    // The conntrack entry knows the client as it was before NAT rewrote the packet.
    if (event.conntrack) return event.conntrack.original.srcIp;
    return event.direction === 'query' ? event.tuple.srcIp : event.tuple.dstIp;
  }
  if (event.kind === 'dns_query' || event.kind === 'dns_nodata') return event.tuple.srcIp;
  return event.original.srcIp;
}
