import { generatorPath } from '../generators.js';
import { counterDelta, readSnmpCounter, type ConntrackStats } from '../kernel-counters.js';
import { labAddresses, type Lab } from '../lab.js';

export interface QueryBurst {
  readonly sent: number;
  readonly answered: number;
  readonly sendErrors: number;
}

/** Sends `count` DNS queries from `netns`, each from its own socket, and waits for answers. */
export async function sendQueries(
  lab: Lab,
  netns: string,
  destination: string,
  count: number,
  timeoutMs = 300,
): Promise<QueryBurst> {
  const binary = await generatorPath('dns-query', lab.buildDir);
  const { stdout } = await lab.exec(netns, binary, [
    destination,
    '53',
    String(count),
    'www.example.test',
    String(timeoutMs),
  ]);
  return JSON.parse(stdout.trim()) as QueryBurst;
}

export interface DnsBlockedOptions {
  readonly queries: number;
  /** `pod`: forwarded through the node (FORWARD drop); `node`: sent by the node itself (OUTPUT drop). */
  readonly from?: 'pod' | 'node';
}

export interface DnsBlockedResult {
  readonly scenario: 'dns-blocked';
  readonly from: 'pod' | 'node';
  /** Queries handed to the kernel; includes those whose sendto() failed because OUTPUT dropped them. */
  readonly queriesSent: number;
  /** sendto() failures: a locally sent datagram dropped by OUTPUT fails with EPERM. */
  readonly sendErrors: number;
  readonly answered: number;
  /** Packets the node's DROP rule matched (iptables' own counter). */
  readonly firewallDrops: number;
  readonly kernel: ConntrackStats;
}

async function dropRulePackets(lab: Lab, chain: 'FORWARD' | 'OUTPUT'): Promise<number> {
  const { stdout } = await lab.exec(lab.node.netns, 'iptables', [
    '-t',
    'filter',
    '-L',
    chain,
    '-n',
    '-v',
    '-x',
  ]);
  const rule = stdout
    .split('\n')
    .find((line) => /\bDROP\b/.test(line) && line.includes(labAddresses.blockedDns));
  const packets = rule?.trim().split(/\s+/)[0];
  if (packets === undefined)
    throw new Error(`no DROP rule for ${labAddresses.blockedDns} in ${chain}`);
  return Number.parseInt(packets, 10);
}

/** DNS queries to an address the node's firewall drops: a firewall drop, not a race. */
export async function runDnsBlocked(
  lab: Lab,
  options: DnsBlockedOptions,
): Promise<DnsBlockedResult> {
  const from = options.from ?? 'pod';
  const chain = from === 'pod' ? 'FORWARD' : 'OUTPUT';
  const netns = from === 'pod' ? lab.pods[0]!.netns : lab.node.netns;
  const rulesBefore = await dropRulePackets(lab, chain);
  const before = await lab.nodeConntrackStats();
  const burst = await sendQueries(lab, netns, labAddresses.blockedDns, options.queries, 100);
  const after = await lab.nodeConntrackStats();
  const rulesAfter = await dropRulePackets(lab, chain);
  return {
    scenario: 'dns-blocked',
    from,
    queriesSent: burst.sent + burst.sendErrors,
    sendErrors: burst.sendErrors,
    answered: burst.answered,
    firewallDrops: rulesAfter - rulesBefore,
    kernel: counterDelta(before, after),
  };
}

export interface NoListenerOptions {
  readonly queries: number;
}

export interface NoListenerResult {
  readonly scenario: 'no-listener';
  readonly queriesSent: number;
  readonly answered: number;
  /** Udp NoPorts of the upstream namespace, after minus before. */
  readonly upstreamUdpNoPorts: number;
  readonly kernel: ConntrackStats;
}

/** DNS queries from a pod to an upstream address where nothing listens on port 53. */
export async function runNoListener(
  lab: Lab,
  options: NoListenerOptions,
): Promise<NoListenerResult> {
  const noPortsBefore = await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
  const before = await lab.nodeConntrackStats();
  const burst = await sendQueries(
    lab,
    lab.pods[0]!.netns,
    labAddresses.silentDns,
    options.queries,
    100,
  );
  const after = await lab.nodeConntrackStats();
  const noPortsAfter = await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
  return {
    scenario: 'no-listener',
    queriesSent: burst.sent,
    answered: burst.answered,
    upstreamUdpNoPorts: noPortsAfter - noPortsBefore,
    kernel: counterDelta(before, after),
  };
}
