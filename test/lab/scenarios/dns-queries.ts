import { readFileSync } from 'node:fs';
import { generatorPath } from '../generators.js';
import {
  counterDelta,
  readSnmp6Counter,
  readSnmpCounter,
  type ConntrackStats,
} from '../kernel-counters.js';
import { labAddresses, labAddresses6, type Lab } from '../lab.js';
import { rulePackets } from '../rule-counters.js';

/** The address family a scenario's queries use; `ipv6` needs a dual-stack lab. */
export type LabFamily = 'ipv4' | 'ipv6';

const addressesOf = (family: LabFamily) => (family === 'ipv6' ? labAddresses6 : labAddresses);

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
  /** `ipv6`: to the blocked IPv6 address, dropped by the node's ip6tables rule. */
  readonly family?: LabFamily;
}

export interface DnsBlockedResult {
  readonly scenario: 'dns-blocked';
  readonly from: 'pod' | 'node';
  /** Queries handed to the kernel; includes those whose sendto() failed because OUTPUT dropped them. */
  readonly queriesSent: number;
  /** sendto() failures: a locally sent datagram dropped by OUTPUT fails with EPERM. */
  readonly sendErrors: number;
  readonly answered: number;
  /** Packets the node's DROP rule matched (iptables' or ip6tables' own counter). */
  readonly firewallDrops: number;
  readonly kernel: ConntrackStats;
}

function dropRulePackets(
  lab: Lab,
  chain: 'FORWARD' | 'OUTPUT',
  family: LabFamily,
): Promise<number> {
  const blocked = addressesOf(family).blockedDns;
  return rulePackets(lab, {
    chain,
    family,
    matches: (line) => /\bDROP\b/.test(line) && line.includes(blocked),
    what: `the DROP rule for ${blocked}`,
  });
}

/** DNS queries to an address the node's firewall drops: a firewall drop, not a race. */
export async function runDnsBlocked(
  lab: Lab,
  options: DnsBlockedOptions,
): Promise<DnsBlockedResult> {
  const from = options.from ?? 'pod';
  const family = options.family ?? 'ipv4';
  const chain = from === 'pod' ? 'FORWARD' : 'OUTPUT';
  const netns = from === 'pod' ? lab.pods[0]!.netns : lab.node.netns;
  const blocked = addressesOf(family).blockedDns;
  const rulesBefore = await dropRulePackets(lab, chain, family);
  const before = await lab.nodeConntrackStats();
  const burst = await sendQueries(lab, netns, blocked, options.queries, 100);
  const after = await lab.nodeConntrackStats();
  const rulesAfter = await dropRulePackets(lab, chain, family);
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
  /** `ipv6`: to the silent IPv6 address, counted by Udp6 NoPorts. */
  readonly family?: LabFamily;
}

export interface NoListenerResult {
  readonly scenario: 'no-listener';
  readonly queriesSent: number;
  readonly answered: number;
  /** Udp NoPorts (Udp6NoPorts for IPv6) of the upstream namespace, after minus before. */
  readonly upstreamUdpNoPorts: number;
  readonly kernel: ConntrackStats;
}

/** DNS queries from a pod to an upstream address where nothing listens on port 53. */
export async function runNoListener(
  lab: Lab,
  options: NoListenerOptions,
): Promise<NoListenerResult> {
  const family = options.family ?? 'ipv4';
  const noPorts = () =>
    family === 'ipv6'
      ? readSnmp6Counter(lab.upstream.netns, 'Udp6NoPorts')
      : readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
  const noPortsBefore = await noPorts();
  const before = await lab.nodeConntrackStats();
  const burst = await sendQueries(
    lab,
    lab.pods[0]!.netns,
    addressesOf(family).silentDns,
    options.queries,
    100,
  );
  const after = await lab.nodeConntrackStats();
  const noPortsAfter = await noPorts();
  return {
    scenario: 'no-listener',
    queriesSent: burst.sent,
    answered: burst.answered,
    upstreamUdpNoPorts: noPortsAfter - noPortsBefore,
    kernel: counterDelta(before, after),
  };
}

