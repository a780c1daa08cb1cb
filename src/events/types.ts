import type { LookupEnd } from './lookup-end.js';
import type { Advice } from './advice.js';
import type { EventDiagnosis } from './diagnosis.js';

/**
 * The events every probe mode produces once decoded. Whatever mode observed them
 * (tracepoint, kprobe), the rest of the agent sees only these shapes.
 * The wire format they are decoded from is documented in docs/probe-events.md.
 */

export type TransportProtocol = 'udp' | 'tcp' | 'icmp' | 'other';

/** One direction of a conntrack tuple, addresses dotted-quad, ports host order. */
export interface FlowTuple {
  readonly srcIp: string;
  readonly srcPort: number;
  readonly dstIp: string;
  readonly dstPort: number;
}

/**
 * snat: the reply's destination differs from the original source (the source was rewritten);
 * dnat: the reply's source differs from the original destination (the destination was rewritten);
 * snat_dnat: both; none: neither.
 */
export type RaceKind = 'snat' | 'dnat' | 'snat_dnat' | 'none';

interface ProbeEventBase {
  /** Which probe in the catalogue produced it, e.g. "tracepoint/conntrack-insert-failed". */
  readonly probe: string;
  /** CLOCK_MONOTONIC nanoseconds at which the kernel saw it (bpftrace `nsecs`). */
  readonly monotonicNs: bigint;
  readonly cpu: number;
  /** Inode of the network namespace the packet was in; identifies the namespace. */
  readonly netnsInode: number;
  readonly protocol: TransportProtocol;
}

/** The kernel dropped a packet because its conntrack entry could not be confirmed. */
export interface InsertFailureEvent extends ProbeEventBase {
  readonly kind: 'insert_failed';
  /** IPS_* status bits of the unconfirmed entry. */
  readonly ctStatus: number;
  readonly original: FlowTuple;
  readonly reply: FlowTuple;
  readonly race: RaceKind;
  /**
   * How many failures this event stands for, as for DnsDropEvent: absent, one seen alone; 0,
   * an example printed with both tuples (the kernel's counts carry it); above 0, the growth
   * of one key of the probe's in-kernel counts, whose client ports are not kept (0).
   */
  readonly count?: number;
}

/** The kernel resolved a clash without dropping (kprobe mode only). */
export interface ClashResolvedEvent extends ProbeEventBase {
  readonly kind: 'clash_resolved';
  readonly ctStatus: number;
  readonly original: FlowTuple;
  readonly reply: FlowTuple;
  readonly race: RaceKind;
}

export type DnsDirection = 'query' | 'response';

/** A UDP datagram to or from port 53 was freed as dropped. */
export interface DnsDropEvent extends ProbeEventBase {
  readonly kind: 'dns_drop';
  /** Symbolic drop reason as the running kernel names it, e.g. "NETFILTER_DROP". */
  readonly reason: string;
  readonly direction: DnsDirection;
  /** The datagram's addresses as it was when dropped. */
  readonly tuple: FlowTuple;
  /** Kernel function that freed it, e.g. "nf_hook_slow", "nft_do_chain". */
  readonly location: string;
  /** The datagram's conntrack entry, when it had one. */
  readonly conntrack?: {
    readonly status: number;
    /** The flow as the client sent it, before any NAT. */
    readonly original: FlowTuple;
    /**
     * The entry lost a conntrack insertion race: the same drop is reported, with its race
     * kind, as an insert failure.
     */
    readonly lostInsertRace: boolean;
  };
  /**
   * How many dropped datagrams this event stands for. Absent: one, seen alone (recordings of
   * the per-packet records). 0: an example the probe printed for its detail (ports, time,
   * status); the kernel's counts carry it, so it counts nothing. Above 0: the growth of one
   * key of the probe's in-kernel counts, whose ports are not kept (0) and whose time is when
   * the agent read it.
   */
  readonly count?: number;
}

/** The kernel bound a connection's source NAT (kprobe mode only): how long and how hard it searched. */
export interface SnatPortAllocationEvent extends ProbeEventBase {
  readonly kind: 'snat_port_alloc';
  readonly latencyNs: number;
  /** Candidate tuples the kernel checked; 1 when the original source port could be kept. */
  readonly attempts: number;
  readonly original: FlowTuple;
  /** The translated source: the reply direction's destination. */
  readonly translatedIp: string;
  readonly translatedPort: number;
}

/**
 * Why a query went unanswered, from the drops this node saw of the same client: `race` (a
 * conntrack insert race), `firewall` (netfilter dropped it otherwise), `no_socket` (nothing
 * listened at the server), `other_drop` (another drop reason), `none` (no drop on this node:
 * the query or its answer was lost elsewhere, or the server never answered).
 */
export type UnansweredCause = 'race' | 'firewall' | 'no_socket' | 'other_drop' | 'none';

