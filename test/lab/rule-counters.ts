import type { Lab } from './lab.js';
import type { LabFamily } from './scenarios/dns-queries.js';

/**
 * The packet counter of the first rule of a filter chain in the lab node whose listing line
 * `matches` (iptables' or ip6tables' own count: the tests' oracle for what a rule dropped).
 * Throws, naming `what`, when no rule matches.
 */
export async function rulePackets(
  lab: Lab,
  rule: {
    readonly chain: string;
    readonly family?: LabFamily;
    readonly matches: (line: string) => boolean;
    readonly what: string;
  },
): Promise<number> {
  const command = rule.family === 'ipv6' ? 'ip6tables' : 'iptables';
  const { stdout } = await lab.exec(lab.node.netns, command, [
    '-t',
    'filter',
    '-L',
    rule.chain,
    '-n',
    '-v',
    '-x',
  ]);
  const packets = stdout.split('\n').find(rule.matches)?.trim().split(/\s+/)[0];
  if (packets === undefined) throw new Error(`${rule.what}: no such rule in ${rule.chain}`);
  return Number.parseInt(packets, 10);
}

/** A DROP rule for UDP DNS from one client to one DNS backend, in the lab node's FORWARD chain. */
export interface DnsBackendDropRule {
  /** Inserts the rule first in FORWARD. */
  insert(): Promise<void>;
  /** Deletes it; nothing when it is not there. */
  remove(): Promise<void>;
  /** Its packet counter: the queries it dropped since inserted. */
  packets(): Promise<number>;
}

/**
 * The lab's "one backend firewalled" rule: in FORWARD, after DNAT, so that it matches that
 * backend's share of the ClusterIP's queries alone. `comment` names the rule in listings.
 */
export function dnsBackendDropRule(
  lab: Lab,
  rule: {
    readonly client: string;
    readonly backend: string;
    readonly family?: LabFamily;
    readonly comment: string;
  },
): DnsBackendDropRule {
  const command = rule.family === 'ipv6' ? 'ip6tables' : 'iptables';
  const spec = ['FORWARD', '-s', rule.client, '-d', rule.backend, '-p', 'udp', '--dport', '53'];
  const args = [...spec, '-m', 'comment', '--comment', rule.comment, '-j', 'DROP'];
  let inserted = false;
  return {
    async insert() {
      await lab.exec(lab.node.netns, command, ['-I', ...args]);
      inserted = true;
    },
    async remove() {
      if (!inserted) return;
      await lab.exec(lab.node.netns, command, ['-D', ...args]);
      inserted = false;
    },
    packets: () =>
      rulePackets(lab, {
        chain: 'FORWARD',
        ...(rule.family === undefined ? {} : { family: rule.family }),
        // The comment ends the line: "… /* <comment> */".
        matches: (line) => line.includes(`/* ${rule.comment} */`),
        what: `the DROP rule "${rule.comment}"`,
      }),
  };
}

/** Runs `body` with `rules` inserted; removes those inserted when it ends, also when it throws. */
export async function withRules<T>(
  rules: readonly DnsBackendDropRule[],
  body: () => Promise<T>,
): Promise<T> {
  const removeAll = async (): Promise<void> => {
    const removed = await Promise.allSettled(rules.map((rule) => rule.remove()));
    const failed = removed.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  };
  try {
    for (const rule of rules) await rule.insert();
    const result = await body();
    await removeAll();
    return result;
  } catch (error) {
    // Removal is attempted for every rule; the first error is the one worth reading.
    await Promise.allSettled(rules.map((rule) => rule.remove()));
    throw error;
  }
}
