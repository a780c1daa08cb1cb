import { createLineDecoder } from '../../src/decode/decode.js';
import type { DnsNoDataEvent } from '../../src/events/types.js';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { queryOutcomes } from './counted.js';
import {
  grownIn,
  queryFrom,
  settledTally,
  sumOfCounts,
  tallyOf,
  type QueryTally,
} from './query-tally.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { labZone } from '../lab/dnsmasq.js';
import { generatorPath } from '../lab/generators.js';
import type { ResolvedName } from '../lab/scenarios/resolver.js';
import { createLab, labAddresses6, podSearchPath, type Lab, type LabPod } from '../lab/lab.js';
import { dnsBackendDropRule, withRules } from '../lab/rule-counters.js';
import { sendQueries, type QueryBurst } from '../lab/scenarios/dns-queries.js';
import { seed004, startSeed004 } from '../lab/scenarios/seed-004.js';

// IPv6 queries from a dual-stack lab pod to the IPv6 ClusterIP (DNATed at random to two IPv6
// dnsmasq backends), matched by the probe in the pod's namespace. Oracles: the query program's
// own count of answers, and an ip6tables DROP rule's packet counter.
const timeoutMs = 120_000;
// A short period: a query is reported unanswered 2 to 5 s after it was sent.
const GENERATION_SECONDS = 2;
const RULE_COMMENT = 'cro-lab: firewalled IPv6 DNS backend';
const decode = createLineDecoder('tracepoint/dns-queries', (code) => `UNKNOWN_${code}`);

let lab: Lab;
let probe: ProbeRun;

beforeAll(async () => {
  lab = await createLab({ dualStack: true });
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
/** `count` queries for `name` from the pod to the IPv6 ClusterIP, each from its own socket. */
const query = (pod: LabPod, name: string, count: number): Promise<QueryBurst> =>
  queryFrom(lab, pod.netns, labAddresses6.clusterDns, name, count);

const ip6Of = (pod: LabPod): string => {
  if (pod.ip6 === undefined) throw new Error(`${pod.netns} has no IPv6 address`);
  return pod.ip6;
};

/** Queries from the pod until both IPv6 backends answer (the lab waits for the IPv4 ones only). */
async function untilAnswering(pod: LabPod): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const burst = await sendQueries(lab, pod.netns, labAddresses6.clusterDns, 8, 1000);
    if (burst.answered === burst.sent && burst.sent === 8) return;
    if (Date.now() > deadline)
      throw new Error(`IPv6 DNS backends not answering: ${JSON.stringify(burst)}`);
  }
}

