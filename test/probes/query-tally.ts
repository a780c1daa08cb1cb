import type { DnsQueryEvent } from '../../src/events/types.js';
import { generatorPath } from '../lab/generators.js';
import type { Lab } from '../lab/lab.js';
import type { QueryBurst } from '../lab/scenarios/dns-queries.js';

/** What the DNS query probe reported of one client, summed over its outcomes. */
export interface QueryTally {
  unanswered: number;
  /** Queries sent while another of the same socket was pending. */
  parallel: number;
  /** Unanswered queries by the server the client asked. */
  unansweredTo: Map<string, number>;
  answered: Map<string, number>;
  answeredTotal: number;
  /** Lookups by the queries each cost. */
  lookups: Map<number, number>;
  /** Lookups by how they ended. */
  ends: Map<string, number>;
  /** Every event of the client, with the namespace it was counted in. */
  netns: Set<number>;
}

const add = <K>(counts: Map<K, number>, key: K, count: number): void => {
  counts.set(key, (counts.get(key) ?? 0) + count);
};

/** The outcomes of `clientIp` among `events`, summed. */
export function tallyOf(events: readonly DnsQueryEvent[], clientIp: string): QueryTally {
  const tally: QueryTally = {
    unanswered: 0,
    parallel: 0,
    unansweredTo: new Map(),
    answered: new Map(),
    answeredTotal: 0,
    lookups: new Map(),
    ends: new Map(),
    netns: new Set(),
  };
  for (const event of events) {
    if (event.tuple.srcIp !== clientIp) continue;
    tally.netns.add(event.netnsInode);
    if (event.outcome === 'unanswered') {
      tally.unanswered += event.count;
      add(tally.unansweredTo, event.tuple.dstIp, event.count);
    } else if (event.outcome === 'parallel') {
      tally.parallel += event.count;
    } else if (event.outcome === 'lookup') {
      add(tally.lookups, event.queriesPerLookup!, event.count);
      add(tally.ends, event.lookupEnd!, event.count);
    } else if (event.outcome === 'answered') {
      add(tally.answered, event.answer!, event.count);
      tally.answeredTotal += event.count;
    }
  }
  return tally;
}

/** What grew in a map of counts since `from`, keys that did not grow left out. */
export function grownIn<K>(now: Map<K, number>, from: Map<K, number>): Map<K, number> {
  const grown = new Map<K, number>();
  for (const [key, count] of now) {
    const growth = count - (from.get(key) ?? 0);
    if (growth > 0) grown.set(key, growth);
  }
  return grown;
}

export const sumOfCounts = (counts: Map<unknown, number>): number =>
  [...counts.values()].reduce((total, n) => total + n, 0);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `done` holds of the client's tally, for at most two cycles of the probe's
 * generations (period + 1 s each, and a margin), then one more whole cycle: a count past the
 * expected one would show within it.
 */
export async function settledTally(
  tally: () => QueryTally,
  generationSeconds: number,
  done: (tally: QueryTally) => boolean,
): Promise<QueryTally> {
  const cycleMs = (generationSeconds + 1) * 1000;
  const deadline = Date.now() + 2 * cycleMs + 1500;
  while (!done(tally()) && Date.now() < deadline) await sleep(250);
  await sleep(cycleMs + 500);
  return tally();
}

/** `count` queries for `name` from a pod namespace to `server`:53, each from its own socket. */
export async function queryFrom(
  lab: Lab,
  netns: string,
  server: string,
  name: string,
  count: number,
): Promise<QueryBurst> {
  const binary = await generatorPath('dns-query', lab.buildDir);
  const { stdout } = await lab.exec(netns, binary, [server, '53', String(count), name, '2000']);
  return JSON.parse(stdout.trim()) as QueryBurst;
}
