import {
  CONNTRACK_STAT_PATH,
  parseConntrackStatFile,
} from '../../sources/kernel-stats/conntrack-stat-file.js';
import { ReproduceError } from './errors.js';
import type { LabRunner } from './lab-runner.js';
import type { ConntrackStats } from './race-until.js';

export interface LabCounterReading {
  readonly totals: ConntrackStats;
  /** False before kernel 5.10: insert_failed then also counts clashes that were resolved. */
  readonly hasClashResolve: boolean;
}

/**
 * The conntrack statistics of a lab namespace, summed over CPUs. /proc/net is per network
 * namespace of the reader, so the file is read by a process inside the lab's node.
 */
export async function readLabCounters(run: LabRunner, netns: string): Promise<LabCounterReading> {
  const outcome = await run('ip', ['netns', 'exec', netns, 'cat', CONNTRACK_STAT_PATH], {
    timeoutMs: 10_000,
  });
  const parsed = parseConntrackStatFile(outcome.exitCode === 0 ? outcome.stdout : '');
  if (!parsed.ok) {
    throw new ReproduceError(
      'REPRODUCE_COUNTERS_UNREADABLE',
      `cannot read ${CONNTRACK_STAT_PATH} in ${netns}: ${outcome.exitCode === 0 ? parsed.error.message : (outcome.failure ?? outcome.stderr.trim())}`,
    );
  }
  return {
    totals: Object.fromEntries(parsed.stats.totals),
    hasClashResolve: parsed.stats.hasClashResolve,
  };
}
