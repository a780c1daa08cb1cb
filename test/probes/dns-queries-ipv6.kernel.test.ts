import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { queryOutcomes } from './counted.js';
import {
  expectLookupCosts,
  expectSeed004Lookups,
  type LookupCheckContext,
} from './lookup-checks.js';
import { queryFrom, settledTally, tallyOf, type QueryTally } from './query-tally.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { labZone } from '../lab/dnsmasq.js';
import { generatorPath } from '../lab/generators.js';
import type { ResolvedName } from '../lab/scenarios/resolver.js';
import { createLab, labAddresses6, type Lab, type LabPod } from '../lab/lab.js';
import { dnsBackendDropRule, withRules } from '../lab/rule-counters.js';
import { sendQueries, type QueryBurst } from '../lab/scenarios/dns-queries.js';

// IPv6 queries from a dual-stack lab pod to the IPv6 ClusterIP (DNATed at random to two IPv6
// dnsmasq backends), matched by the probe in the pod's namespace. Oracles: the query program's
// own count of answers, and an ip6tables DROP rule's packet counter.
const timeoutMs = 120_000;
// A short period: a query is reported unanswered 2 to 5 s after it was sent.
const GENERATION_SECONDS = 2;
const RULE_COMMENT = 'cro-lab: firewalled IPv6 DNS backend';

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
const checks: LookupCheckContext = {
  get lab() {
    return lab;
  },
  probeLines: () => probe.lines,
  generationSeconds: GENERATION_SECONDS,
  addressOf: (pod) => ip6Of(pod),
  clusterDns: labAddresses6.clusterDns,
};
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
      await untilAnswering(lab.pods[0]!);
      await untilAnswering(lab.pods[1]!);
      await expectLookupCosts(checks, 'glibc');
    },
    timeoutMs,
  );

  it(
    'prints the NODATA answers of seed 004 over IPv6 with their question and the pod IPv6 address, and counts the musl lookups as ended on NODATA and the glibc ones as answered',
    async () => {
      await untilAnswering(lab.pods[0]!);
      await untilAnswering(lab.pods[1]!);
      await expectSeed004Lookups(checks);
    },
    timeoutMs,
  );
});
