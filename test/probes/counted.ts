import type { CumulativeCounts } from '../../src/decode/count-maps.js';
import type { LineDecoder } from '../../src/decode/decoded-line.js';
import { createLineDecoder } from '../../src/decode/decode.js';
import { DnsQueryCounts } from '../../src/decode/dns-query-counts.js';
import type { DnsQueryEvent } from '../../src/events/types.js';

/**
 * Replays a probe's printed lines through a fresh tracker, as the agent reads them: every
 * occurrence the probe counted in the kernel so far. Every key must be as the probe prints it
 * and nothing may be left uncounted (the lab never fills a map).
 */
export function replayCounts<E>(
  lines: readonly string[],
  decode: LineDecoder,
  counts: CumulativeCounts<E>,
): E[] {
  const counted: E[] = [];
  for (const line of lines) {
    const decoded = decode(line);
    if (decoded.type === 'map_cleared') counts.cleared(decoded.map);
    if (decoded.type !== 'counts') continue;
    const update = counts.observe(decoded.map, decoded.entries);
    expect(update.rejectedKeys).toEqual([]);
    expect(update.uncounted).toEqual(new Map());
    counted.push(...update.events);
  }
  return counted;
}

/**
 * Every query outcome the DNS query probe reported in `lines`, read as the agent reads its
 * maps, and the queries it could not follow (untracked). Every key must be as the probe prints it.
 */
export function queryOutcomes(lines: readonly string[]): {
  events: DnsQueryEvent[];
  untracked: number;
} {
  const counts = new DnsQueryCounts({ probe: 'tracepoint/dns-queries', monotonicNs: () => 0n });
  const events: DnsQueryEvent[] = [];
  let untracked = 0;
  for (const line of lines) {
    const decoded = decodeQueryLine(line);
    if (decoded.type === 'map_cleared') counts.cleared(decoded.map);
    if (decoded.type !== 'counts') continue;
    const update = counts.observe(decoded.map, decoded.entries);
    expect(update.rejectedKeys).toEqual([]);
    events.push(...update.events);
    untracked += update.untracked;
  }
  return { events, untracked };
}

const decodeQueryLine = createLineDecoder('tracepoint/dns-queries', (code) => `UNKNOWN_${code}`);
