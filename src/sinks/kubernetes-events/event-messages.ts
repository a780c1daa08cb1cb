/**
 * The words of the Kubernetes Events: what was dropped, which race, what the pod saw, what to
 * do. Pure functions of an event and its attribution, so each cause's text is tested alone.
 */
import type {
  Attribution,
  DnsDropEvent,
  DnsQueryEvent,
  FlowTuple,
  InsertFailureEvent,
  RaceKind,
} from '../../events/types.js';
import type { Advice } from '../../events/advice.js';
import type { UnansweredCause } from '../../events/unanswered-cause.js';
import { canonicalIp, ipFamilyOf } from '../../shared/canonical-ip.js';
import type { NoDataStop } from '../../events/nodata-stop.js';
import type { FanOut } from '../../events/fan-out.js';

export const EVENT_REASONS = {
  /** On a Pod: a packet of its flow lost a conntrack insert race and was dropped. */
  insertFailed: 'ConntrackInsertFailed',
  /** On a Pod (or the Node for host-network senders): a DNS datagram of it was dropped. */
  dnsDropped: 'DNSQueryDropped',
  /** On a Pod (or the Node): DNS queries of it saw no answer within the resolver timeout. */
  dnsUnanswered: 'DNSQueryUnanswered',
  /** On a Pod: a musl lookup ended on a NODATA answer to a search-list name. */
  dnsLookupStoppedOnNoData: 'DNSLookupStoppedOnNoData',
  /** On a Pod: its lookups walk the search list, costing many queries each. */
  dnsSearchListFanOut: 'DNSSearchListFanOut',
  /** On the Node: the conntrack table is full, new flows are dropped. */
  tableFull: 'ConntrackTableFull',
  /** On the Node: an insert race from the host network namespace, blamable on no pod. */
  insertFailedHostNetwork: 'ConntrackInsertFailedHostNetwork',
} as const;

export type EventReason = (typeof EVENT_REASONS)[keyof typeof EVENT_REASONS];

/** The API server's limit on an Event message; longer ones are rejected or cut. */
export const MAX_MESSAGE_BYTES = 1024;

export interface Explanation {
  readonly reason: EventReason;
  readonly message: string;
}

export interface ExplainContext {
  /** The sender is the node itself or a hostNetwork pod: the Event goes on the Node. */
  readonly hostNetwork: boolean;
  /** The event's advice, as the pipeline's advice stage wrote it; none: no advice is given. */
  readonly advice?: Advice;
}

const RACE_TEXT: Record<RaceKind, { name: string; how: (e: InsertFailureEvent) => string }> = {
  snat: {
    name: 'SNAT port-allocation race when leaving the node',
    how: (e) =>
      `Another flow leaving the node at the same instant was given the same source ${endpoint(e.reply.dstIp, e.reply.dstPort)} after SNAT and won the conntrack insert.`,
  },
  dnat: {
    name: 'DNAT race towards a ClusterIP',
    how: () =>
      'Two packets of one socket (resolvers send the A and AAAA queries in parallel) were translated at the same instant and the second lost the conntrack insert.',
  },
  snat_dnat: {
    name: 'SNAT and DNAT race towards a ClusterIP',
    how: () =>
      'Both the destination (DNAT) and the source (SNAT) were rewritten, and another flow translated at the same instant won the conntrack insert.',
  },
  none: {
    name: 'conntrack insert race without NAT',
    how: () =>
      'Two packets of the same flow raced to create its conntrack entry and the second lost.',
  },
};

export function explainInsertFailure(
  event: InsertFailureEvent,
  attribution: Attribution,
  context: ExplainContext,
): Explanation {
  const race = RACE_TEXT[event.race];
  const message = assemble([
    `${describeFlow(event.protocol, event.original, attribution, event.reply, event.race)} was dropped: ${race.name}.`,
    { optional: race.how(event) },
    { optional: fromHost(context) },
    { optional: symptom(event.protocol, event.original, context) },
    ...adviceText(context.advice),
  ]);
  return {
    reason: context.hostNetwork
      ? EVENT_REASONS.insertFailedHostNetwork
      : EVENT_REASONS.insertFailed,
    message,
  };
}

