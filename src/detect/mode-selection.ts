import {
  NF_CONN_HEADER,
  probeCatalogue,
  type ProbeMode,
  type ProbeObservation,
  type ProbeRequirements,
  type ProbeSpec,
  type ProbeUnavailableReason,
  type ProbeVariant,
  type UnavailableProbe,
} from '../sources/bpftrace/catalogue.js';
import type { KernelCapabilities } from './capabilities.js';

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

/** A probe to run, with the script variant and the bpftrace environment this kernel needs. */
export interface ProbeRun {
  readonly spec: ProbeSpec;
  readonly variant: ProbeVariant;
  /** bpftrace options put before the script, e.g. `--include` of a kernel header. */
  readonly bpftraceOptions: readonly string[];
  /** Environment given to bpftrace (BPFTRACE_BTF, BPFTRACE_KERNEL_SOURCE/BUILD). */
  readonly env: Readonly<Record<string, string>>;
  /** Where the struct types come from: `btf`, or `kernel headers` (a compile of seconds). */
  readonly types: 'btf' | 'kernel headers';
  /** Set when attaching takes longer than usual: compiling kernel headers. */
  readonly attachTimeoutMs: number | undefined;
}

/**
 * Compiling the kernel headers a script includes took 36.7 s on 5.10 under software
 * emulation, with nothing else running; a node starting several such probes at once on busy
 * CPUs needs a wider bound than the usual attach timeout.
 */
const HEADER_COMPILE_ATTACH_TIMEOUT_MS = 300_000;

