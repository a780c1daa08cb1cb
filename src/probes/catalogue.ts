import type { ProbeEvent } from '../events/types.js';

export type ProbeMode = 'tracepoint' | 'kprobe';

/** The kprobe scripts, each with the probes its test-attach tries. */
export type KprobeTarget = 'conntrack-confirm' | 'clash-resolved' | 'snat-port-alloc';

/** What src/detect/capabilities.ts test-attaches for each kprobe script. */
export const kprobeAttachTargets: Readonly<Record<KprobeTarget, readonly string[]>> = {
  'conntrack-confirm': ['kprobe:__nf_conntrack_confirm', 'kretprobe:__nf_conntrack_confirm'],
  'clash-resolved': ['kprobe:nf_ct_resolve_clash', 'kretprobe:nf_ct_resolve_clash'],
  'snat-port-alloc': [
    'kprobe:nf_nat_setup_info',
    'kretprobe:nf_nat_setup_info',
    'kprobe:nf_conntrack_tuple_taken',
  ],
};

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

/**
 * Kernel structs a script dereferences. `sk_buff`, `sock` and `ipv6hdr` are vmlinux types (BTF
 * from `/sys/kernel/btf/vmlinux`); `nf_conn` belongs to nf_conntrack, which is usually a module:
 * its types come from the module's BTF (5.11+), from vmlinux when conntrack is built in, or
 * from the kernel headers (`--include`) on kernels that export no module BTF.
 */
export type KernelStruct = 'sk_buff' | 'sock' | 'ipv6hdr' | 'nf_conn';

/** What one script needs of the running kernel; mode selection checks each of them. */
export interface ProbeRequirements {
  /** Its kprobes, whose test-attach (src/detect/capabilities.ts) must have succeeded. */
  readonly kprobes?: KprobeTarget;
  /** Fields of `tracepoint:skb:kfree_skb` it reads, checked against the format file. */
  readonly kfreeSkbFields?: readonly string[];
  /** `enum skb_drop_reason` names its positional arguments are built from. */
  readonly dropReasons?: readonly string[];
  readonly structs: readonly KernelStruct[];
}

export interface ProbeVariant {
  /** Script path relative to the probes directory. */
  readonly script: string;
  readonly requires: ProbeRequirements;
  /** What this variant gives up compared with the first one, for logs and docs; none for the first. */
  readonly limits?: string;
  /** Positional arguments ($1, $2, …) for the script; throws if the kernel lacks what it needs. */
  positionalArgs(context: ProbeArgumentContext): string[];
  /** Added to bpftrace's environment, e.g. the size of its maps. */
  readonly env?: Readonly<Record<string, string>>;
}

/** The observations of src/detect/mode-selection.ts that a probe provides. */
export type ProbeObservation =
  'insertFailures' | 'resolvedClashes' | 'snatPortAllocation' | 'dnsDrops' | 'dnsQueries';

export interface ProbeSpec {
  /** Stable name, used in metrics labels and logs: `<kind>/<script>`. */
  readonly name: string;
  /** The modes that run this probe. */
  readonly runsIn: readonly ProbeMode[];
  /**
   * The modes that are pointless without it: such a mode is chosen only when this probe can
   * run. Any other probe that cannot run is reported unavailable and the mode goes on.
   */
  readonly essentialIn: readonly ProbeMode[];
  readonly observation: ProbeObservation;
  readonly emits: readonly ProbeRecordKind[];
  /**
   * Maps the probe prints (`{"type": "map", "data": {"@name": …}}`), besides the records of
   * `emits`: in a combined bpftrace process (bpftrace-supervisor.ts) its output is routed to
   * the probe by these names, so no other probe may print them.
   */
  readonly maps?: readonly string[];
  /** Most complete first; the first one the kernel satisfies runs. */
  readonly variants: readonly ProbeVariant[];
}

/**
 * Why a probe of the chosen mode does not run. A fixed set, so that it can be a metric label:
 * the first six are found at start-up from what the kernel offers (src/detect/mode-selection.ts),
 * `exits_before_attach` at run time (bpftrace-supervisor.ts).
 */
export type ProbeUnavailableReason =
  | 'no_bpftrace'
  | 'kprobe_attach'
  | 'no_tracepoint'
  | 'tracepoint_fields'
  | 'no_btf'
  | 'no_struct_types'
  | 'exits_before_attach';

export const probeUnavailableReasons: readonly ProbeUnavailableReason[] = [
  'no_bpftrace',
  'kprobe_attach',
  'no_tracepoint',
  'tracepoint_fields',
  'no_btf',
  'no_struct_types',
  'exits_before_attach',
];