export function explainDnsDrop(
  event: DnsDropEvent,
  attribution: Attribution,
  context: ExplainContext,
): Explanation {
  const flow = describeFlow('udp', event.tuple, attribution);
  const where = event.location && event.location !== '-' ? `, in ${event.location}` : '';
  let cause: string;
  let checks: string[];
  if (event.reason === 'NETFILTER_DROP') {
    cause = isRuleTable(event.location)
      ? 'A firewall rule dropped it (a NetworkPolicy or an iptables/nftables DROP).'
      : 'Netfilter dropped it: conntrack lost a NAT insert race or the table is full, or a rule (NetworkPolicy) dropped it.';
    checks = [
      'check that NetworkPolicies allow DNS (UDP and TCP 53) to the DNS Service and its pods',
    ];
  } else if (event.reason === 'NO_SOCKET' && event.direction === 'response') {
    cause =
      'The answer arrived after the socket was closed: the resolver had already given up waiting.';
    checks = ['check the DNS server latency (CoreDNS upstreams)'];
  } else if (event.reason === 'NO_SOCKET') {
    cause = `Nothing listens on UDP ${event.tuple.dstPort} at ${event.tuple.dstIp}: the DNS backend is gone or not ready, e.g. a stale conntrack entry still translating to a deleted DNS pod.`;
    checks = [
      "check the DNS Service's endpoints",
      'kube-proxy clears stale UDP conntrack entries when backends change',
    ];
  } else {
    cause = `The kernel freed it with drop reason ${event.reason}.`;
    checks = [];
  }
  const message = assemble([
    `${flow} was dropped (reason ${event.reason}${where}).`,
    cause,
    { optional: fromHost(context) },
    event.direction === 'query' || event.reason !== 'NO_SOCKET'
      ? { optional: dnsSymptom(event.direction, context) }
      : '',
    ...adviceText(context.advice, checks),
  ]);
  return { reason: EVENT_REASONS.dnsDropped, message };
}

const UNANSWERED_CAUSE_TEXT: Record<UnansweredCause, string> = {
  race: 'This node dropped DNS datagrams of this client in a conntrack insert race (see its ConntrackInsertFailed Events).',
  firewall:
    'This node dropped DNS datagrams of this client in netfilter: a firewall rule (a NetworkPolicy or an iptables/nftables DROP) or a NAT failure (see its DNSQueryDropped Events).',
  no_socket:
    'This node found nothing listening at the DNS server it sent to: the backend is gone or not ready, e.g. a stale conntrack entry to a deleted DNS pod.',
  other_drop: 'This node dropped DNS datagrams of this client (see its DNSQueryDropped Events).',
  none: 'No drop on this node explains it: the query or its answer was lost beyond the node, or the DNS server never answered (check its latency and upstreams).',
};

/**
 * DNS queries of a pod that no answer matched within the probe's period: what the pod felt (a
 * stall of its resolver timeout), the cause found in this node's drops, and the remedies.
 */
export function explainUnansweredQueries(
  event: DnsQueryEvent,
  attribution: Attribution,
  context: ExplainContext,
  timeoutSeconds: number,
): Explanation {
  const cause = event.cause ?? 'none';
  const flow = describeFlow('udp', event.tuple, attribution);
  const plural = event.count === 1 ? 'query' : 'queries';
  const message = assemble([
    `${event.count} DNS ${plural} (${flow}) got no answer: the resolver sent ${event.count === 1 ? 'it' : 'each'} again, or no answer came within ${timeoutSeconds} s.`,
    `${subject(context)} stalled on each before retrying or failing: glibc waits its resolver timeout (5 s by default), musl the timeout divided by attempts (2.5 s by default): lookups that take exactly 5 s (2.5 s with musl).`,
    UNANSWERED_CAUSE_TEXT[cause],
    cause === 'none' ? silentBackendsText(event, attribution) : '',
    { optional: fromHost(context) },
    ...adviceText(context.advice),
  ]);
  return { reason: EVENT_REASONS.dnsUnanswered, message };
}

/**
 * The backends the node's conntrack table shows the queries went to after DNAT with nothing
 * back, e.g. "backend 10.244.2.3 (pod kube-system/coredns-5d78c9869d-q9w4t)"; empty where the
 * table was not read or named none.
 */
function silentBackendsText(event: DnsQueryEvent, attribution: Attribution): string {
  const ips = event.backends ?? [];
  if (ips.length === 0) return '';
  const named = ips.map((ip) => {
    const pod = attribution.backends?.find((backend) => backend.ip === ip)?.pod;
    return pod
      ? `${canonicalIp(ip)} (pod ${pod.namespace}/${shortName(pod.name)})`
      : canonicalIp(ip);
  });
  const which = ips.length === 1 ? 'backend' : 'backends';
  const them = ips.length === 1 ? 'that backend' : 'those backends';
  return `This node's conntrack table shows queries of this client sent to ${which} ${named.join(', ')} after DNAT and never answered: check ${them} (logs, readiness, CPU throttling, upstreams).`;
}

