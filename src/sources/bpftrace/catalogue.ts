import type { ProbeEvent } from '../../events/types.js';

export type ProbeMode = 'tracepoint' | 'kprobe';

/** What a probe's arguments may be built from, all read from the running kernel at start-up. */
export interface ProbeArgumentContext {
  /** Numeric value of a `enum skb_drop_reason` name on this kernel, or undefined. */
  dropReasonCode(name: string): number | undefined;
}

/**
 * Record types a probe prints: the event kinds, plus `snat_port_alloc` (kprobe mode), which
 * is a measurement rather than a ProbeEvent (see docs/probe-events.md).
 */
export type ProbeRecordKind = ProbeEvent['kind'] | 'snat_port_alloc';

export interface ProbeSpec {
  /** Stable name, used in metrics labels and logs: `<mode>/<script>`. */
  readonly name: string;
  readonly mode: ProbeMode;
  /** Script path relative to the probes directory. */
  readonly script: string;
  readonly emits: readonly ProbeRecordKind[];
  /** Positional arguments ($1, $2, …) for the script; throws if the kernel lacks what it needs. */
  positionalArgs(context: ProbeArgumentContext): string[];
}

function requireReason(context: ProbeArgumentContext, name: string): string {
  const code = context.dropReasonCode(name);
  if (code === undefined) {
    throw new Error(`this kernel's skb:kfree_skb has no drop reason ${name}`);
  }
  return String(code);
}

export const probeCatalogue: readonly ProbeSpec[] = [
  {
    name: 'tracepoint/conntrack-insert-failed',
    mode: 'tracepoint',
    script: 'tracepoint/conntrack-insert-failed.bt',
    emits: ['insert_failed'],
    positionalArgs: (context) => [requireReason(context, 'NETFILTER_DROP')],
  },
  {
    name: 'tracepoint/dns-drops',
    mode: 'tracepoint',
    script: 'tracepoint/dns-drops.bt',
    emits: ['dns_drop'],
    positionalArgs: () => [],
  },
  {
    name: 'kprobe/conntrack-confirm',
    mode: 'kprobe',
    script: 'kprobe/conntrack-confirm.bt',
    emits: ['insert_failed'],
    positionalArgs: () => [],
  },
  {
    name: 'kprobe/clash-resolved',
    mode: 'kprobe',
    script: 'kprobe/clash-resolved.bt',
    emits: ['clash_resolved'],
    positionalArgs: () => [],
  },
  {
    name: 'kprobe/snat-port-alloc',
    mode: 'kprobe',
    script: 'kprobe/snat-port-alloc.bt',
    emits: ['snat_port_alloc'],
    positionalArgs: () => [],
  },
];
