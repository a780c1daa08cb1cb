import { createLineDecoder } from '../../src/decode/decode.js';
import type { InsertFailureEvent } from '../../src/events/types.js';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { dropReason, readDropReasons } from '../lab/drop-reasons.js';
import { createLab, labAddresses, type Lab } from '../lab/lab.js';
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
  lab = await createLab();
  probe = await startProbe('tracepoint/conntrack-insert-failed.bt', [
    String(dropReason(reasons, 'NETFILTER_DROP')),
  ]);
}, timeoutMs);

afterAll(async () => {
  await probe?.stop();
  await lab?.destroy();
}, timeoutMs);

/** The insert failures the probe reported in the lab's node namespace (other labs may run). */
function nodeInsertFailures(): InsertFailureEvent[] {
  return probe.lines.flatMap((line) => {
    const decoded = decode(line);
    return decoded.type === 'event' &&
      decoded.event.kind === 'insert_failed' &&
      decoded.event.netnsInode === lab.node.netnsInode
      ? [decoded.event]
      : [];
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The events reported since `already`, once `expected` of them arrived (or 5 s passed), plus
 * a quiet half-second so that an extra one would be caught too.
 */
async function eventsSince(already: number, expected: number): Promise<InsertFailureEvent[]> {
  const deadline = Date.now() + 5000;
  while (nodeInsertFailures().length < already + expected && Date.now() < deadline) {
    await sleep(50);
  }
  await sleep(500);
  return nodeInsertFailures().slice(already);
}

describe('tracepoint/conntrack-insert-failed.bt', () => {
  it(
    'reports exactly the insert failures the kernel counts in the node namespace, each with the pod tuple and the SNAT reply tuple',
    async () => {
      const already = nodeInsertFailures().length;

      // Enough losses for "exactly" to mean something; each one is checked below.
      const race = await snatRaceUntil(lab, { needed: 20 });
      const events = await eventsSince(already, race.kernel['insert_failed'] ?? 0);

      expect(race.kernel['insert_failed']).toBeGreaterThanOrEqual(20);
      expect(events).toHaveLength(race.kernel['insert_failed']!);
      const podIps = lab.pods.map((pod) => pod.ip);
      for (const event of events) {
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
    'never reports a firewall drop, forwarded or sent by the node itself',
    async () => {
      const already = nodeInsertFailures().length;

      const forwarded = await runDnsBlocked(lab, { queries: 20, from: 'pod' });
      const local = await runDnsBlocked(lab, { queries: 20, from: 'node' });

      expect(forwarded.firewallDrops).toBe(20);
      expect(local.firewallDrops).toBe(20);
      expect(await eventsSince(already, 0)).toEqual([]);
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
      const already = nodeInsertFailures().length;
      try {
        const burst = await sendQueries(lab, lab.pods[0]!.netns, labAddresses.silentDns, 15, 100);
        const { stdout } = await lab.exec(lab.node.netns, 'nft', [
          'list',
          'chain',
          'ip',
          table,
          'post',
        ]);

        expect(burst.sent).toBe(15);
        expect(stdout).toMatch(/counter packets 15 /);
        expect(await eventsSince(already, 0)).toEqual([]);
      } finally {
        await lab.exec(lab.node.netns, 'nft', ['delete', 'table', 'ip', table]);
      }
    },
    timeoutMs,
  );

  it(
    'stays silent while the kernel resolves DNAT clashes',
    async () => {
      const already = nodeInsertFailures().length;

      const clash = await dnatClashUntil(lab, { needed: 20 });
      const events = await eventsSince(already, clash.kernel['insert_failed'] ?? 0);

      expect(clash.kernel['clash_resolve']).toBeGreaterThanOrEqual(20);
      // Resolved clashes are never reported. A clash the kernel fails to resolve (its reply
      // tuple taken by an older entry: rare, seen once in some 10,000 resolved ones) is a real
      // insert failure, and then it must be reported: the count follows the kernel's.
      expect(events).toHaveLength(clash.kernel['insert_failed']!);
      expect(clash.kernel['insert_failed']! * 10).toBeLessThan(clash.kernel['clash_resolve']!);
    },
    timeoutMs,
  );
});
