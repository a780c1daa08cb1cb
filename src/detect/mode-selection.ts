import type { AttachOutcome, KernelCapabilities } from './capabilities.js';

export type ProbeModeOption = 'auto' | 'tracepoint' | 'kprobe' | 'counters-only';
export type ActiveProbeMode = 'kprobe' | 'tracepoint' | 'counters-only';

export const probeModeOptions: readonly ProbeModeOption[] = [
  'auto',
  'tracepoint',
  'kprobe',
  'counters-only',
];
export const activeProbeModes: readonly ActiveProbeMode[] = [
  'kprobe',
  'tracepoint',
  'counters-only',
];

export function parseProbeModeOption(text: string): ProbeModeOption | undefined {
  return probeModeOptions.find((option) => option === text);
}

export interface ModeSelection {
  readonly mode: ActiveProbeMode;
  /** Why this mode, in one sentence for the start-up log. */
  readonly reason: string;
  /** Catalogue names (`probeCatalogue[].name`) of the probes to run. */
  readonly probes: readonly string[];
  /** What the agent sees in this mode on this kernel. */
  readonly observable: readonly string[];
  /** What it cannot see, each with why. */
  readonly unobservable: readonly string[];
}

export interface ProbeModeUnavailable {
  readonly code: 'probe_mode_unavailable';
  readonly requested: ProbeModeOption;
  /** One phrase per missing capability, naming it and what was found instead. */
  readonly missing: readonly string[];
  readonly message: string;
}

export type ModeSelectionResult =
  | { readonly ok: true; readonly selection: ModeSelection }
  | { readonly ok: false; readonly error: ProbeModeUnavailable };

export const observations = {
  insertFailures:
    'conntrack insert failures that dropped a packet, per flow: pod, service and race kind (SNAT, DNAT)',
  resolvedClashes: 'clashes the kernel resolved without a drop, per flow',
  snatPortAllocation: 'SNAT port allocation latency and attempts, per network namespace',
  dnsDrops: 'dropped UDP DNS queries and responses, with the kernel drop reason',
  kernelCounters:
    'kernel conntrack counters per network namespace (insert_failed, drop, early_drop, invalid, entries)',
  clashResolveCounter: 'the kernel clash_resolve counter (clashres column)',
} as const;

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
      observations.kernelCounters,
      observations.clashResolveCounter,
    ],
    unobservable: [],
  },
  tracepoint: {
    observable: [
      observations.insertFailures,
      observations.dnsDrops,
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
    ],
  },
};

const probeNames = {
  kprobeConfirm: 'kprobe/conntrack-confirm',
  kprobeClash: 'kprobe/clash-resolved',
  kprobeSnat: 'kprobe/snat-port-alloc',
  tracepointInsertFailed: 'tracepoint/conntrack-insert-failed',
  tracepointDnsDrops: 'tracepoint/dns-drops',
} as const;

function attachFailure(outcome: AttachOutcome): string | undefined {
  return outcome.attached ? undefined : outcome.error;
}

function bpftraceMissing(capabilities: KernelCapabilities): string[] {
  const { bpftrace } = capabilities;
  return bpftrace.available ? [] : [`a working bpftrace (${bpftrace.error})`];
}

function btfMissing(capabilities: KernelCapabilities, readers: string): string[] {
  return capabilities.btf
    ? []
    : [
        `BTF (CONFIG_DEBUG_INFO_BTF): /sys/kernel/btf/vmlinux is absent and ${readers} read ` +
          'struct sk_buff and struct nf_conn through it',
      ];
}

