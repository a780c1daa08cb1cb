import { isIPv6 } from 'node:net';
import { canonicalIp, formatGroups } from '../shared/canonical-ip.js';

/*
 * IPv6 addresses as the probes print and key them, in the one text form every label, log and
 * Event uses (src/shared/canonical-ip.ts, RFC 5952), so that the race classification's string
 * comparison of tuples holds for IPv6 as for IPv4.
 */

/** The canonical text of an IPv6 address a probe printed, or undefined if it is not one. */
export function canonicalIpv6(text: string): string | undefined {
  // A probe prints no zone; a zone would be a forged or corrupt line.
  if (text.includes('%') || !isIPv6(text)) return undefined;
  return canonicalIp(text);
}

/**
 * An IPv6 address a probe keyed as two u64 halves, each read little-endian from its eight
 * network-order bytes (bytes 0–7, then 8–15), as decimal text; undefined unless both are
 * 64-bit integers. bpftrace 0.17 prints a 64-bit map key as SIGNED (measured: 2001:db8::99's
 * second half, 0x9900000000000000, came out as -7421932185906577408), so a half at or above
 * 2^63 arrives negative: it is read back as its two's complement.
 */
export function ipv6FromHalves(first: string, second: string): string | undefined {
  const bytes = new Uint8Array(16);
  for (const [offset, text] of [
    [0, first],
    [8, second],
  ] as const) {
    if (!/^-?\d{1,20}$/.test(text)) return undefined;
    let value = BigInt(text);
    if (value >= 1n << 64n || value < -(1n << 63n)) return undefined;
    if (value < 0n) value += 1n << 64n;
    for (let i = 0; i < 8; i += 1) {
      bytes[offset + i] = Number(value & 0xffn);
      value >>= 8n;
    }
  }
  const groups = Array.from(
    { length: 8 },
    (_, i) => ((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0),
  );
  return formatGroups(groups);
}
