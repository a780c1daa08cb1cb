/** An IPv4 address as the probes key it: the u32 of its network-order bytes read little-endian. */
export const probeKeyOfIpv4 = (dotted: string): number =>
  dotted
    .split('.')
    .map(Number)
    .reduceRight((value, octet) => value * 256 + octet, 0);
