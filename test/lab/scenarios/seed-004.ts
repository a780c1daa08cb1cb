import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { ResultPromise } from 'execa';
import { labZone, nodataSearchDomain } from '../dnsmasq.js';
import { generatorPath } from '../generators.js';
import { labAddresses, type Lab, type LabPod } from '../lab.js';
import type { ResolvedName, ResolverLibrary } from './resolver.js';

/**
 * Seed 004's case: `ndots:5` and a search list of three domains whose last one's server
 * answers NODATA for the name built from it. A musl lookup stops there and fails; a glibc
 * lookup of the same name goes on and resolves it as an absolute name.
 */
export const seed004 = {
  /** The name the pods look up: it has fewer dots than ndots, so the search list comes first. */
  name: 'www.example.test',
  address: labZone['www.example.test'],
  domain: nodataSearchDomain.domain,
  answeredName: nodataSearchDomain.name,
  search: ['default.svc.cluster.local', 'svc.cluster.local', nodataSearchDomain.domain],
  ndots: 5,
} as const;

/** A long-lived resolver process in a pod, looking the name up again and again. */
export interface LoopingResolver {
  readonly library: ResolverLibrary;
  readonly pod: LabPod;
  /** Every lookup's outcome so far, in order. */
  readonly results: readonly ResolvedName[];
}

export interface Seed004Run {
  readonly musl: LoopingResolver;
  readonly glibc: LoopingResolver;
  /** Stops both resolvers and gives the pods their resolv.conf back. */
  stop(): Promise<void>;
}

/**
 * Starts seed 004 in the lab's first two pods: a musl application in the first, a glibc one in
 * the second, each looking `www.example.test` up every `everyMs` with the seed's resolv.conf,
 * whose nameserver is the IPv4 ClusterIP unless `nameserver` names another (the IPv6 one of a
 * dual-stack lab). The processes live on (as a pod's application does), so a diagnosis can
 * read them.
 */
export async function startSeed004(
  lab: Lab,
  options: { everyMs?: number; nameserver?: string } = {},
): Promise<Seed004Run> {
  const [muslPod, glibcPod] = lab.pods;
  if (!muslPod || !glibcPod) throw new Error('seed 004 needs two lab pods');
  const everyMs = String(options.everyMs ?? 1000);
  const nameserver = options.nameserver ?? labAddresses.clusterDns;
  const resolvConf = `nameserver ${nameserver}\nsearch ${seed004.search.join(' ')}\noptions ndots:${seed004.ndots}\n`;
  const saved = new Map<string, string>();
  const children: ResultPromise[] = [];
  const start = async (library: ResolverLibrary, pod: LabPod): Promise<LoopingResolver> => {
    const path = `/etc/netns/${pod.netns}/resolv.conf`;
    saved.set(path, readFileSync(path, 'utf8'));
    // `ip netns exec` mounts it over /etc/resolv.conf when the process starts.
    writeFileSync(path, resolvConf);
    const binary = await generatorPath(
      library === 'musl' ? 'resolve-musl-dynamic' : 'resolve',
      lab.buildDir,
    );
    const child = lab.spawn(pod.netns, binary, ['--every', everyMs, seed004.name]);
    children.push(child);
    const results: ResolvedName[] = [];
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line.trim().length > 0) results.push(JSON.parse(line) as ResolvedName);
      });
    }
    return { library, pod, results };
  };
  const restore = (): void => {
    for (const [path, text] of saved) writeFileSync(path, text);
  };
  try {
    const musl = await start('musl', muslPod);
    const glibc = await start('glibc', glibcPod);
    return {
      musl,
      glibc,
      stop: async () => {
        for (const child of children) child.kill();
        await Promise.all(children.map((child) => child.catch(() => undefined)));
        restore();
      },
    };
  } catch (error) {
    for (const child of children) child.kill();
    restore();
    throw error;
  }
}
