/**
 * The upper bounds (seconds) of the latency buckets probes/tracepoint/dns-queries.bt counts
 * answers in, by bucket index; index 11 is everything above the last.
 */
export const DNS_QUERY_DURATION_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
] as const;
