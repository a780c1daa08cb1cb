import type { CountEntry } from './decoded-line.js';

/** What one printed map of a counting probe adds. */
export interface CountsUpdate<E> {
  /** One event per key that grew, its `count` being the growth. */
  readonly events: readonly E[];
  /**
   * Occurrences the kernel's totals counted that no detailed key holds, by the name of the
   * totals key (a reason, a race kind): the detailed map was full, so the kernel could not add
   * their key. Counted, but blamed on nobody.
   */
  readonly uncounted: ReadonlyMap<string, number>;
  /** Keys that are not what the probe prints; their counts are left out. */
  readonly rejectedKeys: readonly string[];
}

/** A detailed key read: its event, and the totals key it also counted under in the kernel. */
export interface ParsedCountKey<E> {
  readonly event: E;
  readonly totalsKey: string;
}

export interface CountMapsSpec<E> {
  /** The generation maps of detailed counts, e.g. `@dns_drops_0`, `@dns_drops_1`. */
  readonly maps: readonly string[];
  /** The map of exact totals per class, never cleared, printed before the detailed ones. */
  readonly totalsMap: string;
  /** The event of a detailed key that grew by `count`, or undefined for a key not as printed. */
  parseKey(key: string, count: number, monotonicNs: bigint): ParsedCountKey<E> | undefined;
  /** The name under which an uncounted shortfall of this totals key is reported, or undefined. */
  nameOfTotalsKey(totalsKey: string): string | undefined;
}

const NOTHING: CountsUpdate<never> = { events: [], uncounted: new Map(), rejectedKeys: [] };

/**
 * Turns a probe's cumulative in-kernel counts into events. The maps are never cleared while
 * written (so no increment can fall between a print and a clear): the growth of each key since
 * its last print is what is new. A generation map the probe clears after its writers moved on
 * is forgotten on `map_cleared`; a new bpftrace run starts over (`reset`).
 */
export class CumulativeCounts<E> {
  /** Last printed value per map and key. */
  private readonly lastValues = new Map<string, Map<string, number>>();
  /** Per totals key: growth of the detailed maps handed on, and what was reported uncounted. */
  private readonly counted = new Map<string, number>();
  private readonly uncountedSoFar = new Map<string, number>();
  /** The totals as last printed; compared once the detailed maps printed after them are in. */
  private lastTotals: readonly CountEntry[] = [];

  constructor(
    private readonly spec: CountMapsSpec<E>,
    /** CLOCK_MONOTONIC nanoseconds: the time given to the events of a reading. */
    private readonly monotonicNs: () => bigint,
  ) {}

  /** True for the maps this tracker reads. */
  owns(map: string): boolean {
    return map === this.spec.totalsMap || this.spec.maps.includes(map);
  }

  /** A new bpftrace run: its maps start empty. */
  reset(): void {
    this.lastValues.clear();
    this.counted.clear();
    this.uncountedSoFar.clear();
    this.lastTotals = [];
  }

  cleared(map: string): void {
    this.lastValues.delete(map);
  }

  observe(map: string, entries: readonly CountEntry[]): CountsUpdate<E> {
    if (map === this.spec.totalsMap) return this.observeTotals(entries);
    if (!this.spec.maps.includes(map)) return NOTHING;
    let last = this.lastValues.get(map);
    if (last === undefined) {
      last = new Map();
      this.lastValues.set(map, last);
    }
    const events: E[] = [];
    const rejectedKeys: string[] = [];
    const monotonicNs = this.monotonicNs();
    for (const { key, value } of entries) {
      const previous = last.get(key) ?? 0;
      // Smaller than before only if the map was cleared unannounced: it counts from zero.
      const growth = value >= previous ? value - previous : value;
      last.set(key, value);
      if (growth === 0) continue;
      const parsed = this.spec.parseKey(key, growth, monotonicNs);
      if (parsed === undefined) {
        rejectedKeys.push(key);
        continue;
      }
      this.counted.set(parsed.totalsKey, (this.counted.get(parsed.totalsKey) ?? 0) + growth);
      events.push(parsed.event);
    }
    return { events, uncounted: new Map(), rejectedKeys };
  }

  /**
   * The totals are printed before the detailed maps, so by the time the next totals arrive the
   * detailed counts handed on were read after the previous totals: they can only be ahead of
   * them, unless keys had no room. What they lack is uncounted — never more than really was.
   */
  private observeTotals(entries: readonly CountEntry[]): CountsUpdate<E> {
    const uncounted = new Map<string, number>();
    const rejectedKeys: string[] = [];
    for (const { key, value: total } of this.lastTotals) {
      const name = this.spec.nameOfTotalsKey(key);
      if (name === undefined) continue;
      const before = this.uncountedSoFar.get(key) ?? 0;
      const missing = total - (this.counted.get(key) ?? 0) - before;
      if (missing <= 0) continue;
      this.uncountedSoFar.set(key, before + missing);
      uncounted.set(name, (uncounted.get(name) ?? 0) + missing);
    }
    for (const { key } of entries) {
      if (this.spec.nameOfTotalsKey(key) === undefined) rejectedKeys.push(key);
    }
    this.lastTotals = entries;
    return { events: [], uncounted, rejectedKeys };
  }
}

const MAX_U32 = 0xffffffff;

/** A decimal u32 as bpftrace prints a map key field, or undefined. */
export function u32Field(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= MAX_U32 ? value : undefined;
}

/** An IPv4 address a probe keyed as a u32 read little-endian from network-order bytes. */
export function ipv4Field(text: string | undefined): string | undefined {
  const value = u32Field(text);
  if (value === undefined) return undefined;
  return `${value & 0xff}.${(value >>> 8) & 0xff}.${(value >>> 16) & 0xff}.${value >>> 24}`;
}
