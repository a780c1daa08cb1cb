import { createLineDecoder } from '../../src/decode/decode.js';
import { DnsDropCounts } from '../../src/decode/dns-drop-counts.js';
import type { DnsDropEvent, ProbeEvent } from '../../src/events/types.js';
import { probeSpec } from '../../src/probes/catalogue.js';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { replayCounts } from './counted.js';
import { dropReason, readDropReasons } from '../lab/drop-reasons.js';
import { createLab, labAddresses, labAddresses6, type Lab } from '../lab/lab.js';
import { runDnsBlocked, runNoListener } from '../lab/scenarios/dns-queries.js';

const reasons = readDropReasons();
const reasonNames = new Map([...reasons].map(([name, code]) => [code, name]));
const nameOf = (code: number): string => reasonNames.get(code) ?? `UNKNOWN_${code}`;
const decodeDns = createLineDecoder('tracepoint/dns-drops', nameOf);
const decodeConntrack = createLineDecoder('tracepoint/conntrack-insert-failed', nameOf);

// Namespaces and two bpftrace compiles take seconds.
const timeoutMs = 60_000;

// Every variant of the catalogue runs here (this kernel has every field they read), and each
// must report each drop the same way: the one for kernels without drop reasons names them
// from the freeing function, which is what is checked of it here.
const dnsSpec = probeSpec('tracepoint/dns-drops')!;
const variants = dnsSpec.variants.map((variant) => variant.script);
// A generation period of 3 s: the lab's scenarios span several swaps and clearings.
const GENERATION_SECONDS = '3';

let lab: Lab;
const dnsProbes = new Map<string, ProbeRun>();
let conntrackProbe: ProbeRun;

beforeAll(async () => {
  // Dual-stack: the same firewall and silent upstream address for IPv6 beside IPv4.
  lab = await createLab({ dualStack: true });
  const [conntrack, ...dns] = await Promise.all([
    startProbe('tracepoint/conntrack-insert-failed.bt', [
      String(dropReason(reasons, 'NETFILTER_DROP')),
    ]),
    ...variants.map((script) => startProbe(script, [GENERATION_SECONDS])),
  ]);
  conntrackProbe = conntrack!;
  variants.forEach((script, index) => dnsProbes.set(script, dns[index]!));
}, timeoutMs);

afterAll(async () => {
  await Promise.all([...dnsProbes.values(), conntrackProbe].map((probe) => probe?.stop()));
  await lab?.destroy();
}, timeoutMs);

/** The examples the probe printed: each dropped datagram's detail, counting nothing. */
function examples(probe: ProbeRun): DnsDropEvent[] {
  return events(probe, decodeDns).filter(
    (event): event is DnsDropEvent => event.kind === 'dns_drop' && event.count === 0,
  );
}

/** Every drop the probe counted in the kernel so far, by its printed maps, as the agent reads them. */
function countedDrops(probe: ProbeRun): DnsDropEvent[] {
  return replayCounts(
    probe.lines,
    decodeDns,
    new DnsDropCounts({ probe: dnsSpec.name, reasonName: nameOf, monotonicNs: () => 0n }),
  );
}

const countTo = (drops: DnsDropEvent[], dstIp: string): number =>
  drops
    .filter((drop) => drop.tuple.dstIp === dstIp)
    .reduce((sum, drop) => sum + (drop.count ?? 0), 0);

/**
 * The drops to `dstIp` the probe counted while `run` ran, once they reach `expected` (or 5 s
 * passed, two map prints at least) and stop growing; and the examples it printed of them.
 */
async function countedDuring(
  script: string,
  dstIp: string,
  expected: number,
  run: () => Promise<void>,
): Promise<{ count: number; drops: DnsDropEvent[]; examples: DnsDropEvent[] }> {
  const probe = dnsProbes.get(script)!;
  // The lines only grow, so the drops counted before are a prefix of those counted after.
  const dropsBefore = countedDrops(probe).length;
  const before = countTo(countedDrops(probe), dstIp);
  const examplesBefore = examples(probe).length;
  await run();
  const deadline = Date.now() + 5000;
  let count = countTo(countedDrops(probe), dstIp) - before;
  while (count < expected && Date.now() < deadline) {
    await sleep(200);
    count = countTo(countedDrops(probe), dstIp) - before;
  }
  // One more print: a count past the expected one would show here.
  await sleep(1200);
  const drops = countedDrops(probe)
    .slice(dropsBefore)
    .filter((drop) => drop.tuple.dstIp === dstIp);
  return {
    count: countTo(drops, dstIp),
    drops,
    examples: examples(probe)
      .slice(examplesBefore)
      .filter((event) => event.tuple.dstIp === dstIp),
  };
}

