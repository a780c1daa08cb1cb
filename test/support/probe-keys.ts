/** An IPv4 address as the probes key it: the u32 of its network-order bytes read little-endian. */
export const probeKeyOfIpv4 = (dotted: string): number =>
  dotted
    .split('.')
    .map(Number)
    .reduceRight((value, octet) => value * 256 + octet, 0);

/**
 * An IPv6 address as the probes key it: two u64 halves, bytes 0–7 then 8–15, each read
 * little-endian, printed SIGNED as bpftrace 0.17 prints a 64-bit key (a half at or above 2^63
 * is negative).
 */
export const probeKeyOfIpv6 = (text: string): [string, string] => {
  const bytes = ipv6Bytes(text);
  const half = (offset: number): string => {
    let value = 0n;
    for (let i = 7; i >= 0; i -= 1) value = (value << 8n) | BigInt(bytes[offset + i] ?? 0);
    return String(BigInt.asIntN(64, value));
  };
  return [half(0), half(8)];
};

/** The 16 bytes of an IPv6 address in text form (no embedded IPv4). */
function ipv6Bytes(text: string): number[] {
  const [head = '', tail] = text.split('::');
  const groups = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16));
  const first = groups(head);
  const last = tail === undefined ? [] : groups(tail);
  const all = [...first, ...Array<number>(8 - first.length - last.length).fill(0), ...last];
  return all.flatMap((group) => [group >> 8, group & 0xff]);
}
