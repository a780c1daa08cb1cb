import { generatorPath } from '../generators.js';
import { counterDelta, type ConntrackStats } from '../kernel-counters.js';
import type { Lab, LabPod } from '../lab.js';
import type { ResolvedName, ResolverLibrary } from './resolver.js';
import { rulePackets } from '../rule-counters.js';

export interface FirewalledResolver {
  readonly library: ResolverLibrary;
  readonly pod: LabPod;
}

export interface FirewalledResolversOptions {
  /** One resolver program per pod, each pod in its own rule (the rules count per pod). */
  readonly resolvers: readonly FirewalledResolver[];
  /** Rounds stop once every pod's rule dropped at least this many of its queries. */
  readonly dropsPerPod: number;
  /** Lookups run at once in each pod per round, each its own process (its own socket). */
  readonly lookupsPerRound?: number;
  /** Bound on the rounds: the ClusterIP picks a backend at random for each new flow. */
  readonly maxRounds?: number;
  /** Index of the firewalled backend in `lab.dnsBackends`. */
  readonly backend?: number;
  /** The name looked up; absolute, so no search domain adds queries (and stalls) of its own. */
  readonly name?: string;
}

export interface FirewalledResolverRun extends FirewalledResolver {
  /** Every lookup's outcome, as the resolver program reported it (duration included). */
  readonly results: readonly ResolvedName[];
  /** Queries of this pod the DROP rule matched (its packet counter). */
  readonly firewallDrops: number;
}

export interface FirewalledResolversRun {
  readonly scenario: 'resolvers-firewalled';
  /** The address of the firewalled backend. */
  readonly backend: string;
  readonly runs: readonly FirewalledResolverRun[];
  readonly kernel: ConntrackStats;
}

const RULE_COMMENT = 'cro-lab: firewalled DNS backend';

function dropRule(pod: LabPod, backend: string): string[] {
  return [
    'FORWARD',
    '-s',
    pod.ip,
    '-d',
    backend,
    '-p',
    'udp',
    '--dport',
    '53',
    '-m',
    'comment',
    '--comment',
    `${RULE_COMMENT} ${pod.netns}`,
    '-j',
    'DROP',
  ];
}

/** Each pod's DROP rule's packet counter, by pod namespace. */
async function dropRulePackets(lab: Lab, pods: readonly LabPod[]): Promise<Map<string, number>> {
  const packets = new Map<string, number>();
  for (const pod of pods) {
    const packetsOfPod = await rulePackets(lab, {
      chain: 'FORWARD',
      // The comment ends the line: "… /* cro-lab: firewalled DNS backend <netns> */".
      matches: (line) => line.includes(`${RULE_COMMENT} ${pod.netns} */`),
      what: `the DROP rule of ${pod.netns}`,
    });
    packets.set(pod.netns, packetsOfPod);
  }
  return packets;
}

const resolverBinary = (lab: Lab, library: ResolverLibrary): Promise<string> =>
  generatorPath(library === 'musl' ? 'resolve-musl' : 'resolve', lab.buildDir);

/** One getaddrinfo of `name` by the resolver program of `resolver.library` in its pod. */
export async function lookUpIn(
  lab: Lab,
  resolver: FirewalledResolver,
  name: string,
): Promise<ResolvedName[]> {
  const binary = await resolverBinary(lab, resolver.library);
  const { stdout } = await lab.exec(resolver.pod.netns, binary, [name]);
  return stdout
    .trim()
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as ResolvedName);
}

/**
 * One DNS backend behind the ClusterIP firewalled: a DROP rule per pod in the node's FORWARD
 * chain (after DNAT, so it matches that backend alone), and real getaddrinfo lookups (glibc or
 * musl, the pod's resolv.conf) through the ClusterIP, rounds of them at once in every pod,
 * until each pod's rule dropped `dropsPerPod` of its queries (bounded). A dropped query leaves
 * its conntrack entry unconfirmed, so the resolver's retry is DNATed afresh, at random. The
 * rules are removed before this returns.
 */
export async function runResolversFirewalled(
  lab: Lab,
  options: FirewalledResolversOptions,
): Promise<FirewalledResolversRun> {
  const backend = lab.dnsBackends[options.backend ?? 0];
  if (backend === undefined) throw new Error(`no DNS backend ${options.backend ?? 0} in the lab`);
  const pods = options.resolvers.map((resolver) => resolver.pod);
  const rules = pods.map((pod) => dropRule(pod, backend.address));
  const name = options.name ?? 'www.example.test.';
  const lookupsPerRound = options.lookupsPerRound ?? 4;
  const results = options.resolvers.map((): ResolvedName[] => []);
  const inserted: string[][] = [];
  // Built before the lookups: parallel builds of one program would share its temporary file.
  for (const resolver of options.resolvers) await resolverBinary(lab, resolver.library);
  try {
    for (const rule of rules) {
      await lab.exec(lab.node.netns, 'iptables', ['-I', ...rule]);
      inserted.push(rule);
    }
    const before = await lab.nodeConntrackStats();
    let drops = await dropRulePackets(lab, pods);
    for (let round = 0; round < (options.maxRounds ?? 8); round += 1) {
      const rounds = options.resolvers.map((resolver) =>
        Promise.all(Array.from({ length: lookupsPerRound }, () => lookUpIn(lab, resolver, name))),
      );
      for (const [index, lookups] of (await Promise.all(rounds)).entries())
        results[index]!.push(...lookups.flat());
      drops = await dropRulePackets(lab, pods);
      if (pods.every((pod) => (drops.get(pod.netns) ?? 0) >= options.dropsPerPod)) break;
    }
    const after = await lab.nodeConntrackStats();
    // One line per drive, as the races print theirs: what each pod's resolver went through.
    const figures = options.resolvers.map((resolver, index) => {
      const durations = results[index]!.map((result) => result.ms);
      return `${resolver.library} ${drops.get(resolver.pod.netns) ?? 0} dropped, ${durations.length} lookups, ms ${durations.join(' ')}`;
    });
    console.log(`resolvers-firewalled: ${figures.join('; ')}`);
    return {
      scenario: 'resolvers-firewalled',
      backend: backend.address,
      runs: options.resolvers.map((resolver, index) => ({
        ...resolver,
        results: results[index]!,
        firewallDrops: drops.get(resolver.pod.netns) ?? 0,
      })),
      kernel: counterDelta(before, after),
    };
  } finally {
    for (const rule of inserted) await lab.exec(lab.node.netns, 'iptables', ['-D', ...rule]);
  }
}