/** How a DNS answer came back: its rcode, with NOERROR without answer records apart. */
export type DnsAnswerClass = 'NOERROR' | 'NODATA' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' | 'OTHER';

/**
 * DNS queries a client sent and what became of them, from the in-kernel counts of
 * probes/tracepoint/dns-queries.bt: answered ones by class and latency bucket, or queries no
 * answer matched within the probe's generation period (the client felt its timeout).
 */
export interface DnsQueryEvent extends ProbeEventBase {
  readonly kind: 'dns_query';
  /**
   * The client and the server as the client addressed it (a ClusterIP before DNAT). Ports are
   * not kept (0, and 53 on the server side); the server of answers is not kept (0.0.0.0, or
   * :: for an IPv6 client).
   */
  readonly tuple: FlowTuple;
  /**
   * `parallel`: queries sent from a socket that had another query (another DNS id) pending,
   * as A and AAAA sent together (the precondition of the conntrack DNAT race); they are also
   * counted as answered or unanswered. `lookup`: lookups that cost `queriesPerLookup` queries
   * each (the queries one thread sent for one requested name, search-list names included).
   */
  readonly outcome: 'answered' | 'unanswered' | 'parallel' | 'lookup';
  /** Lookup only: queries per lookup; Infinity past the probe's cap (32). */
  readonly queriesPerLookup?: number;
  /** Lookup only: how those lookups ended (events/lookup-end.ts). */
  readonly lookupEnd?: LookupEnd;
  /** Answered only. */
  readonly answer?: DnsAnswerClass;
  /** Answered only: the upper bound of the latency bucket, seconds; Infinity past the last. */
  readonly latencyBucketSeconds?: number;
  /**
   * How many queries this stands for (growth of a count, or unanswered queries of a period);
   * for `lookup`, how many lookups.
   */
  readonly count: number;
  /** Unanswered only, once the agent linked it to the drops it saw (events/unanswered-cause.ts). */
  readonly cause?: UnansweredCause;
  /**
   * Unanswered with cause `none` only: the backends the node's conntrack table shows this
   * client's queries to the server DNATed to and never answered (attribute/unanswered-backends.ts);
   * empty when none was found, absent when the table could not be read.
   */
  readonly backends?: readonly string[];
}

/**
 * A NODATA answer (NOERROR, no answer record) reached a client, with the question it answers:
 * an example (up to 3 a second per namespace) the DNS-query probe printed; its counts carry it.
 */
export interface DnsNoDataEvent extends ProbeEventBase {
  readonly kind: 'dns_nodata';
  /** The client and the server that answered, as the client addressed it. */
  readonly tuple: FlowTuple;
  /** Lower-cased, without a trailing dot. */
  readonly name: string;
  /** "A", "AAAA", …: the question's type. */
  readonly qtype: string;
}

export type ProbeEvent =
  | InsertFailureEvent
  | ClashResolvedEvent
  | DnsDropEvent
  | SnatPortAllocationEvent
  | DnsQueryEvent
  | DnsNoDataEvent;

/** Who an event is blamed on. Standalone it is an IP; with Kubernetes, a pod. */
export interface Attribution {
  /** The client side: original source for conntrack events, the query's sender for DNS. */
  readonly sourceIp: string;
  readonly netnsInode: number;
  readonly pod?: PodRef;
  /** Set when the original destination is a Service's ClusterIP. */
  readonly service?: ServiceRef;
  /** Set when the DNAT target is a known backend pod. */
  readonly backendPod?: PodRef;
  /** Unanswered DNS queries: the pods behind the event's `backends`, where known. */
  readonly backends?: readonly BackendRef[];
  /** True when the reply destination is one of this node's addresses (SNAT to the node). */
  readonly snatToNode?: boolean;
}

export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly hostNetwork: boolean;
}

/** A backend address a flow was DNATed to, and the pod behind it where an EndpointSlice names one. */
export interface BackendRef {
  readonly ip: string;
  readonly pod?: PodRef;
}

export interface ServiceRef {
  readonly namespace: string;
  readonly name: string;
}

export interface AttributedEvent {
  readonly event: ProbeEvent;
  readonly attribution: Attribution;
  /** Wall-clock milliseconds since the epoch, derived from monotonicNs. */
  readonly wallTimeMs: number;
  /** The pod's and node's diagnosis the advice is written from (src/diagnose/), when wired. */
  readonly diagnosis?: EventDiagnosis;
  /**
   * The remedies and notes for an event that lost something, written once by the pipeline's
   * advice stage (from `diagnosis`, or generic without it); the sinks render it as it is.
   */
  readonly advice?: Advice;
}

/**
 * The pluggable correlation step. Must be synchronous and cheap: it runs on the hot path
 * for every event and reads an in-memory index.
 */
export interface AttributionResolver {
  attribute(event: ProbeEvent, wallTimeMs: number): Attribution;
}