export interface StoppedBackendOptions {
  /** Queries per round, each from its own socket, to the ClusterIP. */
  readonly queriesPerRound: number;
  /** Rounds stop once the stopped backend received at least this many queries. */
  readonly atLeast: number;
  /** Bound on the rounds: the ClusterIP picks a backend at random for each query. */
  readonly maxRounds?: number;
  /** Index of the backend in `lab.dnsBackends`. */
  readonly backend?: number;
}

export interface StoppedBackendRun {
  readonly scenario: 'dns-backend-stopped';
  /** The address of the backend stopped with SIGSTOP. */
  readonly backend: string;
  readonly queriesSent: number;
  readonly answered: number;
  /**
   * Queries DNATed to the stopped backend: packets a counting rule (no target) in the node's
   * FORWARD chain matched. They reach its socket and wait there unanswered.
   */
  readonly receivedByStopped: number;
  readonly kernel: ConntrackStats;
  /**
   * Sends SIGCONT: the backend then answers its queue late, to sockets long closed. Call it
   * only once the unanswered queries have been reported (an answer before that would count
   * them as answered); always call it.
   */
  resume(): Promise<void>;
}

const COUNTING_RULE_COMMENT = 'cro-lab: queries to the stopped backend';

function countingRule(backend: string): string[] {
  return [
    'FORWARD',
    '-d',
    backend,
    '-p',
    'udp',
    '--dport',
    '53',
    '-m',
    'comment',
    '--comment',
    COUNTING_RULE_COMMENT,
  ];
}

function countingRulePackets(lab: Lab): Promise<number> {
  return rulePackets(lab, {
    chain: 'FORWARD',
    matches: (line) => line.includes(COUNTING_RULE_COMMENT),
    what: 'the counting rule of the stopped backend',
  });
}

/**
 * A DNS backend that receives but does not answer: one dnsmasq behind the ClusterIP stopped
 * with SIGSTOP, queries sent to the ClusterIP from a pod until the stopped one received
 * `atLeast` (bounded). Nothing on the node drops them: the kernel queues them on the stopped
 * process's socket. Leaves the backend stopped; the caller resumes it.
 */
export async function runDnsBackendStopped(
  lab: Lab,
  options: StoppedBackendOptions,
): Promise<StoppedBackendRun> {
  const backend = lab.dnsBackends[options.backend ?? 0];
  if (backend === undefined) throw new Error(`no DNS backend ${options.backend ?? 0} in the lab`);
  const pid = Number.parseInt(readFileSync(backend.pidFile, 'utf8').trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`bad pid file ${backend.pidFile}`);
  const rule = countingRule(backend.address);
  await lab.exec(lab.node.netns, 'iptables', ['-I', ...rule]);
  let stopped = false;
  const resume = async (): Promise<void> => {
    if (stopped) process.kill(pid, 'SIGCONT');
    stopped = false;
  };
  try {
    const before = await lab.nodeConntrackStats();
    process.kill(pid, 'SIGSTOP');
    stopped = true;
    let queriesSent = 0;
    let answered = 0;
    let receivedByStopped = 0;
    for (let round = 0; round < (options.maxRounds ?? 10); round += 1) {
      const burst = await sendQueries(
        lab,
        lab.pods[0]!.netns,
        labAddresses.clusterDns,
        options.queriesPerRound,
        200,
      );
      queriesSent += burst.sent;
      answered += burst.answered;
      receivedByStopped = await countingRulePackets(lab);
      if (receivedByStopped >= options.atLeast) break;
    }
    const after = await lab.nodeConntrackStats();
    return {
      scenario: 'dns-backend-stopped',
      backend: backend.address,
      queriesSent,
      answered,
      receivedByStopped,
      kernel: counterDelta(before, after),
      resume,
    };
  } catch (error) {
    await resume();
    throw error;
  } finally {
    await lab.exec(lab.node.netns, 'iptables', ['-D', ...rule]);
  }
}
