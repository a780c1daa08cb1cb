import { isIPv4, isIPv6 } from 'node:net';

/**
 * An IP address in the one text form every index, label and log uses, so that the same address
 * written two ways (`fd00:0:0::1`, `FD00::1`, `fd00:0000::0001`) is one key. IPv6 follows
 * RFC 5952: lower case, no leading zeros, the longest run of two or more zero groups (the first
 * of equal runs) shortened to `::`, and the IPv4-mapped form `::ffff:a.b.c.d` in dotted notation
 * (section 5). A zone (`%eth0`) is kept as written. IPv4 is returned as given (the kernel, the
 * API server and the probes all print it in one form). Anything that is not an address is
 * returned unchanged: callers use this on every key and must never fail on bad input.
 */
export function canonicalIp(text: string): string {
  if (isIPv4(text)) return text;
  if (!isIPv6(text)) return text;
  const zoneAt = text.indexOf('%');
  const zone = zoneAt >= 0 ? text.slice(zoneAt) : '';
  const groups = groupsOf(zoneAt >= 0 ? text.slice(0, zoneAt) : text);
  if (groups === undefined) return text;
  return formatGroups(groups) + zone;
}

/** The eight 16-bit groups of an address Node's isIPv6 accepted (zone removed). */
function groupsOf(address: string): number[] | undefined {
  let body = address.toLowerCase();
  const lastColon = body.lastIndexOf(':');
  const last = body.slice(lastColon + 1);
  if (last.includes('.')) {
    // An embedded IPv4 address is the last two groups, written in dotted notation.
    const [a = 0, b = 0, c = 0, d = 0] = last.split('.').map(Number);
    body = `${body.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16));
  const head = parse(halves[0] ?? '');
  const rest = halves.length === 2 ? parse(halves[1] ?? '') : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...rest];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

/** RFC 5952 text of an IPv6 address given as its eight 16-bit groups. */
export function formatGroups(groups: readonly number[]): string {
  const isMapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (isMapped) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `::ffff:${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  // The longest run of zero groups, at least two long; the first wins a tie (RFC 5952 4.2.3).
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8;) {
    if (groups[start] !== 0) {
      start += 1;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end += 1;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** The IP family of an address, or undefined for text that is none. */
export function ipFamilyOf(text: string): 4 | 6 | undefined {
  if (isIPv4(text)) return 4;
  if (isIPv6(text)) return 6;
  return undefined;
}

/** Link-local: 169.254.0.0/16 or fe80::/10 (where NodeLocal DNSCache listens by default). */
export function isLinkLocal(text: string): boolean {
  if (isIPv4(text)) return text.startsWith('169.254.');
  return isIPv6(text) && /^fe[89ab]/.test(canonicalIp(text));
}

/** Loopback: 127.0.0.0/8 or ::1. */
export function isLoopback(text: string): boolean {
  if (isIPv4(text)) return text.startsWith('127.');
  return isIPv6(text) && canonicalIp(text) === '::1';
}
