/**
 * The drop reason of a datagram freed on a kernel without drop reasons (before 5.17), named
 * from the function that freed it (`ksym(args->location)` of skb:kfree_skb).
 *
 * Each entry is a function whose plain `kfree_skb()` calls the 5.17 series "net: skb:
 * introduce kfree_skb_reason()" and its follow-ups turned into `kfree_skb_reason()` with this
 * reason, so a 5.10 kernel frees the same datagrams in the same function. Where that
 * function frees for several reasons, the name is the one a UDP DNS datagram meets in
 * practice, and docs/probe-matrix.md ("Drops without drop reasons") says what else it may be.
 */
const REASON_BY_LOCATION: ReadonlyMap<string, string> = new Map([
  // Any netfilter NF_DROP verdict, a firewall rule's or conntrack's confirm failure: on these
  // kernels nf_tables drops through nf_hook_slow too ("use kfree_drop_reason() for NF_DROP").
  ['nf_hook_slow', 'NETFILTER_DROP'],
  // nf_tables frees a packet itself on a drop verdict from 6.x (NF_DROP_REASON); never on
  // the kernels this map is for, named so that the no-reason script reads the same anywhere.
  ['nft_do_chain', 'NETFILTER_DROP'],
  // No socket on the port (also a datagram shorter than its header or with a bad checksum:
  // PKT_TOO_SMALL and UDP_CSUM in later kernels, counted in Udp InErrors/InCsumErrors).
  ['__udp4_lib_rcv', 'NO_SOCKET'],
  // Its IPv6 counterpart, counted in Udp6NoPorts (and Udp6InErrors/InCsumErrors likewise).
  ['__udp6_lib_rcv', 'NO_SOCKET'],
  // The receiving socket's buffer is full (PROTO_MEM when UDP's global memory is exhausted).
  ['__udp_queue_rcv_skb', 'SOCKET_RCVBUFF'],
  ['__udpv6_queue_rcv_skb', 'SOCKET_RCVBUFF'],
]);

/**
 * What a kernel with drop reasons reports for a free its code gives no reason: a plain
 * `kfree_skb()` there is `kfree_skb_reason(skb, SKB_DROP_REASON_NOT_SPECIFIED)`.
 */
export const UNMAPPED_LOCATION_REASON = 'NOT_SPECIFIED';

export function dropReasonFromLocation(location: string): string {
  return REASON_BY_LOCATION.get(location) ?? UNMAPPED_LOCATION_REASON;
}
