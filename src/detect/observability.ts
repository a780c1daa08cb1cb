/*
 * What the agent can see in each probe mode, in words for the start-up log, the metrics of
 * `doctor` and the docs; src/detect/mode-selection.ts narrows it to the running kernel.
 */
import type { ProbeObservation } from '../probes/catalogue.js';
import type { KernelCapabilities } from './capabilities.js';
import type { ActiveProbeMode } from './probe-modes.js';
import type { ProbeRun } from './probe-requirements.js';

export const observations = {
  insertFailures:
    'conntrack insert failures that dropped a packet, per flow: pod, service and race kind (SNAT, DNAT)',
  resolvedClashes: 'clashes the kernel resolved without a drop, per flow',
  snatPortAllocation: 'SNAT port allocation latency and attempts, per network namespace',
  dnsDrops: 'dropped UDP DNS queries and responses, with the kernel drop reason',
  dnsQueries:
    'UDP DNS queries per client: answered by class and latency, and those left unanswered',
  kernelCounters:
    'kernel conntrack counters per network namespace (insert_failed, drop, early_drop, invalid, entries)',
  clashResolveCounter: 'the kernel clash_resolve counter (clashres column)',
} as const satisfies Record<ProbeObservation | 'kernelCounters' | 'clashResolveCounter', string>;

/**
 * What each mode can observe at best (a recent kernel with every capability), for logs and
 * docs. `selectProbeMode` narrows it to the running kernel.
 */
export const probeModeObservability: Readonly<
  Record<
    ActiveProbeMode,
    { readonly observable: readonly string[]; readonly unobservable: readonly string[] }
  >
> = {
  kprobe: {
    observable: [
      observations.insertFailures,
      observations.resolvedClashes,
      observations.snatPortAllocation,
      observations.dnsDrops,
      observations.dnsQueries,
      observations.kernelCounters,
      observations.clashResolveCounter,
    ],
    unobservable: [],
  },
  tracepoint: {
    observable: [
      observations.insertFailures,
      observations.dnsDrops,
      observations.dnsQueries,
      observations.kernelCounters,
      observations.clashResolveCounter,
    ],
    unobservable: [
      `${observations.resolvedClashes}: no tracepoint fires when the kernel resolves a clash`,
      `${observations.snatPortAllocation}: no tracepoint in the NAT port search`,
    ],
  },
  'counters-only': {
    observable: [observations.kernelCounters, observations.clashResolveCounter],
    unobservable: [
      `${observations.insertFailures}: the counters say how many, not which flow or pod`,
      `${observations.resolvedClashes}: only their number, where the kernel has the clash_resolve counter`,
      `${observations.snatPortAllocation}: no probe runs`,
      `${observations.dnsDrops}: no probe runs`,
      `${observations.dnsQueries}: no probe runs`,
    ],
  },
};

/** What the kernel's conntrack counters lack on this kernel. */
export function clashResolveCounterGap(capabilities: KernelCapabilities): string[] {
  const columns = capabilities.conntrackStatColumns;
  if (columns === undefined) {
    return [
      `${observations.kernelCounters}: /proc/net/stat/nf_conntrack is absent (conntrack not loaded yet)`,
    ];
  }
  if (columns.includes('clashres')) return [];
  return [
    `${observations.clashResolveCounter}: /proc/net/stat/nf_conntrack has no clashres column ` +
      '(added in 5.10); before 5.10 insert_failed also counts clashes the kernel resolved',
  ];
}

/** How a probe variant short of the first one narrows what its observation sees. */
export function variantGaps(runs: readonly ProbeRun[]): string[] {
  return runs.flatMap((run) =>
    run.variant.limits === undefined
      ? []
      : [`${observations[run.spec.observation]}, in part: ${run.variant.limits}`],
  );
}