/** A probe of the chosen mode that this kernel cannot run, and why. */
export interface UnavailableProbe {
  readonly name: string;
  readonly reason: ProbeUnavailableReason;
  /** What is missing, in words, e.g. bpftrace's error line or the absent field. */
  readonly detail: string;
}

function requireReason(context: ProbeArgumentContext, name: string): string {
  const code = context.dropReasonCode(name);
  if (code === undefined) {
    throw new Error(`this kernel's skb:kfree_skb has no drop reason ${name}`);
  }
  return String(code);
}

const noArgs = (): string[] => [];

/**
 * The DNS-drop and insert-failure probes count in the kernel (docs/probe-events.md): their
 * detailed maps swap generations this often, so keys of departed pods and flows leave within
 * two periods.
 */
export const COUNT_MAP_GENERATION_SECONDS = 300;
/**
 * Keys per map (bpftrace's own default is 4,096). A key is one client, server, reason or race
 * and namespace — not one client port — so a node needs far fewer; past it the kernel still
 * counts the occurrence in its totals and the agent reports it uncounted. 8,192 keys of two
 * generations cost about 1.5 MB of keys plus 8 bytes per CPU and key, per probe.
 */
export const COUNT_MAP_KEYS = 8192;

/**
 * The insert-failure probes' printed maps: one of the two runs in each mode. IPv4 flows in
 * `@insert_failures_*`, IPv6 flows in `@insert_failures6_*`; one totals map for both.
 */
const INSERT_FAILURE_COUNT_MAPS = [
  '@insert_failure_totals',
  '@insert_failures_0',
  '@insert_failures_1',
  '@insert_failures6_0',
  '@insert_failures6_1',
] as const;

/**
 * The bound of every map of a probe, under both names bpftrace has read it by: 0.17 reads
 * BPFTRACE_MAP_KEYS_MAX, 0.22 and later BPFTRACE_MAX_MAP_KEYS (and warn that the older name is
 * deprecated, a warning the agent logs at debug level only).
 */
export function mapKeysEnv(keys: number): Readonly<Record<string, string>> {
  return { BPFTRACE_MAP_KEYS_MAX: String(keys), BPFTRACE_MAX_MAP_KEYS: String(keys) };
}

const countMapEnv = mapKeysEnv(COUNT_MAP_KEYS);

const dnsDropCounting = {
  positionalArgs: (): string[] => [String(COUNT_MAP_GENERATION_SECONDS)],
  env: countMapEnv,
};

/**
 * The DNS-query probe reports a query unanswered once it waited this long without an answer:
 * the default timeout of glibc's and musl's resolvers, so an unanswered query is a stall the
 * client felt. Reported between this and twice this plus a second after it was sent.
 */
export const DNS_QUERY_TIMEOUT_SECONDS = 5;
/**
 * Pending queries per generation: those in flight plus those that will go unanswered within a
 * period. Answered queries leave at once, so a node needs far fewer than it sends per period;
 * past it a query is not tracked and counted as such. A printed generation of 8,192 keys is
 * about 400 KB of JSON, under the agent's longest line (1 MiB).
 */
export const DNS_QUERY_MAP_KEYS = 8192;