function kprobesMissing(capabilities: KernelCapabilities): string[] {
  const { bpftrace, kernelConfig, tracefs } = capabilities;
  const confirm = capabilities.kprobeAttach['conntrack-confirm'];
  if (confirm.attached) return [];
  const evidence: string[] = [];
  if (kernelConfig?.kprobes === false) {
    evidence.push(`CONFIG_KPROBES is not set in ${kernelConfig.source}`);
  }
  if (tracefs.root !== undefined && !tracefs.kprobeEvents) {
    evidence.push(`no kprobe_events in ${tracefs.root}`);
  }
  if (bpftrace.available && bpftrace.kprobe === false) {
    evidence.push('bpftrace --info reports kprobe: no');
  }
  const attempt = confirm.attempted
    ? `test-attach of ${confirm.probes.join(' and ')} failed: ${confirm.error}`
    : `test-attach ${confirm.error}`;
  if (evidence.length > 0) {
    return [`kprobes; this kernel has none (${[...evidence, attempt].join('; ')})`];
  }
  return [`kprobes that attach to __nf_conntrack_confirm (${attempt})`];
}

function kprobeModeMissing(capabilities: KernelCapabilities): string[] {
  const noBpftrace = bpftraceMissing(capabilities);
  if (noBpftrace.length > 0) return noBpftrace;
  return [...kprobesMissing(capabilities), ...btfMissing(capabilities, 'the kprobe scripts')];
}

function dropReasonsMissing(capabilities: KernelCapabilities): string[] {
  const { bpftrace, tracefs } = capabilities;
  const missing: string[] = [];
  if (bpftrace.available && bpftrace.tracepoint === false) {
    missing.push('tracepoints (bpftrace --info reports tracepoint: no)');
  }
  if (tracefs.root === undefined) {
    missing.push(
      'a mounted tracefs (none at /sys/kernel/tracing or /sys/kernel/debug/tracing; ' +
        'mount -t tracefs nodev /sys/kernel/tracing)',
    );
  } else if (!tracefs.kfreeSkbFormat) {
    missing.push(
      `the skb:kfree_skb tracepoint (no events/skb/kfree_skb/format in ${tracefs.root})`,
    );
  } else if (!tracefs.kfreeSkbReason) {
    missing.push(
      'skb drop reasons (skb:kfree_skb has no reason field; it has one from 5.17, and on 5.15 ' +
        'stable kernels with the backport)',
    );
  }
  return missing;
}

function dnsDropsMissing(capabilities: KernelCapabilities): string[] {
  const noBpftrace = bpftraceMissing(capabilities);
  if (noBpftrace.length > 0) return noBpftrace;
  return [...dropReasonsMissing(capabilities), ...btfMissing(capabilities, 'the DNS drop script')];
}

function tracepointModeMissing(capabilities: KernelCapabilities): string[] {
  const noBpftrace = bpftraceMissing(capabilities);
  if (noBpftrace.length > 0) return noBpftrace;
  const missing = dropReasonsMissing(capabilities);
  if (missing.length === 0 && !capabilities.tracefs.netfilterDropReason) {
    missing.push('the NETFILTER_DROP drop reason (skb:kfree_skb does not name it)');
  }
  return [...missing, ...btfMissing(capabilities, 'the tracepoint scripts')];
}

