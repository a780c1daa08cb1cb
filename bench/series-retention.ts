/*
 * Bounded series: 100,000 distinct client addresses come and go over simulated time through
 * the agent's real event metrics (standalone: series keyed by address, no pod), scraped like
 * Prometheus would. Each variant runs in its own Node process so that its RSS is its own:
 * with the agent's retention, and with retention switched off (what the agent did before).
 */
import { fileURLToPath } from 'node:url';

import { execa } from 'execa';
import { Registry } from 'prom-client';

import type { AttributedEvent, DnsDropEvent } from '../src/events/types.js';
import {
  DEFAULT_SOURCE_SERIES_RETENTION,
  EventMetrics,
  type SourceSeriesRetention,
} from '../src/sinks/metrics/event-metrics.js';

export const SERIES_BENCH = {
  addresses: 100_000,
  /** Simulated time over which the addresses appear, one after the other. */
  spreadSeconds: 200 * 60,
  /** Each address has drops for this long after it appears, then never again (pod churn). */
  activeSeconds: 180,
  /** One drop per address this often while it is active. */
  eventEverySeconds: 15,
  /** How often Prometheus scrapes. */
  scrapeEverySeconds: 30,
  /** Simulated time after the last address appeared, for the idle series to be forgotten. */
  tailSeconds: 15 * 60,
  checkpointEvery: 10_000,
} as const;

export type SeriesVariant = 'retention' | 'unbounded';

export interface SeriesCheckpoint {
  /** Addresses that have appeared so far. */
  readonly addresses: number;
  /** Series the event counters hold (the cache, and what a scrape exports). */
  readonly series: number;
  readonly exportedSeries: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
}

export interface SeriesRun {
  readonly variant: SeriesVariant;
  readonly retention: { idleMs: number; maxSeries: number; sweepEveryMs: number };
  readonly events: number;
  readonly scrapes: number;
  readonly forgottenIdle: number;
  readonly forgottenLimit: number;
  readonly checkpoints: SeriesCheckpoint[];
  readonly wallSeconds: number;
}

const UNBOUNDED: SourceSeriesRetention = {
  idleMs: Number.POSITIVE_INFINITY,
  maxSeries: Number.POSITIVE_INFINITY,
  sweepEveryMs: Number.POSITIVE_INFINITY,
};

function addressOf(index: number): string {
  return `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}`;
}

function drop(sourceIp: string): AttributedEvent {
  const event: DnsDropEvent = {
    kind: 'dns_drop',
    probe: 'tracepoint/dns-drops',
    monotonicNs: 0n,
    cpu: 0,
    netnsInode: 4026531840,
    protocol: 'udp',
    reason: 'NO_SOCKET',
    direction: 'query',
    tuple: { srcIp: sourceIp, srcPort: 40000, dstIp: '192.0.2.53', dstPort: 53 },
    location: '-',
  };
  return { event, attribution: { sourceIp, netnsInode: event.netnsInode }, wallTimeMs: 0 };
}

function memory(): { rssBytes: number; heapUsedBytes: number } {
  // --expose-gc: measure what is held, not what the collector has not reached yet.
  (globalThis as { gc?: () => void }).gc?.();
  const usage = process.memoryUsage();
  return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed };
}

async function forgotten(registry: Registry, reason: 'idle' | 'limit'): Promise<number> {
  const metric = await registry
    .getSingleMetric('conntrack_observer_event_series_forgotten_total')!
    .get();
  return metric.values.find((sample) => sample.labels.reason === reason)?.value ?? 0;
}

/** One variant, in this process. */
export async function simulate(variant: SeriesVariant): Promise<SeriesRun> {
  const started = Date.now();
  const b = SERIES_BENCH;
  const retention = variant === 'retention' ? DEFAULT_SOURCE_SERIES_RETENTION : UNBOUNDED;
  const registry = new Registry();
  let nowMs = 0;
  const metrics = new EventMetrics(registry, { nowMs: () => nowMs, retention });
  const perSecond = b.addresses / b.spreadSeconds;
  const checkpoints: SeriesCheckpoint[] = [];
  let events = 0;
  let scrapes = 0;
  let exportedSeries = 0;
  let nextCheckpoint = b.checkpointEvery;
  const scrape = async () => {
    const text = await registry.metrics();
    scrapes += 1;
    exportedSeries = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('conntrack_observer_dns_drops_total{')) exportedSeries += 1;
    }
  };
  const checkpoint = async (addresses: number) => {
    await scrape();
    checkpoints.push({ addresses, series: metrics.cachedSeries(), exportedSeries, ...memory() });
  };
  for (let second = 0; second < b.spreadSeconds + b.tailSeconds; second += 1) {
    nowMs = second * 1000;
    const appeared = Math.min(b.addresses, Math.floor((second + 1) * perSecond));
    // Addresses active now: appeared within the last activeSeconds; each drops once every
    // eventEverySeconds, spread over the seconds by its index.
    const firstActive = Math.max(0, Math.floor((second - b.activeSeconds) * perSecond));
    for (let index = firstActive; index < appeared; index += 1) {
      if (index % b.eventEverySeconds !== second % b.eventEverySeconds) continue;
      metrics.record(drop(addressOf(index)), false);
      events += 1;
    }
    if (second % b.scrapeEverySeconds === 0) await scrape();
    if (appeared >= nextCheckpoint) {
      await checkpoint(appeared);
      nextCheckpoint += b.checkpointEvery;
    }
  }
  await checkpoint(b.addresses);
  return {
    variant,
    retention: {
      idleMs: retention.idleMs,
      maxSeries: retention.maxSeries,
      sweepEveryMs: retention.sweepEveryMs,
    },
    events,
    scrapes,
    forgottenIdle: await forgotten(registry, 'idle'),
    forgottenLimit: await forgotten(registry, 'limit'),
    checkpoints,
    wallSeconds: (Date.now() - started) / 1000,
  };
}

export interface SeriesRetentionFigures {
  readonly bench: typeof SERIES_BENCH;
  readonly runs: SeriesRun[];
}

/** Both variants, each in a Node process of its own. */
export async function measureSeriesRetention(): Promise<SeriesRetentionFigures> {
  const self = fileURLToPath(import.meta.url);
  const runs: SeriesRun[] = [];
  for (const variant of ['retention', 'unbounded'] satisfies SeriesVariant[]) {
    const { stdout } = await execa('node', ['--expose-gc', '--import', 'tsx', self, variant], {
      env: { NODE_OPTIONS: '' },
    });
    runs.push(JSON.parse(stdout) as SeriesRun);
  }
  return { bench: SERIES_BENCH, runs };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const variant = process.argv[2];
  if (variant !== 'retention' && variant !== 'unbounded') {
    throw new Error('usage: series-retention.ts retention|unbounded');
  }
  process.stdout.write(`${JSON.stringify(await simulate(variant))}\n`);
}