function events(probe: ProbeRun, decode: typeof decodeDns): ProbeEvent[] {
  return probe.lines.flatMap((line) => {
    const decoded = decode(line);
    return decoded.type === 'event' ? [decoded.event] : [];
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function insertFailuresIn(netnsInode: number): ProbeEvent[] {
  return events(conntrackProbe, decodeConntrack).filter((event) => event.netnsInode === netnsInode);
}

describe.each(variants)('%s', (script) => {
  it(
    'counts each query a pod sends into the node firewall as a NETFILTER_DROP query in the node namespace, exactly, and no insert failure',
    async () => {
      let firewallDrops = 0;
      const { count, drops, examples } = await countedDuring(
        script,
        labAddresses.blockedDns,
        16,
        async () => {
          firewallDrops = (await runDnsBlocked(lab, { queries: 16, from: 'pod' })).firewallDrops;
        },
      );

      expect(firewallDrops).toBe(16);
      expect(count).toBe(16);
      for (const drop of [...drops, ...examples]) {
        expect(drop).toMatchObject({
          reason: 'NETFILTER_DROP',
          direction: 'query',
          netnsInode: lab.node.netnsInode,
          protocol: 'udp',
        });
        // Forwarded: dropped before source NAT, so the pod's own address.
        expect(drop.tuple).toMatchObject({ srcIp: lab.pods[0]!.ip, dstPort: 53 });
      }
      // The first few of each second are printed with their ports, one per query.
      expect(examples.length).toBeGreaterThan(0);
      expect(new Set(examples.map((drop) => drop.tuple.srcPort)).size).toBe(examples.length);
      expect(insertFailuresIn(lab.node.netnsInode)).toEqual([]);
    },
    timeoutMs,
  );

  it(
    'attributes a query the node itself sends into its OUTPUT firewall to the node namespace',
    async () => {
      let firewallDrops = 0;
      const { count, drops } = await countedDuring(script, labAddresses.blockedDns, 7, async () => {
        firewallDrops = (await runDnsBlocked(lab, { queries: 7, from: 'node' })).firewallDrops;
      });

      expect(firewallDrops).toBe(7);
      expect(count).toBe(7);
      const fromNode = drops.filter((drop) => drop.tuple.srcIp === labAddresses.nodeUpstream);
      expect(countTo(fromNode, labAddresses.blockedDns)).toBe(7);
      for (const drop of fromNode) {
        expect(drop).toMatchObject({
          reason: 'NETFILTER_DROP',
          direction: 'query',
          netnsInode: lab.node.netnsInode,
        });
      }
      expect(insertFailuresIn(lab.node.netnsInode)).toEqual([]);
    },
    timeoutMs,
  );

  it(
    'counts each query to an upstream with no listener as NO_SOCKET in the upstream namespace',
    async () => {
      let noPorts = 0;
      const { count, drops, examples } = await countedDuring(
        script,
        labAddresses.silentDns,
        11,
        async () => {
          noPorts = (await runNoListener(lab, { queries: 11 })).upstreamUdpNoPorts;
        },
      );

      expect(noPorts).toBe(11);
      expect(count).toBe(11);
      for (const drop of [...drops, ...examples]) {
        expect(drop).toMatchObject({
          reason: 'NO_SOCKET',
          direction: 'query',
          netnsInode: lab.upstream.netnsInode,
        });
        // Received after the node masqueraded it.
        expect(drop.tuple).toMatchObject({ srcIp: labAddresses.nodeUpstream, dstPort: 53 });
      }
      expect(insertFailuresIn(lab.upstream.netnsInode)).toEqual([]);
    },
    timeoutMs,
  );

  it(
    'counts each IPv6 query a pod sends into the node ip6tables firewall as a NETFILTER_DROP query in the node namespace, exactly',
    async () => {
      let firewallDrops = 0;
      const { count, drops, examples } = await countedDuring(
        script,
        labAddresses6.blockedDns,
        13,
        async () => {
          firewallDrops = (await runDnsBlocked(lab, { queries: 13, from: 'pod', family: 'ipv6' }))
            .firewallDrops;
        },
      );

      expect(firewallDrops).toBe(13);
      expect(count).toBe(13);
      for (const drop of [...drops, ...examples]) {
        expect(drop).toMatchObject({
          reason: 'NETFILTER_DROP',
          direction: 'query',
          netnsInode: lab.node.netnsInode,
          protocol: 'udp',
        });
        // Forwarded: dropped before source NAT, so the pod's own IPv6 address, canonical.
        expect(drop.tuple).toMatchObject({ srcIp: lab.pods[0]!.ip6, dstPort: 53 });
        // The conntrack entry's original direction is the query, in IPv6 too.
        expect(drop.conntrack?.original).toMatchObject({
          srcIp: lab.pods[0]!.ip6,
          dstIp: labAddresses6.blockedDns,
        });
      }
      expect(examples.length).toBeGreaterThan(0);
      expect(new Set(examples.map((drop) => drop.tuple.srcPort)).size).toBe(examples.length);
      expect(insertFailuresIn(lab.node.netnsInode)).toEqual([]);
    },
    timeoutMs,
  );

  it(
    'counts each IPv6 query to an upstream address with no listener as NO_SOCKET in the upstream namespace, exactly as Udp6NoPorts',
    async () => {
      let noPorts = 0;
      const { count, drops, examples } = await countedDuring(
        script,
        labAddresses6.silentDns,
        9,
        async () => {
          noPorts = (await runNoListener(lab, { queries: 9, family: 'ipv6' })).upstreamUdpNoPorts;
        },
      );

      expect(noPorts).toBe(9);
      expect(count).toBe(9);
      for (const drop of [...drops, ...examples]) {
        expect(drop).toMatchObject({
          reason: 'NO_SOCKET',
          direction: 'query',
          netnsInode: lab.upstream.netnsInode,
        });
        // Received after the node masqueraded it to its own upstream IPv6 address.
        expect(drop.tuple).toMatchObject({ srcIp: labAddresses6.nodeUpstream, dstPort: 53 });
      }
      expect(examples.length).toBeGreaterThan(0);
      expect(insertFailuresIn(lab.upstream.netnsInode)).toEqual([]);
    },
    timeoutMs,
  );
});
