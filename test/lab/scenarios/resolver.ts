import { setTimeout as sleep } from 'node:timers/promises';
import { readQueryLog, type LoggedQuery } from '../dnsmasq.js';
import { generatorPath, type GeneratorName } from '../generators.js';
import type { Lab } from '../lab.js';

export type ResolverLibrary = 'glibc' | 'musl';

export interface ResolvedName {
  readonly name: string;
  /** How long getaddrinfo took, milliseconds: the stall the application felt. */
  readonly ms: number;
  readonly addresses?: readonly string[];
  readonly error?: string;
}

export interface ResolverRun {
  readonly library: ResolverLibrary;
  readonly results: readonly ResolvedName[];
  /** Every query the DNS backends received during this run, in arrival order per backend. */
  readonly queries: readonly LoggedQuery[];
  /** Per requested name: how many queries its lookup cost (the ndots:5 fan-out). */
  readonly queriesPerName: Readonly<Record<string, number>>;
}

export interface ResolverResult {
  readonly scenario: 'resolver';
  readonly pod: string;
  readonly runs: readonly ResolverRun[];
}

export const defaultResolverNames = ['kubernetes', 'www.example.test'] as const;

function logPositions(lab: Lab): number[] {
  return lab.dnsBackends.map((backend) => readQueryLog(backend).length);
}

async function queriesSince(lab: Lab, positions: readonly number[]): Promise<LoggedQuery[]> {
  // dnsmasq writes its log after answering; wait until the count stops moving.
  let previous = -1;
  let queries: LoggedQuery[] = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    queries = lab.dnsBackends.flatMap((backend, index) =>
      readQueryLog(backend, positions[index] ?? 0),
    );
    if (queries.length === previous) break;
    previous = queries.length;
    await sleep(100);
  }
  return queries;
}

/** The requested name a query was made for: itself or itself plus a search domain. */
function requestedNameOf(query: LoggedQuery, names: readonly string[]): string | undefined {
  return names.find((name) => query.name === name || query.name.startsWith(`${name}.`));
}

async function runWith(
  lab: Lab,
  library: ResolverLibrary,
  podNetns: string,
  names: readonly string[],
): Promise<ResolverRun> {
  const generator: GeneratorName = library === 'glibc' ? 'resolve' : 'resolve-musl';
  const binary = await generatorPath(generator, lab.buildDir);
  const positions = logPositions(lab);
  const { stdout } = await lab.exec(podNetns, binary, [...names]);
  const results = stdout
    .trim()
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as ResolvedName);
  const queries = await queriesSince(lab, positions);
  const queriesPerName: Record<string, number> = {};
  for (const name of names) queriesPerName[name] = 0;
  for (const query of queries) {
    const name = requestedNameOf(query, names);
    if (name !== undefined) queriesPerName[name] = (queriesPerName[name] ?? 0) + 1;
  }
  return { library, results, queries, queriesPerName };
}

/**
 * A real getaddrinfo, from glibc and from musl, inside a pod whose resolv.conf points at the
 * ClusterIP with the Kubernetes search path and ndots:5; reports what the backends received.
 */
export async function runResolver(
  lab: Lab,
  options: { names?: readonly string[]; libraries?: readonly ResolverLibrary[] } = {},
): Promise<ResolverResult> {
  const names = options.names ?? defaultResolverNames;
  const pod = lab.pods[0]!;
  const runs: ResolverRun[] = [];
  for (const library of options.libraries ?? (['glibc', 'musl'] as const)) {
    runs.push(await runWith(lab, library, pod.netns, names));
  }
  return { scenario: 'resolver', pod: pod.netns, runs };
}
