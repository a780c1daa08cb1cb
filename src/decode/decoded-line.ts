import type { ProbeEvent } from '../events/types.js';

/**
 * What one line of `bpftrace -f json` output is, once decoded. The decoder never throws:
 * anything it cannot read comes back as `rejected` with a stable error code so it can be
 * counted and logged.
 */
export type DecodedLine =
  | { readonly type: 'event'; readonly event: ProbeEvent }
  /** bpftrace attached its probes: the probe is live from here on. */
  | { readonly type: 'attached'; readonly probes: number }
  /** The kernel's perf ring overflowed and bpftrace lost this many events. */
  | { readonly type: 'lost'; readonly count: number }
  /**
   * A `print()` of a map whose keys and values are counts: each key's fields as bpftrace
   * joined them with commas, and its cumulative value.
   */
  | { readonly type: 'counts'; readonly map: string; readonly entries: readonly CountEntry[] }
  /** The probe cleared this map: its counts start again from zero. */
  | { readonly type: 'map_cleared'; readonly map: string }
  /** A line bpftrace emits that carries no event (e.g. map dumps at exit); not an error. */
  | { readonly type: 'ignored'; readonly recordType: string }
  | { readonly type: 'rejected'; readonly code: DecodeErrorCode; readonly detail: string };

export interface CountEntry {
  readonly key: string;
  readonly value: number;
}

/** Why a line was rejected: each is a label value of the rejected-lines counter. */
export const DECODE_ERROR_CODES = [
  'not_json',
  'not_an_object',
  'unknown_record',
  'bad_field_count',
  'bad_field',
  'unsupported_version',
  /**
   * An `attached_probes` or `lost_events` count, or a value of a printed map, that is not a
   * non-negative safe integer.
   */
  'bad_count',
  /** A `dns_nodata` record whose DNS message bytes hold no well-formed question. */
  'bad_dns_message',
  /** Longer than MAX_LINE_CHARS: no record is, so it is garbage, and is not parsed. */
  'line_too_long',
] as const;

export type DecodeErrorCode = (typeof DECODE_ERROR_CODES)[number];

/**
 * The longest line the agent reads. Far above any record (a few hundred characters); the
 * reader cuts a longer line here and drops the rest of it, so garbage with no newline in
 * sight cannot hold memory.
 */
export const MAX_LINE_CHARS = 1 << 20;

export type LineDecoder = (line: string) => DecodedLine;
