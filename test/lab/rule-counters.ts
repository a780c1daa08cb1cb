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
