import { readFileSync, writeFileSync } from 'node:fs';
import { createLineDecoder } from '../../src/decode/decode.js';
import type { DnsNoDataEvent } from '../../src/events/types.js';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { queryOutcomes } from './counted.js';
import { grownIn, queryFrom, settledTally, tallyOf, type QueryTally } from './query-tally.js';
import { labZone } from '../lab/dnsmasq.js';
import { generatorPath } from '../lab/generators.js';
import type { ResolvedName } from '../lab/scenarios/resolver.js';
import { createLab, labAddresses, podSearchPath, type Lab, type LabPod } from '../lab/lab.js';
import { seed004, startSeed004 } from '../lab/scenarios/seed-004.js';
import { runDnsBlocked, type QueryBurst } from '../lab/scenarios/dns-queries.js';

const decode = createLineDecoder('tracepoint/dns-queries', (code) => `UNKNOWN_${code}`);
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
      async () => {
        // The lab's pods: nameserver the ClusterIP, 3 search domains, ndots:5.
        expect(podSearchPath).toHaveLength(3);
        const [shortPod, fqdnPod] = [lab.pods[0]!, lab.pods[1]!];
        const shortName = 'missing.example.test';
        const fqdn = 'www.example.test.';
        const binary = await generatorPath(
          library === 'glibc' ? 'resolve' : 'resolve-musl',
          lab.buildDir,
        );
        // Lookups of earlier tests end after a quiet period: let them be counted first.
        await sleep(2 * (GENERATION_SECONDS + 1) * 1000 + 500);
        const before = { short: tallyFor(shortPod.ip), fqdn: tallyFor(fqdnPod.ip) };
        const lookupsOf = (tally: QueryTally, from: QueryTally): Map<number, number> =>
          grownIn(tally.lookups, from.lookups);
        const total = (lookups: Map<number, number>): number =>
          [...lookups.values()].reduce((sum, n) => sum + n, 0);
        // Three lookups a process: the next lookup of the same thread ends one in the kernel,
        // a quiet period the last. Driven until each pod has 6 counted, bounded.
        let driven = 0;
        const deadline = Date.now() + 40_000;
        while (
          Date.now() < deadline &&
          (driven < 6 ||
            total(lookupsOf(tallyFor(shortPod.ip), before.short)) < driven ||
            total(lookupsOf(tallyFor(fqdnPod.ip), before.fqdn)) < driven)
        ) {
          if (driven < 6) {
            const short = await lab.exec(shortPod.netns, binary, [shortName, shortName, shortName]);
            for (const line of short.stdout.trim().split('\n'))
              expect(JSON.parse(line)).toMatchObject({
                name: shortName,
                error: expect.any(String),
              });
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
        const shortTally = await settle(shortPod.ip, () => true);
        const fqdnTally = tallyFor(fqdnPod.ip);
        expect(lookupsOf(shortTally, before.short)).toEqual(new Map([[8, driven]]));
        expect(lookupsOf(fqdnTally, before.fqdn)).toEqual(new Map([[2, driven]]));
        expect(grownIn(shortTally.ends, before.short.ends)).toEqual(
          new Map([['nxdomain', driven]]),
        );
        expect(grownIn(fqdnTally.ends, before.fqdn.ends)).toEqual(new Map([['answered', driven]]));
      },
      timeoutMs,
    );
  }

  it(
    'prints the NODATA answers of seed 004 with their question: the search-list name, from the musl pod and the glibc pod, and counts the musl lookups as ended on NODATA and the glibc ones as answered',
    async () => {
      // Lookups of earlier tests end after a quiet period: let them be counted first.
      await sleep(2 * (GENERATION_SECONDS + 1) * 1000 + 500);
      const before = { musl: tallyFor(lab.pods[0]!.ip), glibc: tallyFor(lab.pods[1]!.ip) };
      const run = await startSeed004(lab, { everyMs: 500 });
      const nodata = (): DnsNoDataEvent[] =>
        probe.lines.flatMap((line) => {
          const decoded = decode(line);
          return decoded.type === 'event' && decoded.event.kind === 'dns_nodata'
            ? [decoded.event]
            : [];
        });
      const fromPod = (pod: LabPod) =>
        nodata().filter(
          (event) =>
            event.netnsInode === pod.netnsInode &&
            event.tuple.srcIp === pod.ip &&
            event.name === seed004.answeredName &&
            event.qtype === 'A',
        );
      const ended = (pod: LabPod, from: QueryTally): number =>
        [...grownIn(tallyFor(pod.ip).ends, from.ends).values()].reduce((sum, n) => sum + n, 0);
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
        run.musl.pod.ip,
        (tally) =>
          [...grownIn(tally.ends, before.musl.ends).values()].reduce((sum, n) => sum + n, 0) >=
          run.musl.results.length,
      );
      const glibc = await settle(run.glibc.pod.ip, () => true);
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
      expect(fromPod(run.musl.pod)[0]!.tuple.dstIp).toBe(labAddresses.clusterDns);
      // Every NODATA record's message held a question the codec read.
      const rejected = probe.lines
        .map((line) => decode(line))
        .filter((decoded) => decoded.type === 'rejected');
      expect(rejected).toEqual([]);
      // What the pods felt: musl stopped at the NODATA answer, glibc went on.
      expect(run.musl.results.length).toBeGreaterThan(0);
      for (const result of run.musl.results) expect(result.error).toBe('Name does not resolve');
      expect(run.glibc.results.length).toBeGreaterThan(0);
      for (const result of run.glibc.results) expect(result.addresses).toEqual([seed004.address]);
    },
    timeoutMs,
  );
});
