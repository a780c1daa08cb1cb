import type { ConntrackStats } from '../../src/diagnose/reproduce/race-until.js';
import { runIn } from './netns.js';

export { counterDelta } from '../../src/diagnose/reproduce/race-until.js';
export type { ConntrackStats };

/**
 * Reads the counters with conntrack(8), deliberately not with the agent's own parser of
 * /proc/net/stat/nf_conntrack: the lab is the independent oracle the agent is checked against.
 */
export async function readConntrackStats(netns: string): Promise<ConntrackStats> {
  const { stdout } = await runIn(netns, 'conntrack', ['-S']);
  const totals: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('cpu=')) continue;
    for (const field of line.trim().split(/\s+/)) {
      const [key, value] = field.split('=');
      if (key === undefined || key === 'cpu' || value === undefined) continue;
      totals[key] = (totals[key] ?? 0) + Number.parseInt(value, 10);
    }
  }
  return totals;
}

/** One counter of /proc/net/snmp (e.g. Udp NoPorts) in a namespace. */
export async function readSnmpCounter(netns: string, group: string, name: string): Promise<number> {
  const { stdout } = await runIn(netns, 'cat', ['/proc/net/snmp']);
  const lines = stdout.split('\n').filter((line) => line.startsWith(`${group}:`));
  const header = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const index = header.indexOf(name);
  const value = index > 0 ? values[index] : undefined;
  if (value === undefined) throw new Error(`no ${group} ${name} in /proc/net/snmp of ${netns}`);
  return Number.parseInt(value, 10);
}

/**
 * One counter of /proc/net/snmp6 (e.g. Udp6NoPorts) in a namespace: IPv6 counters are kept
 * apart from the IPv4 ones, one `name value` pair a line.
 */
export async function readSnmp6Counter(netns: string, name: string): Promise<number> {
  const { stdout } = await runIn(netns, 'cat', ['/proc/net/snmp6']);
  const line = stdout.split('\n').find((entry) => entry.split(/\s+/)[0] === name);
  const value = line?.trim().split(/\s+/)[1];
  if (value === undefined) throw new Error(`no ${name} in /proc/net/snmp6 of ${netns}`);
  return Number.parseInt(value, 10);
}
