/**
 * IPv6 addresses in one text form everywhere (metrics labels, logs, Events): RFC 5952's
 * canonical text, so that two spellings of one address never become two label values and
 * the race classification's string comparison of tuples holds for IPv6 as for IPv4.
 */

const GROUPS = 8;
const MAX_TEXT = 45; // the longest IPv6 text, ffff:…:255.255.255.255

/** The 16 bytes of an IPv6 text address (any valid RFC 4291 spelling), or undefined. */
export function ipv6Bytes(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > MAX_TEXT) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = groupsOf(halves[0] ?? '', halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '', true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = GROUPS - head.length - tail.length;
  // "::" stands for at least one zero group; without it there must be exactly eight.
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((group, index) => {
    bytes[index * 2] = group >> 8;
    bytes[index * 2 + 1] = group & 0xff;
  });
  return bytes;
}

/** Groups of one side of "::"; a dotted quad is allowed as the last part of the address. */
function groupsOf(text: string, mayEndInIpv4: boolean): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  for (const [index, part] of parts.entries()) {
    if (mayEndInIpv4 && index === parts.length - 1 && part.includes('.')) {
      const quad = dottedQuad(part);
      if (quad === undefined) return undefined;
      groups.push((quad[0] << 8) | quad[1], (quad[2] << 8) | quad[3]);
    } else {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(part)) return undefined;
      groups.push(Number.parseInt(part, 16));
    }
  }
  return groups;
}

function dottedQuad(text: string): [number, number, number, number] | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!match) return undefined;
  const parts = match.slice(1).map(Number);
  if (parts.some((part, i) => part > 255 || (match[i + 1]?.length ?? 0) > String(part).length)) {
    return undefined;
  }
  return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0, parts[3] ?? 0];
}

/**
 * RFC 5952 text of 16 bytes: lower case, no leading zeros, the longest run of two or more zero
 * groups (the first of equal runs) as "::", and IPv4-mapped addresses (::ffff:0:0/96) ending in
 * a dotted quad (section 5), as inet_ntop prints them.
 */
export function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < GROUPS; i += 1)
    groups.push(((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0));
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes[12] ?? 0}.${bytes[13] ?? 0}.${bytes[14] ?? 0}.${bytes[15] ?? 0}`;
  }
  let bestStart = -1;
  let bestLength = 1; // a single zero group is never shortened (section 4.2.2)
  for (let i = 0; i < GROUPS;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < GROUPS && groups[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]): string => list.map((group) => group.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** The canonical text of an IPv6 address, or undefined if the text is not one. */
export function canonicalIpv6(text: string): string | undefined {
  const bytes = ipv6Bytes(text);
  return bytes === undefined ? undefined : formatIpv6(bytes);
}

/**
 * An IPv6 address a probe keyed as two u64 halves, each read little-endian from its eight
 * network-order bytes (bytes 0–7, then 8–15), as decimal text; undefined unless both are u64s.
 */
export function ipv6FromHalves(first: string, second: string): string | undefined {
  const bytes = new Uint8Array(16);
  for (const [offset, text] of [
    [0, first],
    [8, second],
  ] as const) {
    if (!/^\d{1,20}$/.test(text)) return undefined;
    let value = BigInt(text);
    if (value >= 1n << 64n) return undefined;
    for (let i = 0; i < 8; i += 1) {
      bytes[offset + i] = Number(value & 0xffn);
      value >>= 8n;
    }
  }
  return formatIpv6(bytes);
}
