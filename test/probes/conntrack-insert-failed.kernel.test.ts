import { createLineDecoder } from '../../src/decode/decode.js';
import { InsertFailureCounts } from '../../src/decode/insert-failure-counts.js';
import type { InsertFailureEvent } from '../../src/events/types.js';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { replayCounts } from './counted.js';
import { dropReason, readDropReasons } from '../lab/drop-reasons.js';
import { createLab, labAddresses, labAddresses6, type Lab } from '../lab/lab.js';
import { dnatClashUntil, snatRaceUntil } from '../lab/scenarios/race-until.js';
import { runDnsBlocked, sendQueries } from '../lab/scenarios/dns-queries.js';

const probeName = 'tracepoint/conntrack-insert-failed';
const reasons = readDropReasons();
const reasonNames = new Map([...reasons].map(([name, code]) => [code, name]));
const decode = createLineDecoder(probeName, (code) => reasonNames.get(code) ?? `UNKNOWN_${code}`);

// Namespaces, a bpftrace compile and races driven for up to a minute (race-until's bound).
const timeoutMs = 120_000;

let lab: Lab;
let probe: ProbeRun;

beforeAll(async () => {
  // Dual-stack: the same races over IPv6 beside IPv4.
  lab = await createLab({ dualStack: true });
  // A generation period of 3 s: the races span several swaps and clearings of the maps.
  probe = await startProbe('tracepoint/conntrack-insert-failed.bt', [
    String(dropReason(reasons, 'NETFILTER_DROP')),
    '3',
  ]);
}, timeoutMs);

afterAll(async () => {
  await probe?.stop();
  await lab?.destroy();
}, timeoutMs);

/** The examples the probe printed in the lab's node namespace, with both tuples; they count nothing. */
function nodeExamples(): InsertFailureEvent[] {
  return probe.lines.flatMap((line) => {
    const decoded = decode(line);
    return decoded.type === 'event' &&
      decoded.event.kind === 'insert_failed' &&
      decoded.event.count === 0 &&
      decoded.event.netnsInode === lab.node.netnsInode
      ? [decoded.event]
      : [];
  });
}

/** Every failure the probe counted in the kernel so far, read from its maps as the agent reads them. */
function countedFailures(): InsertFailureEvent[] {
  return replayCounts(
    probe.lines,
    decode,
    new InsertFailureCounts({ probe: probeName, monotonicNs: () => 0n }),
  );
}

const inNode = (events: InsertFailureEvent[]): InsertFailureEvent[] =>
  events.filter((event) => event.netnsInode === lab.node.netnsInode);
const total = (events: InsertFailureEvent[]): number =>
  events.reduce((sum, event) => sum + (event.count ?? 0), 0);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What the probe counted in the node namespace while `run` ran, once it reaches `expected` (or
 * 5 s passed) and one more print showed nothing more; and the examples it printed of them.
 */
async function countedDuring(run: () => Promise<number>): Promise<{
  kernel: number;
  count: number;
  counted: InsertFailureEvent[];
  examples: InsertFailureEvent[];
}> {
  // The lines only grow, so the failures counted before are a prefix of those counted after.
  const countedBefore = countedFailures().length;
  const examplesBefore = nodeExamples().length;
  const kernel = await run();
  const since = () => inNode(countedFailures().slice(countedBefore));
  const deadline = Date.now() + 5000;
  while (total(since()) < kernel && Date.now() < deadline) await sleep(200);
  await sleep(1200);
  const counted = since();
  return { kernel, count: total(counted), counted, examples: nodeExamples().slice(examplesBefore) };
}

