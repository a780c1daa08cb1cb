/*
 * Whether this kernel can run one probe: the first variant of it whose requirements
 * (bpftrace, kprobes that attach, tracepoint fields and drop reasons, struct types from BTF or
 * kernel headers) the capabilities meet, with the bpftrace environment it needs; else every
 * requirement missing, in words.
 */
import {
  NF_CONN_HEADER,
  type ProbeRequirements,
  type ProbeSpec,
  type ProbeUnavailableReason,
  type ProbeVariant,
  type UnavailableProbe,
} from '../probes/catalogue.js';
import type { KernelCapabilities } from './capabilities.js';

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

/** Either a run of the variant, or the first reason it cannot run and every phrase missing. */
type VariantOutcome =
  | { readonly ok: true; readonly run: ProbeRun }
  | {
      readonly ok: false;
      readonly reason: ProbeUnavailableReason;
      readonly missing: readonly string[];
    };

export type ProbeOutcome =
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
export function probeOutcome(spec: ProbeSpec, capabilities: KernelCapabilities): ProbeOutcome {
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
