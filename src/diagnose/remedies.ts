/**
 * Which remedies apply to an event, from the diagnosis of its pod and node. Pure: the Event
 * text and the JSON log line both come from this one list. Every remedy names its source; the
 * full list with explanations is docs/diagnosis.md.
 */
import { dump } from 'js-yaml';
import type {
  ContainerDiagnosis,
  EventDiagnosis,
  NodeDiagnosis,
  PodDiagnosis,
  PodDnsSpec,
} from '../events/diagnosis.js';
import type { Advice, Remedy, RemedyId } from '../events/advice.js';
import type {
  AttributedEvent,
  DnsDropEvent,
  InsertFailureEvent,
  ProbeEvent,
  RaceKind,
} from '../events/types.js';

export const SOURCES = {
  randomFully:
    'iptables-extensions(8) MASQUERADE/SNAT --random-fully; nft(8) masquerade/snat fully-random (NF_NAT_RANGE_PROTO_RANDOM_FULLY, Linux 3.13)',
  resolvConf: 'resolv.conf(5) options single-request, single-request-reopen, use-vc (glibc)',
  podDnsConfig:
    'https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/#pod-dns-config',
  nodeLocalDns: 'https://kubernetes.io/docs/tasks/administer-cluster/nodelocaldns/',
  kernelMatching:
    'Linux 4.19, commit ed07d9a021df "netfilter: nf_conntrack: resolve clash for matching conntracks"',
  kernelNatClash:
    'Linux 5.6, "netfilter: conntrack: allow insertion of clashing entries" (IPS_NAT_CLASH)',
  ndots:
    'resolv.conf(5) ndots; https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/',
  musl: 'https://wiki.musl-libc.org/functional-differences-from-glibc.html#Name-Resolver/DNS',
} as const;

export interface AdviceInput {
  /** The race of an insert failure; undefined for a DNS drop. */
  readonly race?: RaceKind;
  readonly protocol: string;
  readonly dns: boolean;
  /** A DNS datagram dropped by netfilter or lost in a race (not a missing listener). */
  readonly dnsRaceLike: boolean;
}

const KUBE_DNS_HINT = 'kube-dns';

/**
 * The advice stage of the pipeline: the event with its diagnosis (when the diagnosis is wired)
 * and the advice written from it. The one place an event's advice is computed; every sink
 * renders what the event carries. Run again only when a new diagnosis arrives (a held Event).
 */
export function advised(
  base: Omit<AttributedEvent, 'diagnosis' | 'advice'>,
  diagnosis: EventDiagnosis | undefined,
): AttributedEvent {
  const advice = adviceForEvent(base.event, diagnosis, memoizedAdvice);
  // One literal of a fixed shape, not spreads: this runs for every event of a storm.
  const attributed: { -readonly [K in keyof AttributedEvent]: AttributedEvent[K] } = {
    event: base.event,
    attribution: base.attribution,
    wallTimeMs: base.wallTimeMs,
  };
  if (diagnosis) attributed.diagnosis = diagnosis;
  if (advice) attributed.advice = advice;
  return attributed;
}

/**
 * The advice for an event that lost something (a drop, or queries left unanswered): what the
 * Event says and what its log line lists. Undefined for events that lost nothing.
 */
export function adviceForEvent(
  event: InsertFailureEvent | DnsDropEvent,
  diagnosis: EventDiagnosis | undefined,
  write?: typeof adviceFor,
): Advice;
export function adviceForEvent(
  event: ProbeEvent,
  diagnosis: EventDiagnosis | undefined,
  write?: typeof adviceFor,
): Advice | undefined;
export function adviceForEvent(
  event: ProbeEvent,
  diagnosis: EventDiagnosis | undefined,
  write: typeof adviceFor = adviceFor,
): Advice | undefined {
  switch (event.kind) {
    case 'dns_drop': {
      const raceLike = event.reason === 'NETFILTER_DROP' || event.reason === 'NO_SOCKET';
      return write({ protocol: 'udp', dns: true, dnsRaceLike: raceLike }, diagnosis);
    }
    case 'insert_failed': {
      const { original } = event;
      const dns = event.protocol === 'udp' && (original.dstPort === 53 || original.srcPort === 53);
      return write(
        { race: event.race, protocol: event.protocol, dns, dnsRaceLike: true },
        diagnosis,
      );
    }
    case 'dns_query': {
      if (event.outcome !== 'unanswered') return undefined;
      const cause = event.cause ?? 'none';
      return write(
        {
          protocol: 'udp',
          dns: true,
          dnsRaceLike: cause !== 'none',
          race: cause === 'race' ? 'dnat' : undefined,
        },
        diagnosis,
      );
    }
    case 'clash_resolved':
    case 'snat_port_alloc':
      return undefined;
  }
}

