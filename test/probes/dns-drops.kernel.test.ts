import { createLineDecoder } from '../../src/decode/decode.js';
import type { DnsDropEvent, ProbeEvent } from '../../src/events/types.js';
import { probeSpec } from '../../src/sources/bpftrace/catalogue.js';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { dropReason, readDropReasons } from '../lab/drop-reasons.js';
import { createLab, labAddresses, type Lab } from '../lab/lab.js';
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
const variants = probeSpec('tracepoint/dns-drops')!.variants.map((variant) => variant.script);

let lab: Lab;
const dnsProbes = new Map<string, ProbeRun>();
let conntrackProbe: ProbeRun;

beforeAll(async () => {
  lab = await createLab();
  const [conntrack, ...dns] = await Promise.all([
    startProbe('tracepoint/conntrack-insert-failed.bt', [
      String(dropReason(reasons, 'NETFILTER_DROP')),
    ]),
    ...variants.map((script) => startProbe(script)),
  ]);
  conntrackProbe = conntrack!;
  variants.forEach((script, index) => dnsProbes.set(script, dns[index]!));
}, timeoutMs);

afterAll(async () => {
  await Promise.all([...dnsProbes.values(), conntrackProbe].map((probe) => probe?.stop()));
  await lab?.destroy();
}, timeoutMs);

const dnsEventCounts = (): Map<string, number> =>
  new Map(variants.map((script) => [script, events(dnsProbes.get(script)!, decodeDns).length]));

function events(probe: ProbeRun, decode: typeof decodeDns): ProbeEvent[] {
  return probe.lines.flatMap((line) => {
    const decoded = decode(line);
    return decoded.type === 'event' ? [decoded.event] : [];
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** DNS drops to `dstIp` since `already`, once `expected` arrived (or 5 s passed) and a quiet half-second. */
async function dnsDropsTo(
  script: string,
  dstIp: string,
  already: Map<string, number>,
  expected: number,
): Promise<DnsDropEvent[]> {
  const matching = (): DnsDropEvent[] =>
    events(dnsProbes.get(script)!, decodeDns)
      .slice(already.get(script))
      .filter(
        (event): event is DnsDropEvent => event.kind === 'dns_drop' && event.tuple.dstIp === dstIp,
      );
  const deadline = Date.now() + 5000;
  while (matching().length < expected && Date.now() < deadline) await sleep(50);
  await sleep(500);
  return matching();
}

function insertFailuresIn(netnsInode: number): ProbeEvent[] {
  return events(conntrackProbe, decodeConntrack).filter((event) => event.netnsInode === netnsInode);
}

describe.each(variants)('%s', (script) => {
  it(
    'reports each query a pod sends into the node firewall as a NETFILTER_DROP query in the node namespace, and no insert failure',
    async () => {
      const already = dnsEventCounts();

      const blocked = await runDnsBlocked(lab, { queries: 16, from: 'pod' });
      const drops = await dnsDropsTo(script, labAddresses.blockedDns, already, 16);

      expect(blocked.firewallDrops).toBe(16);
      expect(drops).toHaveLength(16);
      for (const drop of drops) {
        expect(drop).toMatchObject({
          reason: 'NETFILTER_DROP',
          direction: 'query',
          netnsInode: lab.node.netnsInode,
          protocol: 'udp',
        });
        // Forwarded: dropped before source NAT, so the pod's own address.
        expect(drop.tuple).toMatchObject({ srcIp: lab.pods[0]!.ip, dstPort: 53 });
      }
      expect(new Set(drops.map((drop) => drop.tuple.srcPort)).size).toBe(16);
      expect(insertFailuresIn(lab.node.netnsInode)).toEqual([]);
    },
    timeoutMs,
  );

  it(
    'attributes a query the node itself sends into its OUTPUT firewall to the node namespace',
    async () => {
      const already = dnsEventCounts();

      const blocked = await runDnsBlocked(lab, { queries: 7, from: 'node' });
      const drops = await dnsDropsTo(script, labAddresses.blockedDns, already, 7);

      expect(blocked.firewallDrops).toBe(7);
      expect(drops).toHaveLength(7);
      for (const drop of drops) {
        expect(drop).toMatchObject({
          reason: 'NETFILTER_DROP',
          direction: 'query',
          netnsInode: lab.node.netnsInode,
        });
        expect(drop.tuple.srcIp).toBe(labAddresses.nodeUpstream);
      }
      expect(insertFailuresIn(lab.node.netnsInode)).toEqual([]);
    },
    timeoutMs,
  );

  it(
    'reports each query to an upstream with no listener as NO_SOCKET in the upstream namespace',
    async () => {
      const already = dnsEventCounts();

      const result = await runNoListener(lab, { queries: 11 });
      const drops = await dnsDropsTo(script, labAddresses.silentDns, already, 11);

      expect(result.upstreamUdpNoPorts).toBe(11);
      expect(drops).toHaveLength(11);
      for (const drop of drops) {
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
});