function clashResolveCounterGap(capabilities: KernelCapabilities): string[] {
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

function kprobeSelection(capabilities: KernelCapabilities, reason: string): ModeSelection {
  const probes: string[] = [probeNames.kprobeConfirm];
  const observable: string[] = [observations.insertFailures];
  const unobservable: string[] = [];
  const clashFailure = attachFailure(capabilities.kprobeAttach['clash-resolved']);
  if (clashFailure === undefined) {
    probes.push(probeNames.kprobeClash);
    observable.push(observations.resolvedClashes);
  } else {
    unobservable.push(
      `${observations.resolvedClashes}: nf_ct_resolve_clash does not attach, as on kernels ` +
        `before 5.5 where it is inlined (${clashFailure})`,
    );
  }
  const snatFailure = attachFailure(capabilities.kprobeAttach['snat-port-alloc']);
  if (snatFailure === undefined) {
    probes.push(probeNames.kprobeSnat);
    observable.push(observations.snatPortAllocation);
  } else {
    unobservable.push(
      `${observations.snatPortAllocation}: nf_nat_setup_info or nf_conntrack_tuple_taken ` +
        `does not attach (${snatFailure})`,
    );
  }
  const dnsMissing = dnsDropsMissing(capabilities);
  if (dnsMissing.length === 0) {
    probes.push(probeNames.tracepointDnsDrops);
    observable.push(observations.dnsDrops);
  } else {
    unobservable.push(`${observations.dnsDrops}: needs ${dnsMissing.join(', and ')}`);
  }
  return finish('kprobe', reason, probes, observable, unobservable, capabilities);
}

function tracepointSelection(capabilities: KernelCapabilities, reason: string): ModeSelection {
  return finish(
    'tracepoint',
    reason,
    [probeNames.tracepointInsertFailed, probeNames.tracepointDnsDrops],
    [observations.insertFailures, observations.dnsDrops],
    [...probeModeObservability.tracepoint.unobservable],
    capabilities,
  );
}

function countersSelection(capabilities: KernelCapabilities, reason: string): ModeSelection {
  return finish(
    'counters-only',
    reason,
    [],
    [],
    [...probeModeObservability['counters-only'].unobservable],
    capabilities,
  );
}

function finish(
  mode: ActiveProbeMode,
  reason: string,
  probes: string[],
  observable: string[],
  unobservable: string[],
  capabilities: KernelCapabilities,
): ModeSelection {
  const counterGap = clashResolveCounterGap(capabilities);
  if (capabilities.conntrackStatColumns !== undefined) observable.push(observations.kernelCounters);
  if (counterGap.length === 0) observable.push(observations.clashResolveCounter);
  return { mode, reason, probes, observable, unobservable: [...unobservable, ...counterGap] };
}

function unavailable(requested: ProbeModeOption, missing: string[]): ModeSelectionResult {
  return {
    ok: false,
    error: {
      code: 'probe_mode_unavailable',
      requested,
      missing,
      message: `${requested} mode needs ${missing.join(', and ')}`,
    },
  };
}

/**
 * Picks the probe mode from the `--probe-mode` option and what the kernel can do. `auto`
 * takes the most precise mode available: kprobe (sees the drop at confirm time and the
 * clashes the kernel resolved) over tracepoint (sees the drop when the skb is freed) over
 * counters-only. An explicit mode the kernel cannot run is an error naming what is missing.
 */
export function selectProbeMode(
  option: ProbeModeOption,
  capabilities: KernelCapabilities,
): ModeSelectionResult {
  const kprobeMissing = kprobeModeMissing(capabilities);
  const tracepointMissing = tracepointModeMissing(capabilities);
  switch (option) {
    case 'kprobe':
      return kprobeMissing.length > 0
        ? unavailable(option, kprobeMissing)
        : {
            ok: true,
            selection: kprobeSelection(capabilities, 'requested with --probe-mode kprobe'),
          };
    case 'tracepoint':
      return tracepointMissing.length > 0
        ? unavailable(option, tracepointMissing)
        : {
            ok: true,
            selection: tracepointSelection(capabilities, 'requested with --probe-mode tracepoint'),
          };
    case 'counters-only':
      return {
        ok: true,
        selection: countersSelection(capabilities, 'requested with --probe-mode counters-only'),
      };
    case 'auto':
      break;
  }
  if (kprobeMissing.length === 0) {
    return {
      ok: true,
      selection: kprobeSelection(
        capabilities,
        'auto: kprobes attach to __nf_conntrack_confirm and BTF is present, so drops are ' +
          'seen at confirm time' +
          (capabilities.kprobeAttach['clash-resolved'].attached
            ? ', and so are the clashes the kernel resolved'
            : ''),
      ),
    };
  }
  const noKprobe = `kprobe mode needs ${kprobeMissing.join(', and ')}`;
  if (tracepointMissing.length === 0) {
    return {
      ok: true,
      selection: tracepointSelection(
        capabilities,
        `auto: tracepoint, because ${noKprobe}; skb:kfree_skb has drop reasons with ` +
          'NETFILTER_DROP and BTF is present',
      ),
    };
  }
  return {
    ok: true,
    selection: countersSelection(
      capabilities,
      `auto: counters-only, because ${noKprobe}; and tracepoint mode needs ` +
        tracepointMissing.join(', and '),
    ),
  };
}