/**
 * A musl lookup that stopped on a NODATA answer to a search-list name: the name, the domain
 * whose server answered so, why musl failed where glibc would not, and the three remedies.
 */
export function explainLookupStoppedOnNoData(stop: NoDataStop, server: string): Explanation {
  const message = assemble([
    `A DNS lookup of "${stop.requested}" stopped at "${stop.name}": the server of search domain ${stop.domain} (asked at ${server}) answered NOERROR with no record (NODATA) instead of NXDOMAIN.`,
    {
      optional: `Names tried, in the order of its search list: ${stop.tried.join(', ')} (NODATA: stopped there; "${stop.requested}" itself never tried).`,
    },
    `Container ${stop.container} resolves with musl, which ends the search-list walk at a NODATA answer and fails the lookup ("Name does not resolve"); glibc would go on to the next domain and the name itself.`,
    `Remedies: look the name up as an FQDN with a trailing dot ("${stop.requested}."); lower ndots (dnsConfig options ndots:1 or ndots:2) so that a name with dots is tried as is first; or fix the server of ${stop.domain} to answer NXDOMAIN for names it does not hold.`,
  ]);
  return { reason: EVENT_REASONS.dnsLookupStoppedOnNoData, message };
}

/**
 * Lookups that walk the search list: what they cost, why (the pod's ndots and search list, where
 * read), and the remedies that fit (NodeLocal DNSCache left out for a pod already on it).
 */
export function explainSearchListFanOut(fanOut: FanOut): Explanation {
  const cost = `${fanOut.lookups} DNS lookups of this pod cost ${fanOut.meanQueries} queries each on average${fanOut.nxdomain > 0 ? ` (${fanOut.nxdomain} of them found the name nowhere: NXDOMAIN for every name tried)` : ''}, where a name looked up as is costs 2 (A and AAAA).`;
  const why =
    fanOut.ndots !== undefined && fanOut.search !== undefined
      ? `Its resolv.conf has ndots:${fanOut.ndots} and ${fanOut.search.length} search domains (${fanOut.search.join(' ')}): a name with fewer than ${fanOut.ndots} dots is tried with each search domain before itself, both types each, up to ${(fanOut.search.length + 1) * 2} queries for a name outside the cluster.`
      : "Its resolv.conf was not read; with Kubernetes' defaults (ndots:5, 3 search domains) a name with fewer than 5 dots is tried with each search domain before itself, both types each, up to 8 queries for a name outside the cluster.";
  const remedies = [
    'look external names up as FQDNs with a trailing dot ("api.example.com.")',
    "lower ndots in the pod's dnsConfig (options ndots:1 or ndots:2) so that a name with dots is tried as is first",
    ...(fanOut.nodeLocal
      ? []
      : ['NodeLocal DNSCache, which answers the repeated search-list names from the node']),
  ];
  const message = assemble([
    cost,
    why,
    'Every query is one more chance to lose a packet to the conntrack race, and one more round trip the lookup waits for.',
    `Remedies: ${remedies.join('; ')}.`,
  ]);
  return { reason: EVENT_REASONS.dnsSearchListFanOut, message };
}

export interface TableFullInput {
  readonly nodeName: string;
  readonly entries: number;
  readonly limit: number;
  /** Packets of new flows dropped since the previous report. */
  readonly drops: number;
}

export function explainTableFull(input: TableFullInput): Explanation {
  const message = [
    `Conntrack table full on node ${input.nodeName}: ${input.entries} of ${input.limit} entries in use; ${input.drops} packets of new flows were dropped.`,
    'Every pod on this node sees new connections and DNS queries time out until entries expire.',
    'Remedies: raise net.netfilter.nf_conntrack_max (kube-proxy --conntrack-max-per-core); shorten the timeouts of idle UDP and TCP entries; find the pod opening the most flows (conntrack -L); NodeLocal DNSCache to cut DNS entries.',
  ].join(' ');
  return { reason: EVENT_REASONS.tableFull, message: fitMessage(message) };
}