/**
 * Advice depends only on the pod's and the node's diagnosis and a few facts of the event, and
 * writing it (remedy texts, YAML patches) costs microseconds: done for every event of a storm
 * it cut the pipeline's throughput to a quarter (docs/benchmarks.md, section 1). So each
 * advice is written once per diagnosis and input, kept while that diagnosis is (a diagnosis
 * read again is a new object, and the old one's advice goes with it). Callers never change it.
 */
const NO_DIAGNOSIS = {};
const adviceCache = new WeakMap<object, WeakMap<object, Map<string, Advice>>>();

function memoizedAdvice(input: AdviceInput, diagnosis: EventDiagnosis | undefined): Advice {
  const podKey: object = diagnosis?.pod ?? NO_DIAGNOSIS;
  const nodeKey: object = diagnosis?.node ?? NO_DIAGNOSIS;
  let byNode = adviceCache.get(podKey);
  if (byNode === undefined) {
    byNode = new WeakMap();
    adviceCache.set(podKey, byNode);
  }
  let byInput = byNode.get(nodeKey);
  if (byInput === undefined) {
    byInput = new Map();
    byNode.set(nodeKey, byInput);
  }
  const key =
    (input.race ?? '-') +
    input.protocol +
    (input.dns ? 'D' : 'd') +
    (input.dnsRaceLike ? 'R' : 'r');
  let advice = byInput.get(key);
  if (advice === undefined) {
    advice = adviceFor(input, diagnosis);
    byInput.set(key, advice);
  }
  return advice;
}

export function adviceFor(input: AdviceInput, diagnosis: EventDiagnosis | undefined): Advice {
  const remedies: Remedy[] = [];
  const notes: string[] = [];
  const pod = diagnosis?.pod.status === 'diagnosed' ? diagnosis.pod : undefined;
  const node = diagnosis?.node.status === 'diagnosed' ? diagnosis.node : undefined;
  const snatSide = input.race === 'snat' || input.race === 'snat_dnat';
  const dnatSide = input.race === 'dnat' || input.race === 'snat_dnat' || input.race === 'none';

  if (snatSide) natAdvice(node, remedies, notes);
  if (input.dns && input.dnsRaceLike) resolverAdvice(pod, node, input.race, remedies, notes);
  if (dnatSide && input.protocol === 'udp') kernelAdvice(node, input.race, remedies, notes);
  if (input.dns && (dnatSide || input.race === undefined)) searchAdvice(pod, remedies);

  if (!pod) {
    const reason = diagnosis?.pod.status === 'unknown' ? diagnosis.pod.reason : 'not diagnosed';
    notes.push(`Diagnosis unknown (${reason}): generic remedies.`);
  }
  return {
    remedies: dedupe(remedies),
    notes,
    summary: summaryOf(pod),
    diagnosed: pod !== undefined,
  };
}

function natAdvice(node: NodeDiagnosis | undefined, remedies: Remedy[], notes: string[]): void {
  const rules = node?.natRules ?? [];
  const lacking = rules.filter((rule) => !rule.randomFully);
  if (node && rules.length > 0 && lacking.length === 0) {
    notes.push(
      `The node's ${rules.length} MASQUERADE/SNAT rule(s) already use --random-fully: ports are drawn at random, which makes this race rare, not impossible.`,
    );
    return;
  }
  remedies.push({
    id: 'random-fully',
    text:
      lacking.length > 0
        ? `--random-fully on the node's ${lacking.length} MASQUERADE/SNAT rule(s) lacking it (CNI or kube-proxy setting)`
        : '--random-fully on the MASQUERADE rule (a CNI or kube-proxy setting)',
    source: SOURCES.randomFully,
  });
}

