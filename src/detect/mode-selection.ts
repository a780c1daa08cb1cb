import { probeCatalogue, type ProbeMode, type UnavailableProbe } from '../probes/catalogue.js';
import type { KernelCapabilities } from './capabilities.js';
import {
  clashResolveCounterGap,
  observations,
  probeModeObservability,
  variantGaps,
} from './observability.js';
import type { ActiveProbeMode, ProbeModeOption } from './probe-modes.js';
import { probeOutcome, type ProbeRun } from './probe-requirements.js';

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