describe('tracepoint/conntrack-insert-failed.bt', () => {
  it(
    'reports exactly the insert failures the kernel counts in the node namespace, each with the pod tuple and the SNAT reply tuple',
    async () => {
      // Enough losses for "exactly" to mean something.
      const { kernel, count, counted, examples } = await countedDuring(
        async () => (await snatRaceUntil(lab, { needed: 20 })).kernel['insert_failed'] ?? 0,
      );

      expect(kernel).toBeGreaterThanOrEqual(20);
      expect(count).toBe(kernel);
      const podIps = lab.pods.map((pod) => pod.ip);
      for (const event of counted) {
        expect(podIps).toContain(event.original.srcIp);
        expect(event.original).toMatchObject({ dstIp: labAddresses.dnsBackends[0], dstPort: 53 });
        expect(event.reply).toMatchObject({
          srcIp: labAddresses.dnsBackends[0],
          srcPort: 53,
          dstIp: labAddresses.nodeUpstream,
        });
        expect(event.race).toBe('snat');
        expect(event.protocol).toBe('udp');
      }
      // The first few of each second are printed with both tuples, ports included.
      expect(examples.length).toBeGreaterThan(0);
      for (const event of examples) {
        expect(podIps).toContain(event.original.srcIp);
        expect(event.original).toMatchObject({ dstIp: labAddresses.dnsBackends[0], dstPort: 53 });
        // Masqueraded to the node's upstream address, the pod's source port kept.
        expect(event.reply).toEqual({
          srcIp: labAddresses.dnsBackends[0],
          srcPort: 53,
          dstIp: labAddresses.nodeUpstream,
          dstPort: event.original.srcPort,
        });
        expect(event.race).toBe('snat');
        expect(event.protocol).toBe('udp');
        expect(event.ctStatus & 0x8).toBe(0);
        expect(event.ctStatus & 0x180).toBe(0x180);
      }
    },
    timeoutMs,
  );

  it(
    'reports exactly the insert failures of an IPv6 SNAT race, addresses in canonical text',
    async () => {
      const { kernel, count, counted, examples } = await countedDuring(
        async () =>
          (await snatRaceUntil(lab, { needed: 20, destination: labAddresses6.upstreamHost }))
            .kernel['insert_failed'] ?? 0,
      );

      expect(kernel).toBeGreaterThanOrEqual(20);
      expect(count).toBe(kernel);
      const podIps = lab.pods.map((pod) => pod.ip6);
      expect(counted.length).toBeGreaterThan(0);
      for (const event of counted) {
        expect(podIps).toContain(event.original.srcIp);
        expect(event.original).toMatchObject({ dstIp: labAddresses6.upstreamHost, dstPort: 53 });
        expect(event.reply).toMatchObject({
          srcIp: labAddresses6.upstreamHost,
          srcPort: 53,
          dstIp: labAddresses6.nodeUpstream,
        });
        expect(event.race).toBe('snat');
        expect(event.protocol).toBe('udp');
      }
      expect(examples.length).toBeGreaterThan(0);
      for (const event of examples) {
        expect(podIps).toContain(event.original.srcIp);
        expect(event.reply).toEqual({
          srcIp: labAddresses6.upstreamHost,
          srcPort: 53,
          dstIp: labAddresses6.nodeUpstream,
          dstPort: event.original.srcPort,
        });
        expect(event.race).toBe('snat');
      }
    },
    timeoutMs,
  );

  it(
    'never reports a firewall drop, forwarded or sent by the node itself',
    async () => {
      let firewallDrops = 0;
      const { count, examples } = await countedDuring(async () => {
        const forwarded = await runDnsBlocked(lab, { queries: 20, from: 'pod' });
        const local = await runDnsBlocked(lab, { queries: 20, from: 'node' });
        firewallDrops = forwarded.firewallDrops + local.firewallDrops;
        return 0;
      });

      expect(firewallDrops).toBe(40);
      expect(count).toBe(0);
      expect(examples).toEqual([]);
    },
    timeoutMs,
  );

  it(
    'never reports a drop by an nftables chain that runs after source NAT',
    async () => {
      // The one firewall drop whose entry has both NAT bits set: only the location tells.
      const table = `late${lab.id.slice(-6)}`;
      await lab.exec(lab.node.netns, 'nft', ['add', 'table', 'ip', table]);
      await lab.exec(lab.node.netns, 'nft', [
        'add',
        'chain',
        'ip',
        table,
        'post',
        '{ type filter hook postrouting priority 200 ; }',
      ]);
      await lab.exec(lab.node.netns, 'nft', [
        'add',
        'rule',
        'ip',
        table,
        'post',
        'ip',
        'daddr',
        labAddresses.silentDns,
        'udp',
        'dport',
        '53',
        'counter',
        'drop',
      ]);
      try {
        let sent = 0;
        const { count, examples } = await countedDuring(async () => {
          sent = (await sendQueries(lab, lab.pods[0]!.netns, labAddresses.silentDns, 15, 100)).sent;
          return 0;
        });
        const { stdout } = await lab.exec(lab.node.netns, 'nft', [
          'list',
          'chain',
          'ip',
          table,
          'post',
        ]);

        expect(sent).toBe(15);
        expect(stdout).toMatch(/counter packets 15 /);
        expect(count).toBe(0);
        expect(examples).toEqual([]);
      } finally {
        await lab.exec(lab.node.netns, 'nft', ['delete', 'table', 'ip', table]);
      }
    },
    timeoutMs,
  );

  it(
    'stays silent while the kernel resolves DNAT clashes',
    async () => {
      let clash: Awaited<ReturnType<typeof dnatClashUntil>> | undefined;
      const { count } = await countedDuring(async () => {
        clash = await dnatClashUntil(lab, { needed: 20 });
        return clash.kernel['insert_failed'] ?? 0;
      });

      expect(clash!.kernel['clash_resolve']).toBeGreaterThanOrEqual(20);
      // Resolved clashes are never reported. A clash the kernel fails to resolve (its reply
      // tuple taken by an older entry: rare, seen once in some 10,000 resolved ones) is a real
      // insert failure, and then it must be reported: the count follows the kernel's.
      expect(count).toBe(clash!.kernel['insert_failed']);
      expect(clash!.kernel['insert_failed']! * 10).toBeLessThan(clash!.kernel['clash_resolve']!);
    },
    timeoutMs,
  );
});