function resolverAdvice(
  pod: PodDiagnosis | undefined,
  node: NodeDiagnosis | undefined,
  race: RaceKind | undefined,
  remedies: Remedy[],
  notes: string[],
): void {
  if (!pod) {
    remedies.push({
      id: 'single-request-reopen',
      text: 'dnsConfig option single-request-reopen (glibc only; musl/Alpine ignores it)',
      yaml: dnsConfigYaml(undefined),
      source: SOURCES.resolvConf,
    });
    remedies.push({
      id: 'nodelocal-dns',
      text: 'NodeLocal DNSCache',
      source: SOURCES.nodeLocalDns,
    });
    return;
  }
  const resolving = pod.containers.filter((c) => c.resolvConf !== undefined);
  const musl = resolving.filter((c) => c.libc.kind === 'musl');
  const glibcWithout = resolving.filter(
    (c) =>
      c.libc.kind === 'glibc' &&
      !c.resolvConf?.options.singleRequestReopen &&
      !c.resolvConf?.options.singleRequest &&
      !c.resolvConf?.options.useVc,
  );
  const glibcWith = resolving.filter(
    (c) =>
      c.libc.kind === 'glibc' &&
      (c.resolvConf?.options.singleRequestReopen || c.resolvConf?.options.singleRequest),
  );
  if (musl.length > 0) {
    notes.push(
      `${names(musl)}: musl always sends A and AAAA in parallel from one socket and ignores single-request-reopen.`,
    );
    remedies.push({
      id: 'tcp-resolver',
      text: 'a glibc-based image (single-request-reopen and use-vc work there)',
      source: SOURCES.musl,
    });
  }
  if (glibcWithout.length > 0) {
    remedies.push({
      id: 'single-request-reopen',
      text: `single-request-reopen for ${names(glibcWithout)} (glibc): ${flowYaml(pod)}`,
      yaml: dnsConfigYaml(pod),
      source: `${SOURCES.resolvConf}; ${SOURCES.podDnsConfig}`,
    });
  }
  for (const container of glibcWith) {
    const option = container.resolvConf?.options.singleRequestReopen
      ? 'single-request-reopen'
      : 'single-request';
    notes.push(
      `${option} is already set for ${container.name} (glibc): its A and AAAA no longer race each other on one socket; this drop ${race === 'snat' || race === 'snat_dnat' ? "came from another pod's flow taking the same SNAT port at the same instant" : 'came from a race with another flow (another pod, or a retry) through NAT'}.`,
    );
  }
  nodeLocalAdvice(pod, node, remedies, notes);
}

/** Whether the pod already goes through NodeLocal DNSCache, and what to do either way. */
function nodeLocalAdvice(
  pod: PodDiagnosis,
  node: NodeDiagnosis | undefined,
  remedies: Remedy[],
  notes: string[],
): void {
  const usesNodeLocal = pod.containers.some((c) =>
    c.nameservers.some((n) => n.kind === 'nodelocal'),
  );
  if (usesNodeLocal) {
    const address = pod.containers
      .flatMap((c) => c.nameservers)
      .find((n) => n.kind === 'nodelocal')?.address;
    notes.push(`The pod already queries NodeLocal DNSCache (${address ?? '169.254.20.10'}).`);
    remedies.push({
      id: 'nodelocal-upstream-tcp',
      text: "the race is on NodeLocal DNSCache's upstream path: have node-local-dns reach kube-dns over TCP (force_tcp) and check its upstream",
      source: SOURCES.nodeLocalDns,
    });
  } else if (node?.nodeLocalDns.present) {
    remedies.push({
      id: 'nodelocal-dns-use',
      text: `point the pod at the node's NodeLocal DNSCache${node.nodeLocalDns.addresses[0] ? ` (${node.nodeLocalDns.addresses[0]})` : ''}: it runs, but this pod queries ${firstNameserver(pod)}`,
      source: SOURCES.nodeLocalDns,
    });
  } else {
    remedies.push({
      id: 'nodelocal-dns',
      text: 'NodeLocal DNSCache',
      source: SOURCES.nodeLocalDns,
    });
  }
}

function kernelAdvice(
  node: NodeDiagnosis | undefined,
  race: RaceKind | undefined,
  remedies: Remedy[],
  notes: string[],
): void {
  const kernel = node?.kernel;
  if (!kernel) {
    remedies.push({
      id: 'kernel-nat-clash',
      text: 'a kernel with UDP clash resolution (4.19+; 5.6+ when the two packets got different DNAT targets)',
      source: `${SOURCES.kernelMatching}; ${SOURCES.kernelNatClash}`,
    });
    return;
  }
  if (!kernel.resolvesMatchingClashes) {
    remedies.push({
      id: 'kernel-matching-clash',
      text: `kernel 4.19+ (this node runs ${kernel.release}): it resolves clashes of identical entries; 5.6+ also those given different DNAT targets`,
      source: `${SOURCES.kernelMatching}; ${SOURCES.kernelNatClash}`,
    });
  } else if (!kernel.resolvesNatClashes && race !== 'none') {
    remedies.push({
      id: 'kernel-nat-clash',
      text: `kernel 5.6+ (this node runs ${kernel.release}): it lets UDP packets of one flow given different DNAT targets both pass`,
      source: SOURCES.kernelNatClash,
    });
  } else {
    notes.push(
      `Kernel ${kernel.release} resolves same-socket UDP clashes: another flow held this tuple.`,
    );
  }
}