export interface ModeSelection {
  readonly mode: ActiveProbeMode;
  /** Why this mode, in one sentence for the start-up log. */
  readonly reason: string;
  /** Catalogue names (`probeCatalogue[].name`) of the probes to run. */
  readonly probes: readonly string[];
  /** The same probes, each with its variant and bpftrace environment. */
  readonly runs: readonly ProbeRun[];
  /** Probes of this mode that the kernel cannot run; the mode goes on without them. */
  readonly unavailable: readonly UnavailableProbe[];
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

/** Either a run of the variant, or the first reason it cannot run and every phrase missing. */
type VariantOutcome =
  | { readonly ok: true; readonly run: ProbeRun }
  | {
      readonly ok: false;
      readonly reason: ProbeUnavailableReason;
      readonly missing: readonly string[];
    };

type ProbeOutcome =
  | { readonly ok: true; readonly run: ProbeRun }
  | {
      readonly ok: false;
      readonly unavailable: UnavailableProbe;
      readonly missing: readonly string[];
    };

function bpftraceMissing(capabilities: KernelCapabilities): string | undefined {
  const { bpftrace } = capabilities;
  return bpftrace.available ? undefined : `a working bpftrace (${bpftrace.error})`;
}

function kprobesMissing(
  capabilities: KernelCapabilities,
  requirements: ProbeRequirements,
): string | undefined {
  const target = requirements.kprobes;
  if (target === undefined) return undefined;
  const outcome = capabilities.kprobeAttach[target];
  if (outcome.attached) return undefined;
  const attempt = outcome.attempted
    ? `test-attach of ${outcome.probes.join(' and ')} failed: ${outcome.error}`
    : `test-attach ${outcome.error}`;
  if (target !== 'conntrack-confirm') {
    const hint =
      target === 'clash-resolved'
        ? 'nf_ct_resolve_clash does not attach, as on kernels before 5.5 where it is inlined'
        : 'nf_nat_setup_info or nf_conntrack_tuple_taken does not attach';
    return `${hint} (${attempt})`;
  }
  const { bpftrace, kernelConfig, tracefs } = capabilities;
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
  if (evidence.length > 0) {
    return `kprobes; this kernel has none (${[...evidence, attempt].join('; ')})`;
  }
  return `kprobes that attach to __nf_conntrack_confirm (${attempt})`;
}

function tracepointMissing(
  capabilities: KernelCapabilities,
  requirements: ProbeRequirements,
): { reason: ProbeUnavailableReason; missing: string[] } | undefined {
  const fields = requirements.kfreeSkbFields;
  if (fields === undefined) return undefined;
  const { bpftrace, tracefs } = capabilities;
  const missing: string[] = [];
  if (bpftrace.available && bpftrace.tracepoint === false) {
    missing.push('tracepoints (bpftrace --info reports tracepoint: no)');
  }
  if (tracefs.root === undefined) {
    missing.push(
      `a mounted tracefs (none at ${tracefs.searched.join(' or ')}; ` +
        'mount -t tracefs nodev /sys/kernel/tracing)',
    );
  } else if (!tracefs.kfreeSkbFormat) {
    missing.push(
      `the skb:kfree_skb tracepoint (no events/skb/kfree_skb/format in ${tracefs.root})`,
    );
  }
  if (missing.length > 0) return { reason: 'no_tracepoint', missing };
  const absent = fields.filter((field) => !tracefs.kfreeSkbFields.includes(field));
  if (absent.includes('reason')) {
    missing.push(
      'skb drop reasons (skb:kfree_skb has no reason field; it has one from 5.17, and on 5.15 ' +
        'stable kernels with the backport)',
    );
  }
  const others = absent.filter((field) => field !== 'reason');
  if (others.length > 0) {
    missing.push(
      `skb:kfree_skb field${others.length > 1 ? 's' : ''} ${others.join(', ')} (this kernel's ` +
        `has ${tracefs.kfreeSkbFields.join(', ')})`,
    );
  }
  const reasons = (requirements.dropReasons ?? []).filter(
    (name) => !capabilities.tracefs.dropReasonNames.includes(name),
  );
  if (absent.length === 0 && reasons.length > 0) {
    missing.push(`the ${reasons.join(', ')} drop reason (skb:kfree_skb does not name it)`);
  }
  return missing.length > 0 ? { reason: 'tracepoint_fields', missing } : undefined;
}

/** Whether bpftrace can read `struct nf_conn` from BTF on this kernel. */
function nfConnBtf(capabilities: KernelCapabilities): boolean {
  if (!capabilities.btf) return false;
  // In its module's own BTF, which /sys/kernel/btf/nf_conntrack shows once it is loaded.
  if (capabilities.nfConntrackBtf) return true;
  // In vmlinux BTF: built in, or included by built-in code (Debian's 5.10) — read from the blob.
  if (capabilities.nfConnInVmlinuxBtf === true) return true;
  const config = capabilities.kernelConfig;
  // Not in vmlinux: only module BTF can have it, which CONFIG_DEBUG_INFO_BTF_MODULES promises.
  if (capabilities.nfConnInVmlinuxBtf === false) return config?.btfModules === true;
  // The blob could not be read: the configuration says where the struct would be.
  return config?.nfConntrack === 'y' || config?.btfModules === true;
}

function btfMissingPhrase(readers: string): string {
  return (
    `BTF (CONFIG_DEBUG_INFO_BTF): /sys/kernel/btf/vmlinux is absent and ${readers} read ` +
    'struct sk_buff and struct nf_conn through it'
  );
}

function typesOutcome(
  capabilities: KernelCapabilities,
  requirements: ProbeRequirements,
  readers: string,
):
  | { ok: true; env: Record<string, string>; options: string[]; types: ProbeRun['types'] }
  | { ok: false; reason: ProbeUnavailableReason; missing: string[] } {
  const { structs } = requirements;
  const env: Record<string, string> = {};
  const options: string[] = [];
  let types: ProbeRun['types'] = 'btf';
  // Every script reads vmlinux types through BTF (headers stand in for module types only).
  if (structs.length > 0) {
    if (!capabilities.btf)
      return { ok: false, reason: 'no_btf', missing: [btfMissingPhrase(readers)] };
    // bpftrace 0.17 finds vmlinux BTF by object id, which kernels before 5.11 do not give,
    // and then says `btf: no` though the file is there: point it at the file.
    if (capabilities.bpftrace.available && capabilities.bpftrace.btf === false) {
      env.BPFTRACE_BTF = capabilities.vmlinuxBtfPath;
    }
  }
  if (structs.includes('nf_conn') && !nfConnBtf(capabilities)) {
    const headers = capabilities.kernelHeaders;
    if (headers === undefined) {
      return {
        ok: false,
        reason: 'no_struct_types',
        missing: [
          'the types of struct nf_conn, which belongs to the nf_conntrack module: this kernel ' +
            'exports no module BTF (no /sys/kernel/btf/nf_conntrack; module BTF came in 5.11) ' +
            'and no kernel headers are installed (no /lib/modules/' +
            `${capabilities.kernelRelease ?? '<release>'}/build, no /usr/src/linux-headers-` +
            `${capabilities.kernelRelease ?? '<release>'}); install the headers of this kernel ` +
            'on the node (the DaemonSet mounts /lib/modules and /usr/src)',
        ],
      };
    }
    env.BPFTRACE_KERNEL_SOURCE = headers.source;
    env.BPFTRACE_KERNEL_BUILD = headers.build;
    options.push('--include', NF_CONN_HEADER);
    types = 'kernel headers';
  }
  return { ok: true, env, options, types };
}

function variantOutcome(
  spec: ProbeSpec,
  variant: ProbeVariant,
  capabilities: KernelCapabilities,
): VariantOutcome {
  const noBpftrace = bpftraceMissing(capabilities);
  if (noBpftrace !== undefined) return { ok: false, reason: 'no_bpftrace', missing: [noBpftrace] };
  const { requires } = variant;
  const missing: string[] = [];
  let reason: ProbeUnavailableReason | undefined;
  const kprobes = kprobesMissing(capabilities, requires);
  if (kprobes !== undefined) {
    missing.push(kprobes);
    reason = 'kprobe_attach';
  }
  const tracepoint = tracepointMissing(capabilities, requires);
  if (tracepoint !== undefined) {
    missing.push(...tracepoint.missing);
    reason ??= tracepoint.reason;
  }
  const readers = spec.essentialIn.includes('kprobe')
    ? 'the kprobe scripts'
    : spec.essentialIn.includes('tracepoint')
      ? 'the tracepoint scripts'
      : `the ${spec.name} script`;
  const types = typesOutcome(capabilities, requires, readers);
  if (!types.ok) {
    missing.push(...types.missing);
    reason ??= types.reason;
  }
  if (reason !== undefined || !types.ok) {
    return { ok: false, reason: reason ?? 'no_struct_types', missing };
  }
  return {
    ok: true,
    run: {
      spec,
      variant,
      bpftraceOptions: types.options,
      env: types.env,
      types: types.types,
      attachTimeoutMs:
        types.types === 'kernel headers' ? HEADER_COMPILE_ATTACH_TIMEOUT_MS : undefined,
    },
  };
}

/** The first variant of the probe this kernel runs, or why even the last one cannot run. */
function probeOutcome(spec: ProbeSpec, capabilities: KernelCapabilities): ProbeOutcome {
  let last: VariantOutcome | undefined;
  for (const variant of spec.variants) {
    last = variantOutcome(spec, variant, capabilities);
    if (last.ok) return last;
  }
  if (last === undefined || last.ok) throw new Error(`probe ${spec.name} has no variant`);
  return {
    ok: false,
    missing: last.missing,
    unavailable: { name: spec.name, reason: last.reason, detail: last.missing.join(', and ') },
  };
}

interface ModePlan {
  readonly runs: ProbeRun[];
  readonly unavailable: UnavailableProbe[];
  /** What the mode's essential probes miss: non-empty means the mode cannot run. */
  readonly missing: string[];
}

function planMode(mode: ProbeMode, capabilities: KernelCapabilities): ModePlan {
  const runs: ProbeRun[] = [];
  const unavailable: UnavailableProbe[] = [];
  const missing: string[] = [];
  // Essential probes first: the kprobe script before the DNS one, as they are logged.
  const specs = probeCatalogue
    .filter((spec) => spec.runsIn.includes(mode))
    .sort((a, b) => Number(b.essentialIn.includes(mode)) - Number(a.essentialIn.includes(mode)));
  for (const spec of specs) {
    const outcome = probeOutcome(spec, capabilities);
    if (outcome.ok) runs.push(outcome.run);
    else if (spec.essentialIn.includes(mode)) missing.push(...outcome.missing);
    else unavailable.push(outcome.unavailable);
  }
  return { runs, unavailable, missing };
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

/** How a probe variant short of the first one narrows what its observation sees. */
function variantGaps(runs: readonly ProbeRun[]): string[] {
  return runs.flatMap((run) =>
    run.variant.limits === undefined
      ? []
      : [`${observations[run.spec.observation]}, in part: ${run.variant.limits}`],
  );
}

function probeSelection(
  mode: ProbeMode,
  plan: ModePlan,
  reason: string,
  capabilities: KernelCapabilities,
): ModeSelection {
  const observable = plan.runs.map((run) => observations[run.spec.observation]);
  const unobservable = [
    ...(mode === 'tracepoint' ? probeModeObservability.tracepoint.unobservable : []),
    ...plan.unavailable.map((probe) => {
      const spec = probeCatalogue.find((candidate) => candidate.name === probe.name);
      const what = spec === undefined ? probe.name : observations[spec.observation];
      return `${what}: needs ${probe.detail}`;
    }),
    ...variantGaps(plan.runs),
  ];
  return finish(mode, reason, plan, observable, unobservable, capabilities);
}

function countersSelection(capabilities: KernelCapabilities, reason: string): ModeSelection {
  return finish(
    'counters-only',
    reason,
    { runs: [], unavailable: [], missing: [] },
    [],
    [...probeModeObservability['counters-only'].unobservable],
    capabilities,
  );
}

function finish(
  mode: ActiveProbeMode,
  reason: string,
  plan: ModePlan,
  observable: string[],
  unobservable: string[],
  capabilities: KernelCapabilities,
): ModeSelection {
  const counterGap = clashResolveCounterGap(capabilities);
  if (capabilities.conntrackStatColumns !== undefined) observable.push(observations.kernelCounters);
  if (counterGap.length === 0) observable.push(observations.clashResolveCounter);
  return {
    mode,
    reason,
    probes: plan.runs.map((run) => run.spec.name),
    runs: plan.runs,
    unavailable: plan.unavailable,
    observable,
    unobservable: [...unobservable, ...counterGap],
  };
}

/** What the reason of a mode says about the bpftrace environment its probes need. */
function environmentNotes(plan: ModePlan): string {
  const notes: string[] = [];
  const btf = plan.runs.find((run) => run.env.BPFTRACE_BTF !== undefined);
  if (btf !== undefined) {
    notes.push(
      `bpftrace is given BPFTRACE_BTF=${btf.env.BPFTRACE_BTF} (its --info says btf: no: ` +
        'bpftrace 0.17 looks vmlinux BTF up by object id, which kernels before 5.11 lack)',
    );
  }
  const headers = plan.runs.find((run) => run.types === 'kernel headers');
  if (headers !== undefined) {
    notes.push(
      'struct nf_conn comes from the kernel headers in ' +
        `${headers.env.BPFTRACE_KERNEL_BUILD ?? '?'} (this kernel exports no module BTF), ` +
        'so each of those scripts takes seconds to compile at start',
    );
  }
  return notes.length > 0 ? `; ${notes.join('; ')}` : '';
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
 * counters-only. A mode runs when its essential probe can run (the catalogue says which); its
 * other probes that cannot are listed as unavailable, with why, and the mode goes on without
 * them. An explicit mode the kernel cannot run is an error naming what is missing.
 */
export function selectProbeMode(
  option: ProbeModeOption,
  capabilities: KernelCapabilities,
): ModeSelectionResult {
  const kprobe = planMode('kprobe', capabilities);
  const tracepoint = planMode('tracepoint', capabilities);
  switch (option) {
    case 'kprobe':
    case 'tracepoint': {
      const plan = option === 'kprobe' ? kprobe : tracepoint;
      if (plan.missing.length > 0) return unavailable(option, plan.missing);
      const reason = `requested with --probe-mode ${option}${environmentNotes(plan)}`;
      return { ok: true, selection: probeSelection(option, plan, reason, capabilities) };
    }
    case 'counters-only':
      return {
        ok: true,
        selection: countersSelection(capabilities, 'requested with --probe-mode counters-only'),
      };
    case 'auto':
      break;
  }
  if (kprobe.missing.length === 0) {
    return {
      ok: true,
      selection: probeSelection(
        'kprobe',
        kprobe,
        'auto: kprobes attach to __nf_conntrack_confirm and BTF is present, so drops are ' +
          'seen at confirm time' +
          (kprobe.runs.some((run) => run.spec.observation === 'resolvedClashes')
            ? ', and so are the clashes the kernel resolved'
            : '') +
          environmentNotes(kprobe),
        capabilities,
      ),
    };
  }
  const noKprobe = `kprobe mode needs ${kprobe.missing.join(', and ')}`;
  if (tracepoint.missing.length === 0) {
    return {
      ok: true,
      selection: probeSelection(
        'tracepoint',
        tracepoint,
        `auto: tracepoint, because ${noKprobe}; skb:kfree_skb has drop reasons with ` +
          `NETFILTER_DROP and BTF is present${environmentNotes(tracepoint)}`,
        capabilities,
      ),
    };
  }
  return {
    ok: true,
    selection: countersSelection(
      capabilities,
      `auto: counters-only, because ${noKprobe}; and tracepoint mode needs ` +
        tracepoint.missing.join(', and '),
    ),
  };
}
