/**
 * The agent's fixed tuning, in one place: what is not an option but must agree across parts
 * (above all the shutdown budget, which the entry point's exit deadline must cover).
 */
export const SHUTDOWN_BUDGET = {
  /** bpftrace gets this long after SIGTERM before it is killed. */
  probeStopGraceMs: 1_500,
  /** Kubernetes Events still waiting are written for this long; the rest count as dropped. */
  eventFlushMs: 1_500,
  /**
   * The entry point exits at this deadline whatever still runs. Above the sum of the parts'
   * budgets (they stop one after the other), below the 5 s the agent promises on SIGTERM.
   */
  exitDeadlineMs: 4_500,
} as const;

export const EVENT_LOG = {
  /** Events logged one per line in each window before the log switches to summaries. */
  linesPerWindow: 50,
  windowMs: 10_000,
} as const;

/**
 * prom-client samples the event loop delay with a timer of this period (its default, 10 ms,
 * wakes an idle agent 100 times a second: most of its idle CPU). A stall of the loop still
 * shows in the lag histogram; only stalls shorter than a second may slip between samples.
 */
export const EVENT_LOOP_SAMPLE_MS = 1_000;

export const KUBERNETES = {
  /** How long a deleted pod's IP is still attributed to it, for late events. */
  podIpRetentionMs: 10 * 60_000,
  /** How long a deleted pod's metric series are kept, so their last increments are scraped. */
  seriesGraceMs: 10 * 60_000,
  /** How often deleted pods' series are checked for expiry. */
  janitorSweepMs: 30_000,
} as const;

/** The read of the node's conntrack table that names the backends of unanswered DNS queries. */
export const CONNTRACK_TABLE = {
  /** In the image and on PATH (conntrack-tools). */
  conntrackPath: 'conntrack',
  /** Only bounds a hang. */
  timeoutMs: 10_000,
  /**
   * Measured in a namespace holding 10,000 UDP port-53 entries: 1.41 MB of output (141 bytes a
   * line), dumped in 48-50 ms, parsed in 18-48 ms and linked to 10,000 clients in 8-20 ms. This
   * bound is some 59,000 entries (a node sending about 2,000 queries/s to port 53, each entry
   * living 30 s) and a quarter of a second of the agent's CPU per report at most; a larger dump
   * fails and leaves that report's backends unknown rather than holding the agent's memory.
   */
  maxOutputBytes: 8 * 1024 * 1024,
} as const;
