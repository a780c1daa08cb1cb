import { generatorPath } from '../generators.js';
import { counterDelta, type ConntrackStats } from '../kernel-counters.js';
import type { Lab, LabPod } from '../lab.js';
import type { ResolvedName, ResolverLibrary } from './resolver.js';
import { dnsBackendDropRule, withRules, type DnsBackendDropRule } from '../rule-counters.js';

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

/** The comment of a pod's DROP rule (each pod has its own rule and counter). */
const ruleComment = (pod: LabPod): string => `cro-lab: firewalled DNS backend ${pod.netns}`;

/** Each pod's DROP rule's packet counter, by pod namespace. */
async function dropRulePackets(
  pods: readonly LabPod[],
  rules: readonly DnsBackendDropRule[],
): Promise<Map<string, number>> {
  const packets = new Map<string, number>();
  for (const [index, pod] of pods.entries()) packets.set(pod.netns, await rules[index]!.packets());
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
  const rules = pods.map((pod) =>
    dnsBackendDropRule(lab, {
      client: pod.ip,
      backend: backend.address,
      comment: ruleComment(pod),
    }),
  );
  const name = options.name ?? 'www.example.test.';
  const lookupsPerRound = options.lookupsPerRound ?? 4;
  const results = options.resolvers.map((): ResolvedName[] => []);
  // Built before the lookups: parallel builds of one program would share its temporary file.
  for (const resolver of options.resolvers) await resolverBinary(lab, resolver.library);
  return withRules(rules, async () => {
    const before = await lab.nodeConntrackStats();
    let drops = await dropRulePackets(pods, rules);
    for (let round = 0; round < (options.maxRounds ?? 8); round += 1) {
      const rounds = options.resolvers.map((resolver) =>
        Promise.all(Array.from({ length: lookupsPerRound }, () => lookUpIn(lab, resolver, name))),
      );
      for (const [index, lookups] of (await Promise.all(rounds)).entries())
        results[index]!.push(...lookups.flat());
      drops = await dropRulePackets(pods, rules);
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
  });
}