function searchAdvice(pod: PodDiagnosis | undefined, remedies: Remedy[]): void {
  const fanOut = pod?.containers.find(
    (c) => (c.resolvConf?.options.ndots ?? 0) >= 2 && (c.resolvConf?.search.length ?? 0) > 0,
  );
  if (pod && !fanOut) return;
  const detail = fanOut?.resolvConf
    ? ` (ndots:${fanOut.resolvConf.options.ndots}, ${fanOut.resolvConf.search.length} search domains)`
    : '';
  const muslNote = fanOut?.libc.kind === 'musl' ? ' (musl stops at a NODATA answer)' : '';
  remedies.push({
    id: 'fewer-search-lookups',
    text: `fewer lookups${detail}: FQDNs with a trailing dot or ndots:2${muslNote}`,
    yaml: toYaml({ spec: { dnsConfig: { options: [{ name: 'ndots', value: '2' }] } } }),
    source: SOURCES.ndots,
  });
}

type DnsOption = { readonly name: string; readonly value?: string };

// The option names and values come from the pod's spec as the API server returned it: any
// string. A YAML library quotes whatever needs quoting (a leading `*`, a `: `, a `#`), so the
// fragment pasted back into a manifest means what the spec said.
const YAML_STYLE = { quotingType: '"', lineWidth: -1 } as const;

/** Block YAML, e.g. `spec:\n  dnsConfig:\n    options:\n      - name: ndots\n        value: "2"\n`. */
function toYaml(value: object): string {
  return dump(value, YAML_STYLE);
}

/** The pod's dnsConfig options with single-request-reopen added. */
function withSingleRequestReopen(pod: PodDiagnosis | undefined): DnsOption[] {
  return withSingleRequestReopenIn(pod?.spec);
}

function withSingleRequestReopenIn(spec: PodDnsSpec | undefined): DnsOption[] {
  return [...existingOptions(spec), { name: 'single-request-reopen' }].map((option) =>
    option.value === undefined ? { name: option.name } : { name: option.name, value: option.value },
  );
}

/** The pod's dnsConfig options with single-request-reopen added, as block YAML. */
function dnsConfigYaml(pod: PodDiagnosis | undefined): string {
  return toYaml({ spec: { dnsConfig: { options: withSingleRequestReopen(pod) } } });
}

/** The same as one line of flow YAML for the Event text: `dnsConfig: {options: [...]}`. */
function flowYaml(pod: PodDiagnosis): string {
  const options = withSingleRequestReopen(pod);
  return dump({ dnsConfig: { options } }, { ...YAML_STYLE, flowLevel: 1 }).trimEnd();
}

/**
 * The pod spec fragment adding single-request-reopen to a spec's dnsConfig options, keeping the
 * others: the options list has no merge key, so a patch replaces it whole.
 */
export function singleRequestReopenYaml(spec: PodDnsSpec | undefined): string {
  return toYaml({ spec: { dnsConfig: { options: withSingleRequestReopenIn(spec) } } });
}

function existingOptions(spec: PodDnsSpec | undefined): readonly DnsOption[] {
  return (spec?.dnsConfig?.options ?? []).filter((o) => o.name !== 'single-request-reopen');
}

function names(containers: readonly ContainerDiagnosis[]): string {
  return containers.map((c) => c.name).join(', ');
}

function firstNameserver(pod: PodDiagnosis): string {
  const first = pod.containers.flatMap((c) => c.nameservers)[0];
  return first
    ? `${first.address}${first.kind === 'cluster-dns' ? ` (${KUBE_DNS_HINT})` : ''}`
    : 'another server';
}

function dedupe(remedies: readonly Remedy[]): Remedy[] {
  const seen = new Set<RemedyId>();
  return remedies.filter((remedy) => (seen.has(remedy.id) ? false : (seen.add(remedy.id), true)));
}

/** e.g. "musl 1.2.4; nameserver 10.96.0.10 (cluster-dns); ndots:5; search 3" per container. */
export function summaryOf(pod: PodDiagnosis | undefined): string {
  if (!pod) return 'diagnosis: unknown';
  const parts = pod.containers.map((c) => {
    const libc = `${c.libc.kind}${c.libc.version ? ` ${c.libc.version}` : ''}`;
    const conf = c.resolvConf;
    if (!conf) return `${c.name}: ${libc}, no resolv.conf`;
    const flags = [
      `ndots:${conf.options.ndots}`,
      conf.options.singleRequestReopen ? 'single-request-reopen' : '',
      conf.options.singleRequest ? 'single-request' : '',
      conf.options.useVc ? 'use-vc' : '',
    ].filter((f) => f !== '');
    const servers = c.nameservers.map((n) => `${n.address} (${n.kind})`).join(', ');
    return `${c.name}: ${libc}, ns ${servers || 'none'}, ${flags.join(', ')}`;
  });
  return `diagnosis: ${parts.join('; ')}`;
}
