import type { FlowTuple, RaceKind } from './types.js';

/**
 * Which NAT the entry went through, read from its two tuples: the kernel rewrites the
 * reply tuple when it NATs, so a reply that is not the mirror of the original shows it.
 */
export function classifyRace(original: FlowTuple, reply: FlowTuple): RaceKind {
  const sourceRewritten = reply.dstIp !== original.srcIp || reply.dstPort !== original.srcPort;
  const destinationRewritten = reply.srcIp !== original.dstIp || reply.srcPort !== original.dstPort;
  if (sourceRewritten && destinationRewritten) return 'snat_dnat';
  if (sourceRewritten) return 'snat';
  if (destinationRewritten) return 'dnat';
  return 'none';
}