export const probeCatalogue: readonly ProbeSpec[] = [
  {
    name: 'tracepoint/conntrack-insert-failed',
    runsIn: ['tracepoint'],
    essentialIn: ['tracepoint'],
    observation: 'insertFailures',
    emits: ['insert_failed'],
    maps: INSERT_FAILURE_COUNT_MAPS,
    variants: [
      {
        script: 'tracepoint/conntrack-insert-failed.bt',
        requires: {
          kfreeSkbFields: ['skbaddr', 'location', 'protocol', 'reason'],
          dropReasons: ['NETFILTER_DROP'],
          structs: ['sk_buff', 'nf_conn'],
        },
        positionalArgs: (context) => [
          requireReason(context, 'NETFILTER_DROP'),
          String(COUNT_MAP_GENERATION_SECONDS),
        ],
        env: countMapEnv,
      },
    ],
  },
  {
    name: 'kprobe/conntrack-confirm',
    runsIn: ['kprobe'],
    essentialIn: ['kprobe'],
    observation: 'insertFailures',
    emits: ['insert_failed'],
    maps: INSERT_FAILURE_COUNT_MAPS,
    variants: [
      {
        script: 'kprobe/conntrack-confirm.bt',
        requires: { kprobes: 'conntrack-confirm', structs: ['sk_buff', 'nf_conn'] },
        positionalArgs: (): string[] => [String(COUNT_MAP_GENERATION_SECONDS)],
        env: countMapEnv,
      },
    ],
  },
  {
    name: 'kprobe/clash-resolved',
    runsIn: ['kprobe'],
    essentialIn: [],
    observation: 'resolvedClashes',
    emits: ['clash_resolved'],
    variants: [
      {
        script: 'kprobe/clash-resolved.bt',
        requires: { kprobes: 'clash-resolved', structs: ['sk_buff', 'nf_conn'] },
        positionalArgs: noArgs,
      },
    ],
  },
  {
    name: 'kprobe/snat-port-alloc',
    runsIn: ['kprobe'],
    essentialIn: [],
    observation: 'snatPortAllocation',
    emits: ['snat_port_alloc'],
    variants: [
      {
        script: 'kprobe/snat-port-alloc.bt',
        requires: { kprobes: 'snat-port-alloc', structs: ['nf_conn'] },
        positionalArgs: noArgs,
      },
    ],
  },
  {
    name: 'tracepoint/dns-drops',
    runsIn: ['kprobe', 'tracepoint'],
    essentialIn: [],
    observation: 'dnsDrops',
    emits: ['dns_drop'],
    // IPv4 datagrams in @dns_drops_*, IPv6 in @dns_drops6_*; one totals map for both.
    maps: ['@dns_drop_totals', '@dns_drops_0', '@dns_drops_1', '@dns_drops6_0', '@dns_drops6_1'],
    variants: [
      {
        script: 'tracepoint/dns-drops.bt',
        requires: {
          kfreeSkbFields: ['skbaddr', 'location', 'protocol', 'reason', 'rx_sk'],
          structs: ['sk_buff', 'sock', 'nf_conn', 'ipv6hdr'],
        },
        ...dnsDropCounting,
      },
      {
        // 5.17 to 6.10: drop reasons, but no receiving socket in the tracepoint (6.11).
        script: 'tracepoint/dns-drops-no-rx-sk.bt',
        requires: {
          kfreeSkbFields: ['skbaddr', 'location', 'protocol', 'reason'],
          structs: ['sk_buff', 'sock', 'nf_conn', 'ipv6hdr'],
        },
        limits:
          'skb:kfree_skb has no rx_sk field (added in 6.11): a datagram freed from a socket ' +
          'queue, with neither device nor owner left, is placed by its conntrack entry or not at all',
        ...dnsDropCounting,
      },
      {
        // Before 5.17: no drop reasons; the agent names the cause from the freeing function.
        script: 'tracepoint/dns-drops-no-reason.bt',
        requires: {
          kfreeSkbFields: ['skbaddr', 'location', 'protocol'],
          structs: ['sk_buff', 'sock', 'nf_conn', 'ipv6hdr'],
        },
        limits:
          'skb:kfree_skb has no reason field (added in 5.17): the cause is named from the ' +
          'function that freed the datagram (docs/probe-matrix.md, "Drops without drop reasons")',
        ...dnsDropCounting,
      },
    ],
  },
  {
    name: 'tracepoint/dns-queries',
    runsIn: ['kprobe', 'tracepoint'],
    essentialIn: [],
    observation: 'dnsQueries',
    emits: ['dns_query', 'dns_nodata'],
    maps: [
      '@dns_q_answers',
      '@dns_q_pending_0',
      '@dns_q_pending_1',
      '@dns_q_untracked',
      '@dns_q_parallel_0',
      '@dns_q_parallel_1',
      '@dns_q_resent_0',
      '@dns_q_resent_1',
      '@dns_q_lookups_0',
      '@dns_q_lookups_1',
      '@dns_q_lookup_n_0',
      '@dns_q_lookup_n_1',
      // IPv6 clients' queries: each address keyed as two u64 halves.
      '@dns_q_answers6',
      '@dns_q_pending6_0',
      '@dns_q_pending6_1',
      '@dns_q_resent6_0',
      '@dns_q_resent6_1',
      '@dns_q_parallel6_0',
      '@dns_q_parallel6_1',
      '@dns_q_lookups6_0',
      '@dns_q_lookups6_1',
      '@dns_q_lookup_n6_0',
      '@dns_q_lookup_n6_1',
    ],
    variants: [
      {
        script: 'tracepoint/dns-queries.bt',
        // net:net_dev_queue and net:netif_receive_skb exist on every kernel the agent supports;
        // ipv6hdr: the addresses of an IPv6 NODATA example.
        requires: { structs: ['sk_buff', 'ipv6hdr'] },
        positionalArgs: (): string[] => [String(DNS_QUERY_TIMEOUT_SECONDS)],
        env: mapKeysEnv(DNS_QUERY_MAP_KEYS),
      },
    ],
  },
];

export function probeSpec(name: string): ProbeSpec | undefined {
  return probeCatalogue.find((probe) => probe.name === name);
}

/** The header that declares `struct nf_conn`, for kernels whose types come from headers. */
export const NF_CONN_HEADER = 'net/netfilter/nf_conntrack.h';
