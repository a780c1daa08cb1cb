/**
 * How a lookup ended, from what the DNS-query probe kept of it (probes/tracepoint/dns-queries.bt):
 * the classes of the answers its queries got and whether one of them got none.
 *
 * - `answered`: an answer carried records (glibc going on past a NODATA search-list name and
 *   finding the name itself ends here).
 * - `unanswered`: no answer carried records and a query got no answer (the resolver timed out,
 *   whatever came back to its other queries).
 * - `nodata`: every query answered, none with records, a NODATA among them (musl stopping at a
 *   NODATA search-list name, or a name that has no record of the types asked).
 * - `nxdomain`: every query answered NXDOMAIN (every name tried does not exist).
 * - `failed`: every query answered, SERVFAIL, REFUSED or another error among them.
 */
export type LookupEnd = 'answered' | 'unanswered' | 'nodata' | 'nxdomain' | 'failed';

export const LOOKUP_ENDS: readonly LookupEnd[] = [
  'answered',
  'unanswered',
  'nodata',
  'nxdomain',
  'failed',
];

/** The probe's bits: answer classes seen, and a query left without an answer. */
const RECORDS = 1;
const NODATA = 2;
const NXDOMAIN = 4;
const OTHER = 8;
const UNANSWERED = 16;
/** Every bit the probe sets. */
export const LOOKUP_END_BITS = RECORDS | NODATA | NXDOMAIN | OTHER | UNANSWERED;

/** The probe's end bits of a lookup, in the order of precedence above. */
export function lookupEndOf(bits: number): LookupEnd {
  if (bits & RECORDS) return 'answered';
  if (bits & UNANSWERED) return 'unanswered';
  if (bits & OTHER) return 'failed';
  if (bits & NODATA) return 'nodata';
  if (bits & NXDOMAIN) return 'nxdomain';
  // No answer class and no missing answer: only a lookup of no query, which the probe never keeps.
  return 'unanswered';
}

/**
 * The end bits of a thread's lookup still in `@dns_q_lookup_n_*` (classes << 32 | answers << 16 |
 * queries): its classes, and UNANSWERED when it has fewer answers than queries.
 */
export function lookupEndBitsOfValue(value: number): { queries: number; bits: number } {
  const queries = value % 0x10000;
  const answers = Math.floor(value / 0x10000) % 0x10000;
  const classes = Math.floor(value / 0x100000000);
  return { queries, bits: classes | (answers < queries ? UNANSWERED : 0) };
}