/** e.g. "UDP query 10.244.1.7:41522 → kube-dns 10.96.0.10:53, DNAT to 10.244.2.3:53 (coredns-5d78c9869d-x7k2p)". */
export function describeFlow(
  protocol: string,
  original: FlowTuple,
  attribution: Attribution,
  reply?: FlowTuple,
  race?: RaceKind,
): string {
  const noun = original.dstPort === 53 ? 'query' : original.srcPort === 53 ? 'response' : 'packet';
  // The Service is on the server side: the destination, except for a DNS response.
  const service = attribution.service ? `${shortName(attribution.service.name)} ` : '';
  const [srcName, dstName] = noun === 'response' ? [service, ''] : ['', service];
  let text = `${protocol.toUpperCase()} ${noun} ${srcName}${endpoint(original.srcIp, original.srcPort)} → ${dstName}${endpoint(original.dstIp, original.dstPort)}`;
  if (reply && (race === 'dnat' || race === 'snat_dnat')) {
    const backend = attribution.backendPod ? ` (${shortName(attribution.backendPod.name)})` : '';
    text += `, DNAT to ${endpoint(reply.srcIp, reply.srcPort)}${backend}`;
  } else if (!reply && attribution.backendPod) {
    text += ` (backend ${shortName(attribution.backendPod.name)})`;
  }
  if (reply && (race === 'snat' || race === 'snat_dnat'))
    text += `, SNAT to ${endpoint(reply.dstIp, reply.dstPort)}`;
  return text;
}

/**
 * `ip:port` (`[ip]:port` for IPv6, RFC 5952 section 6), or the address alone where the port is
 * not known (0: counted in the kernel by address); the address in canonical form.
 */
function endpoint(written: string, port: number): string {
  const ip = canonicalIp(written);
  if (port === 0) return ip;
  return ipFamilyOf(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The diagnosis line, what it says of this case, and the remedies that apply. */
function adviceText(advice: Advice | undefined, checks: readonly string[] = []): string[] {
  const remedies = [...checks, ...(advice?.remedies ?? []).map((remedy) => remedy.text)];
  return [
    advice?.diagnosed ? `${capitalise(advice.summary)}.` : '',
    ...(advice?.notes ?? []),
    remedies.length > 0 ? `Remedies: ${remedies.join('; ')}.` : '',
  ];
}

type MessagePart = string | { readonly optional: string };

/**
 * Joins the sentences; when they exceed the API's limit, the optional ones (how the race
 * happens, where from) go first, so that the diagnosis and the remedies stay whole.
 */
function assemble(parts: readonly MessagePart[]): string {
  const join = (keepOptional: boolean): string =>
    parts
      .map((part) => (typeof part === 'string' ? part : keepOptional ? part.optional : ''))
      .filter((part) => part !== '')
      .join(' ');
  const full = join(true);
  return fitMessage(Buffer.byteLength(full, 'utf8') <= MAX_MESSAGE_BYTES ? full : join(false));
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function fromHost(context: ExplainContext): string {
  return context.hostNetwork
    ? "It came from the node's network namespace: the node itself or a hostNetwork pod, which share its address, so no single pod can be blamed."
    : '';
}

function subject(context: ExplainContext): string {
  return context.hostNetwork ? 'The sender' : 'The pod';
}

function isDns(original: FlowTuple, protocol: string): boolean {
  return protocol === 'udp' && (original.dstPort === 53 || original.srcPort === 53);
}

function symptom(protocol: string, original: FlowTuple, context: ExplainContext): string {
  if (isDns(original, protocol))
    return dnsSymptom(original.dstPort === 53 ? 'query' : 'response', context);
  if (protocol === 'tcp') {
    return `${subject(context)} saw a lost connection attempt, delayed by a retransmission (about 1 s).`;
  }
  return `${subject(context)} saw a lost datagram; only the application's own retry recovers it.`;
}

function dnsSymptom(direction: 'query' | 'response', context: ExplainContext): string {
  return direction === 'query'
    ? `${subject(context)} saw no answer: its resolver timed out (typically 5 s) and then retried.`
    : `${subject(context)} never got the answer: its resolver timed out (typically 5 s) and then retried.`;
}

/** Rule evaluation functions of iptables (legacy) and nftables (and iptables-nft). */
function isRuleTable(location: string): boolean {
  return location === 'nft_do_chain' || location === 'ipt_do_table';
}

/** Names may be 253 characters long; the remedies matter more than a name's tail. */
function shortName(name: string): string {
  return name.length <= 63 ? name : `${name.slice(0, 62)}…`;
}

/** Keeps a message within the API limit, cutting on a character boundary. */
export function fitMessage(message: string): string {
  if (Buffer.byteLength(message, 'utf8') <= MAX_MESSAGE_BYTES) return message;
  let cut = message;
  while (Buffer.byteLength(cut, 'utf8') > MAX_MESSAGE_BYTES - 3) cut = cut.slice(0, -1);
  return `${cut}…`;
}
