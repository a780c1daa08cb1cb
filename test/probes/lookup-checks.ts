/**
 * The DNS query probe's lookup checks, for either address family: the same lookups from the
 * same lab pods, the pods' nameserver and addresses of the family under test.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createLineDecoder } from '../../src/decode/decode.js';
import type { DnsNoDataEvent } from '../../src/events/types.js';
import { labZone } from '../lab/dnsmasq.js';
import { generatorPath } from '../lab/generators.js';
import { podSearchPath, type Lab, type LabPod } from '../lab/lab.js';
import type { ResolverLibrary } from '../lab/scenarios/resolver.js';
import { seed004, startSeed004 } from '../lab/scenarios/seed-004.js';
import { queryOutcomes } from './counted.js';
import { grownIn, settledTally, sumOfCounts, tallyOf, type QueryTally } from './query-tally.js';

export interface LookupCheckContext {
  readonly lab: Lab;
  /** Every line the probe printed so far. */
  readonly probeLines: () => readonly string[];
  readonly generationSeconds: number;
  /** The pod's address of the family under test. */
  readonly addressOf: (pod: LabPod) => string;
  /** The kube-dns ClusterIP of that family: the pods' nameserver. */
  readonly clusterDns: string;
}

const decode = createLineDecoder('tracepoint/dns-queries', (code) => `UNKNOWN_${code}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function tallies(ctx: LookupCheckContext) {
  const tallyFor = (pod: LabPod): QueryTally =>
    tallyOf(queryOutcomes(ctx.probeLines()).events, ctx.addressOf(pod));
  return {
    tallyFor,
    settle: (pod: LabPod, done: (tally: QueryTally) => boolean) =>
      settledTally(() => tallyFor(pod), ctx.generationSeconds, done),
    /** Lookups of earlier tests end after a quiet period: lets them be counted first. */
    quiet: () => sleep(2 * (ctx.generationSeconds + 1) * 1000 + 500),
  };
}

/** Runs `body` with the pods' resolv.conf naming the context's ClusterIP; restores it after. */
async function withNameserver<T>(
  ctx: LookupCheckContext,
  pods: readonly LabPod[],
  body: () => Promise<T>,
): Promise<T> {
  const paths = pods.map((pod) => `/etc/netns/${pod.netns}/resolv.conf`);
  const saved = paths.map((path) => readFileSync(path, 'utf8'));
  try {
    for (const path of paths)
      writeFileSync(
        path,
        `nameserver ${ctx.clusterDns}\nsearch ${podSearchPath.join(' ')}\noptions ndots:5\n`,
      );
    return await body();
  } finally {
    paths.forEach((path, i) => writeFileSync(path, saved[i]!));
  }
}

/**
 * The queries each lookup cost and how it ended, from the lab's first two pods (ndots:5, 3
 * search domains): a short name found in no search domain costs exactly 8 (A and AAAA for each
 * of the 4 names) and ends NXDOMAIN; an FQDN with a trailing dot costs exactly 2, answered.
 */
export async function expectLookupCosts(
  ctx: LookupCheckContext,
  library: ResolverLibrary,
): Promise<void> {
  const { lab } = ctx;
  const { tallyFor, settle, quiet } = tallies(ctx);
  expect(podSearchPath).toHaveLength(3);
  const [shortPod, fqdnPod] = [lab.pods[0]!, lab.pods[1]!];
  const shortName = 'missing.example.test';
  const fqdn = 'www.example.test.';
  const binary = await generatorPath(
    library === 'glibc' ? 'resolve' : 'resolve-musl',
    lab.buildDir,
  );
  await quiet();
  const before = { short: tallyFor(shortPod), fqdn: tallyFor(fqdnPod) };
  const lookupsOf = (tally: QueryTally, from: QueryTally): Map<number, number> =>
    grownIn(tally.lookups, from.lookups);
  let driven = 0;
  await withNameserver(ctx, [shortPod, fqdnPod], async () => {
    // Three lookups a process: the next lookup of the same thread ends one in the kernel, a
    // quiet period the last. Driven until each pod has 6 counted, bounded.
    const deadline = Date.now() + 40_000;
    while (
      Date.now() < deadline &&
      (driven < 6 ||
        sumOfCounts(lookupsOf(tallyFor(shortPod), before.short)) < driven ||
        sumOfCounts(lookupsOf(tallyFor(fqdnPod), before.fqdn)) < driven)
    ) {
      if (driven < 6) {
        const short = await lab.exec(shortPod.netns, binary, [shortName, shortName, shortName]);
        for (const line of short.stdout.trim().split('\n'))
          expect(JSON.parse(line)).toMatchObject({ name: shortName, error: expect.any(String) });
        const full = await lab.exec(fqdnPod.netns, binary, [fqdn, fqdn, fqdn]);
        for (const line of full.stdout.trim().split('\n'))
          expect(JSON.parse(line)).toMatchObject({
            name: fqdn,
            addresses: [labZone['www.example.test']],
          });
        driven += 3;
      } else {
        await sleep(250);
      }
    }
  });
  const shortTally = await settle(shortPod, () => true);
  const fqdnTally = tallyFor(fqdnPod);
  expect(lookupsOf(shortTally, before.short)).toEqual(new Map([[8, driven]]));
  expect(lookupsOf(fqdnTally, before.fqdn)).toEqual(new Map([[2, driven]]));
  expect(grownIn(shortTally.ends, before.short.ends)).toEqual(new Map([['nxdomain', driven]]));
  // The AAAA question of www.example.test gets NODATA (an A record only): answered still.
  expect(grownIn(fqdnTally.ends, before.fqdn.ends)).toEqual(new Map([['answered', driven]]));
  expect(shortTally.netns).toEqual(new Set([shortPod.netnsInode]));
  expect(fqdnTally.netns).toEqual(new Set([fqdnPod.netnsInode]));
}

/**
 * Seed 004 (a search domain whose server answers NODATA): the NODATA answers printed with their
 * question, the search-list name, from the musl pod and the glibc pod, as the pod asked them
 * (its address, the ClusterIP); the musl lookups counted as ended on NODATA, the glibc ones as
 * answered; and what the resolvers felt: musl stopped there, glibc went on.
 */
export async function expectSeed004Lookups(ctx: LookupCheckContext): Promise<void> {
  const { lab } = ctx;
  const { tallyFor, settle, quiet } = tallies(ctx);
  await quiet();
  const before = { musl: tallyFor(lab.pods[0]!), glibc: tallyFor(lab.pods[1]!) };
  const run = await startSeed004(lab, { everyMs: 500, nameserver: ctx.clusterDns });
  const nodata = (): DnsNoDataEvent[] =>
    ctx.probeLines().flatMap((line) => {
      const decoded = decode(line);
      return decoded.type === 'event' && decoded.event.kind === 'dns_nodata' ? [decoded.event] : [];
    });
  const fromPod = (pod: LabPod) =>
    nodata().filter(
      (event) =>
        event.netnsInode === pod.netnsInode &&
        event.tuple.srcIp === ctx.addressOf(pod) &&
        event.name === seed004.answeredName &&
        event.qtype === 'A',
    );
  const ended = (pod: LabPod, from: QueryTally): number =>
    sumOfCounts(grownIn(tallyFor(pod).ends, from.ends));
  try {
    // Until both pods have NODATA examples and a few lookups counted, bounded.
    const deadline = Date.now() + 20_000;
    while (
      (fromPod(run.musl.pod).length === 0 ||
        fromPod(run.glibc.pod).length === 0 ||
        ended(run.musl.pod, before.musl) < 3 ||
        ended(run.glibc.pod, before.glibc) < 3) &&
      Date.now() < deadline
    ) {
      await sleep(250);
    }
  } finally {
    await run.stop();
  }
  // Every lookup each process made, the last ended by the quiet period after it stopped.
  const musl = await settle(
    run.musl.pod,
    (tally) => sumOfCounts(grownIn(tally.ends, before.musl.ends)) >= run.musl.results.length,
  );
  const glibc = await settle(run.glibc.pod, () => true);
  // A lookup the stop cut short has no result line: one more may be counted.
  const counted = (tally: QueryTally, from: QueryTally, end: string, results: number): void => {
    const ends = grownIn(tally.ends, from.ends);
    expect([...ends.keys()]).toEqual([end]);
    expect(ends.get(end)).toBeGreaterThanOrEqual(results);
    expect(ends.get(end)).toBeLessThanOrEqual(results + 1);
  };
  counted(musl, before.musl, 'nodata', run.musl.results.length);
  counted(glibc, before.glibc, 'answered', run.glibc.results.length);
  expect(fromPod(run.musl.pod).length).toBeGreaterThan(0);
  expect(fromPod(run.glibc.pod).length).toBeGreaterThan(0);
  // Seen in the pod before DNAT: the server is the ClusterIP the pod asked.
  for (const event of [...fromPod(run.musl.pod), ...fromPod(run.glibc.pod)])
    expect(event.tuple.dstIp).toBe(ctx.clusterDns);
  // Every NODATA record's message held a question the codec read.
  const rejected = ctx
    .probeLines()
    .map((line) => decode(line))
    .filter((decoded) => decoded.type === 'rejected');
  expect(rejected).toEqual([]);
  // What the pods felt: musl stopped at the NODATA answer, glibc went on.
  expect(run.musl.results.length).toBeGreaterThan(0);
  for (const result of run.musl.results) expect(result.error).toBe('Name does not resolve');
  expect(run.glibc.results.length).toBeGreaterThan(0);
  for (const result of run.glibc.results) expect(result.addresses).toEqual([seed004.address]);
}
