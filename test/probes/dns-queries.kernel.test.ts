import { readFileSync, writeFileSync } from 'node:fs';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { queryOutcomes } from './counted.js';
import {
  expectLookupCosts,
  expectSeed004Lookups,
  type LookupCheckContext,
} from './lookup-checks.js';
import { queryFrom, settledTally, tallyOf, type QueryTally } from './query-tally.js';
import { labZone } from '../lab/dnsmasq.js';
import { generatorPath } from '../lab/generators.js';
import type { ResolvedName } from '../lab/scenarios/resolver.js';
import { createLab, labAddresses, type Lab, type LabPod } from '../lab/lab.js';
import { runDnsBlocked, type QueryBurst } from '../lab/scenarios/dns-queries.js';

const timeoutMs = 90_000;
// A short period: a query is reported unanswered 2 to 5 s after it was sent.
const GENERATION_SECONDS = 2;

let lab: Lab;
let probe: ProbeRun;

beforeAll(async () => {
  lab = await createLab();
  probe = await startProbe('tracepoint/dns-queries.bt', [String(GENERATION_SECONDS)]);
}, timeoutMs);

afterAll(async () => {
  await probe?.stop();
  await lab?.destroy();
}, timeoutMs);

/** Every query outcome the probe reported so far, read as the agent reads its maps. */
const outcomes = () => queryOutcomes(probe.lines);
const checks: LookupCheckContext = {
  get lab() {
    return lab;
  },
  probeLines: () => probe.lines,
  generationSeconds: GENERATION_SECONDS,
  addressOf: (pod) => pod.ip,
  clusterDns: labAddresses.clusterDns,
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tallyFor = (clientIp: string): QueryTally => tallyOf(outcomes().events, clientIp);
const settle = (clientIp: string, done: (tally: QueryTally) => boolean): Promise<QueryTally> =>
  settledTally(() => tallyFor(clientIp), GENERATION_SECONDS, done);
const query = (netns: string, name: string, count: number): Promise<QueryBurst> =>
  queryFrom(lab, netns, labAddresses.clusterDns, name, count);

describe('tracepoint/dns-queries.bt', () => {
  it(
    'reports exactly the queries the firewall dropped as unanswered, in the pod namespace, and a clean run afterwards adds none',
    async () => {
      const pod = lab.pods[0]!;
      const before = await settle(pod.ip, () => true);
      const blocked = await runDnsBlocked(lab, { queries: 16, from: 'pod' });
      expect(blocked.firewallDrops).toBe(16);
      expect(blocked.answered).toBe(0);
      const afterBlocked = await settle(
        pod.ip,
        (tally) => tally.unanswered - before.unanswered >= blocked.firewallDrops,
      );
      expect(afterBlocked.unanswered - before.unanswered).toBe(blocked.firewallDrops);
      expect(afterBlocked.netns).toEqual(new Set([pod.netnsInode]));
      const unansweredTo = outcomes().events.filter(
        (event) => event.outcome === 'unanswered' && event.tuple.srcIp === pod.ip,
      );
      expect(new Set(unansweredTo.map((event) => event.tuple.dstIp))).toEqual(
        new Set([labAddresses.blockedDns]),
      );

      const clean = await query(pod.netns, 'www.example.test', 12);
      expect(clean).toMatchObject({ sent: 12, answered: 12 });
      const afterClean = await settle(pod.ip, () => false);
      expect(afterClean.unanswered).toBe(afterBlocked.unanswered);
      expect(outcomes().untracked).toBe(0);
    },
    timeoutMs,
  );

  it(
    'counts each answered query once, by its answer class, in the pod that asked',
    async () => {
      const pod = lab.pods[1]!;
      const before = tallyFor(pod.ip);
      const found = await query(pod.netns, 'www.example.test', 9);
      const missing = await query(pod.netns, 'missing.example.test', 5);
      expect(found).toMatchObject({ sent: 9, answered: 9 });
      expect(missing).toMatchObject({ sent: 5, answered: 5 });
      const grown = (tally: QueryTally, answer: string): number =>
        (tally.answered.get(answer) ?? 0) - (before.answered.get(answer) ?? 0);
      const after = await settle(
        pod.ip,
        (tally) => grown(tally, 'NOERROR') >= 9 && grown(tally, 'NXDOMAIN') >= 5,
      );
      expect(grown(after, 'NOERROR')).toBe(9);
      expect(grown(after, 'NXDOMAIN')).toBe(5);
      const classes = [...after.answered.keys()].filter((answer) => grown(after, answer) > 0);
      expect(classes.sort()).toEqual(['NOERROR', 'NXDOMAIN']);
      expect(after.unanswered).toBe(before.unanswered);
      expect(after.netns).toEqual(new Set([pod.netnsInode]));
      // Answered within the lab's own namespaces: well under a second, in a finite bucket.
      const latencies = outcomes()
        .events.filter((event) => event.outcome === 'answered' && event.tuple.srcIp === pod.ip)
        .map((event) => event.latencyBucketSeconds!);
      expect(latencies.length).toBeGreaterThan(0);
      for (const latency of latencies) expect(latency).toBeLessThanOrEqual(0.25);
    },
    timeoutMs,
  );

  it(
    'counts the parallel A/AAAA of a glibc lookup, one per lookup, and none from a glibc pod with options single-request',
    async () => {
      const [parallelPod, singlePod] = [lab.pods[0]!, lab.pods[1]!];
      const binary = await generatorPath('resolve', lab.buildDir);
      const name = 'www.example.test';
      const saved = new Map<string, string>();
      const setResolvConf = (pod: LabPod, options: string): void => {
        const path = `/etc/netns/${pod.netns}/resolv.conf`;
        saved.set(path, readFileSync(path, 'utf8'));
        // No search list: one name, so each lookup is one A and one AAAA question.
        writeFileSync(path, `nameserver ${labAddresses.clusterDns}\n${options}`);
      };
      const lookup = async (pod: LabPod): Promise<ResolvedName> => {
        const { stdout } = await lab.exec(pod.netns, binary, [name]);
        return JSON.parse(stdout.trim()) as ResolvedName;
      };
      const before = { parallel: tallyFor(parallelPod.ip), single: tallyFor(singlePod.ip) };
      const grown = (pod: LabPod, from: QueryTally): number =>
        tallyFor(pod.ip).parallel - from.parallel;
      let lookups = 0;
      try {
        setResolvConf(parallelPod, '');
        setResolvConf(singlePod, 'options single-request\n');
        // Drive lookups from both pods until the first has a parallel query counted for each
        // (the counts are printed once a second), bounded.
        const deadline = Date.now() + 30_000;
        while (
          Date.now() < deadline &&
          (lookups < 3 || grown(parallelPod, before.parallel) < lookups)
        ) {
          if (lookups < 20) {
            expect(await lookup(parallelPod)).toMatchObject({ name, addresses: [labZone[name]] });
            expect(await lookup(singlePod)).toMatchObject({ name, addresses: [labZone[name]] });
            lookups += 1;
          } else {
            await sleep(250);
          }
        }
      } finally {
        for (const [path, text] of saved) writeFileSync(path, text);
      }
      const parallel = await settle(parallelPod.ip, () => true);
      const single = tallyFor(singlePod.ip);
      expect(parallel.parallel - before.parallel.parallel).toBe(lookups);
      expect(single.parallel - before.single.parallel).toBe(0);
      // Both pods' queries were seen and answered: the single-request pod's are not missed.
      const answered = (tally: QueryTally, from: QueryTally): number =>
        [...tally.answered.values()].reduce((sum, n) => sum + n, 0) -
        [...from.answered.values()].reduce((sum, n) => sum + n, 0);
      expect(answered(parallel, before.parallel)).toBe(2 * lookups);
      expect(answered(single, before.single)).toBe(2 * lookups);
      expect(parallel.netns).toEqual(new Set([parallelPod.netnsInode]));
    },
    timeoutMs,
  );

  for (const library of ['glibc', 'musl'] as const) {
    it(
      `counts the queries of each ${library} lookup and how it ended: 8 and NXDOMAIN for a short name found in no search domain (ndots:5, 3 domains, A and AAAA), 2 and answered for an FQDN with a trailing dot`,
      () => expectLookupCosts(checks, library),
      timeoutMs,
    );
  }

  it(
    'prints the NODATA answers of seed 004 with their question: the search-list name, from the musl pod and the glibc pod, and counts the musl lookups as ended on NODATA and the glibc ones as answered',
    () => expectSeed004Lookups(checks),
    timeoutMs,
  );
});