describe('tracepoint/dns-queries.bt, IPv6 clients', () => {
  it(
    'counts each IPv6 query to the IPv6 ClusterIP answered once, by its answer class, in the pod that asked, under its IPv6 address',
    async () => {
      const pod = lab.pods[1]!;
      const client = ip6Of(pod);
      await untilAnswering(pod);
      const before = await settle(client, () => true);
      const found = await query(pod, 'www.example.test', 9);
      const missing = await query(pod, 'missing.example.test', 5);
      expect(found).toMatchObject({ sent: 9, answered: 9 });
      expect(missing).toMatchObject({ sent: 5, answered: 5 });
      const grown = (tally: QueryTally, answer: string): number =>
        (tally.answered.get(answer) ?? 0) - (before.answered.get(answer) ?? 0);
      const after = await settle(
        client,
        (tally) => grown(tally, 'NOERROR') >= 9 && grown(tally, 'NXDOMAIN') >= 5,
      );
      expect(grown(after, 'NOERROR')).toBe(9);
      expect(grown(after, 'NXDOMAIN')).toBe(5);
      expect(after.answeredTotal - before.answeredTotal).toBe(14);
      expect(after.unanswered).toBe(before.unanswered);
      expect(after.netns).toEqual(new Set([pod.netnsInode]));
      // Answered within the lab's own namespaces: well under a second, in a finite bucket.
      const latencies = outcomes()
        .events.filter((event) => event.outcome === 'answered' && event.tuple.srcIp === client)
        .map((event) => event.latencyBucketSeconds!);
      expect(latencies.length).toBeGreaterThan(0);
      for (const latency of latencies) expect(latency).toBeLessThanOrEqual(0.25);
      expect(outcomes().untracked).toBe(0);
    },
    timeoutMs,
  );

  it(
    'reports exactly the IPv6 queries an ip6tables rule dropped at one backend as unanswered, to the ClusterIP the pod asked, counts the rest answered, and a clean run afterwards adds none',
    async () => {
      const pod = lab.pods[0]!;
      const client = ip6Of(pod);
      const backend = labAddresses6.dnsBackends[0];
      await untilAnswering(pod);
      const before = await settle(client, () => true);
      const rule = dnsBackendDropRule(lab, {
        client,
        backend,
        family: 'ipv6',
        comment: RULE_COMMENT,
      });
      let sent = 0;
      let answered = 0;
      let drops = 0;
      await withRules([rule], async () => {
        // The ClusterIP picks a backend at random per flow (the rule matches one backend's
        // share, after DNAT): rounds until the rule dropped a few, bounded.
        for (let round = 0; round < 10 && drops < 6; round += 1) {
          const burst = await sendQueries(lab, pod.netns, labAddresses6.clusterDns, 8, 300);
          sent += burst.sent;
          answered += burst.answered;
          drops = await rule.packets();
        }
      });
      expect(drops).toBeGreaterThanOrEqual(6);
      // Every query either dropped by the rule or answered by the other backend.
      expect(answered).toBe(sent - drops);
      const afterBlocked = await settle(
        client,
        (tally) => tally.unanswered - before.unanswered >= drops,
      );
      expect(afterBlocked.unanswered - before.unanswered).toBe(drops);
      expect(afterBlocked.answeredTotal - before.answeredTotal).toBe(answered);
      expect(afterBlocked.netns).toEqual(new Set([pod.netnsInode]));
      // Seen before DNAT, in the pod: the server is the ClusterIP the pod asked.
      const newTo = [...afterBlocked.unansweredTo].filter(
        ([server, count]) => count > (before.unansweredTo.get(server) ?? 0),
      );
      expect(newTo.map(([server]) => server)).toEqual([labAddresses6.clusterDns]);

      const clean = await query(pod, 'www.example.test', 12);
      expect(clean).toMatchObject({ sent: 12, answered: 12 });
      const afterClean = await settle(client, () => false);
      expect(afterClean.unanswered).toBe(afterBlocked.unanswered);
      expect(afterClean.answeredTotal - afterBlocked.answeredTotal).toBe(12);
      expect(outcomes().untracked).toBe(0);
    },
    timeoutMs,
  );
  it(
    'counts the parallel A/AAAA of a glibc lookup over IPv6, one per lookup, under the pod IPv6 address',
    async () => {
      const pod = lab.pods[1]!;
      const client = ip6Of(pod);
      const binary = await generatorPath('resolve', lab.buildDir);
      const name = 'www.example.test';
      await untilAnswering(pod);
      const path = `/etc/netns/${pod.netns}/resolv.conf`;
      const saved = readFileSync(path, 'utf8');
      const before = await settle(client, () => true);
      const grown = (): number => tallyFor(client).parallel - before.parallel;
      let lookups = 0;
      try {
        // The IPv6 ClusterIP as the only nameserver, no search list: one A and one AAAA each.
        writeFileSync(path, `nameserver ${labAddresses6.clusterDns}\n`);
        // Lookups until each has its parallel query counted (printed once a second), bounded.
        const deadline = Date.now() + 30_000;
        while (Date.now() < deadline && (lookups < 3 || grown() < lookups)) {
          if (lookups < 20) {
            const { stdout } = await lab.exec(pod.netns, binary, [name]);
            expect(JSON.parse(stdout.trim()) as ResolvedName).toMatchObject({
              name,
              addresses: [labZone[name]],
            });
            lookups += 1;
          } else {
            await sleep(250);
          }
        }
      } finally {
        writeFileSync(path, saved);
      }
      const after = await settle(client, () => true);
      expect(after.parallel - before.parallel).toBe(lookups);
      // Both questions of each lookup answered, over IPv6, in the pod's namespace.
      expect(after.answeredTotal - before.answeredTotal).toBe(2 * lookups);
      expect(after.unanswered).toBe(before.unanswered);
      expect(after.netns).toEqual(new Set([pod.netnsInode]));
    },
    timeoutMs,
  );

  it(
    'counts the queries of each glibc lookup over IPv6 and how it ended: 8 and NXDOMAIN for a short name found in no search domain (ndots:5, 3 domains, A and AAAA), 2 and answered for an FQDN with a trailing dot',
    async () => {
      expect(podSearchPath).toHaveLength(3);
      const [shortPod, fqdnPod] = [lab.pods[0]!, lab.pods[1]!];
      const [shortIp, fqdnIp] = [ip6Of(shortPod), ip6Of(fqdnPod)];
      const shortName = 'missing.example.test';
      const fqdn = 'www.example.test.';
      const binary = await generatorPath('resolve', lab.buildDir);
      await untilAnswering(shortPod);
      await untilAnswering(fqdnPod);
      // Lookups of earlier tests end after a quiet period: let them be counted first.
      await sleep(2 * (GENERATION_SECONDS + 1) * 1000 + 500);
      const before = { short: tallyFor(shortIp), fqdn: tallyFor(fqdnIp) };
      const lookupsOf = (tally: QueryTally, from: QueryTally): Map<number, number> =>
        grownIn(tally.lookups, from.lookups);
      // The lab's pods' resolv.conf with the IPv6 ClusterIP as the only nameserver.
      const paths = [shortPod, fqdnPod].map((pod) => `/etc/netns/${pod.netns}/resolv.conf`);
      const saved = paths.map((path) => readFileSync(path, 'utf8'));
      let driven = 0;
      try {
        for (const path of paths)
          writeFileSync(
            path,
            `nameserver ${labAddresses6.clusterDns}\nsearch ${podSearchPath.join(' ')}\noptions ndots:5\n`,
          );
        // Three lookups a process: the next lookup of the same thread ends one in the kernel,
        // a quiet period the last. Driven until each pod has 6 counted, bounded.
        const deadline = Date.now() + 40_000;
        while (
          Date.now() < deadline &&
          (driven < 6 ||
            sumOfCounts(lookupsOf(tallyFor(shortIp), before.short)) < driven ||
            sumOfCounts(lookupsOf(tallyFor(fqdnIp), before.fqdn)) < driven)
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
      } finally {
        paths.forEach((path, i) => writeFileSync(path, saved[i]!));
      }
      const shortTally = await settle(shortIp, () => true);
      const fqdnTally = tallyFor(fqdnIp);
      expect(lookupsOf(shortTally, before.short)).toEqual(new Map([[8, driven]]));
      expect(lookupsOf(fqdnTally, before.fqdn)).toEqual(new Map([[2, driven]]));
      expect(grownIn(shortTally.ends, before.short.ends)).toEqual(new Map([['nxdomain', driven]]));
      // The AAAA question of www.example.test gets NODATA (an A record only): answered still.
      expect(grownIn(fqdnTally.ends, before.fqdn.ends)).toEqual(new Map([['answered', driven]]));
      expect(shortTally.netns).toEqual(new Set([shortPod.netnsInode]));
      expect(fqdnTally.netns).toEqual(new Set([fqdnPod.netnsInode]));
    },
    timeoutMs,
  );

  it(
    'prints the NODATA answers of seed 004 over IPv6 with their question and the pod IPv6 address, and counts the musl lookups as ended on NODATA and the glibc ones as answered',
    async () => {
      const [muslPod, glibcPod] = [lab.pods[0]!, lab.pods[1]!];
      await untilAnswering(muslPod);
      await untilAnswering(glibcPod);
      // Lookups of earlier tests end after a quiet period: let them be counted first.
      await sleep(2 * (GENERATION_SECONDS + 1) * 1000 + 500);
      const before = { musl: tallyFor(ip6Of(muslPod)), glibc: tallyFor(ip6Of(glibcPod)) };
      const run = await startSeed004(lab, { everyMs: 500, nameserver: labAddresses6.clusterDns });
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
            event.tuple.srcIp === ip6Of(pod) &&
            event.name === seed004.answeredName &&
            event.qtype === 'A',
        );
      const ended = (pod: LabPod, from: QueryTally): number =>
        sumOfCounts(grownIn(tallyFor(ip6Of(pod)).ends, from.ends));
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
        ip6Of(run.musl.pod),
        (tally) => sumOfCounts(grownIn(tally.ends, before.musl.ends)) >= run.musl.results.length,
      );
      const glibc = await settle(ip6Of(run.glibc.pod), () => true);
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
      // Seen in the pod before DNAT: the server is the IPv6 ClusterIP the pod asked.
      for (const event of [...fromPod(run.musl.pod), ...fromPod(run.glibc.pod)])
        expect(event.tuple.dstIp).toBe(labAddresses6.clusterDns);
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
