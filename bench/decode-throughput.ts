import { readFileSync, readdirSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { standaloneResolver } from '../src/attribute/standalone-resolver.js';
import { systemClock } from '../src/shared/clock.js';
import { EventLog } from '../src/sinks/log/event-log.js';
import { EventMetrics } from '../src/sinks/metrics/event-metrics.js';
import { EventPipeline } from '../src/event-pipeline.js';
import { createLineDecoder } from '../src/decode/decode.js';

export interface DecodeThroughput {
  lines: number;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  fixtures: string[];
}

const FIXTURES = new URL('../test/fixtures/bpftrace/', import.meta.url);

/** Recorded event lines of the real probes (malformed fixtures excluded). */
function recordedEventLines(): { lines: string[]; fixtures: string[] } {
  const fixtures = readdirSync(FIXTURES).filter(
    (name) => name.endsWith('.jsonl') && !name.includes('malformed'),
  );
  const lines = fixtures.flatMap((name) =>
    readFileSync(new URL(name, FIXTURES), 'utf8')
      .split('\n')
      .filter((line) => line.includes('"printf"')),
  );
  if (lines.length === 0) throw new Error('no recorded printf lines under test/fixtures/bpftrace');
  return { lines, fixtures };
}

/** decode → attribute → count → log, on one core, over recorded lines repeated. */
export function measureDecodeThroughput(totalLines = 2_000_000): DecodeThroughput {
  const { lines, fixtures } = recordedEventLines();
  const registry = new Registry();
  const metrics = new EventMetrics(registry);
  const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
  const logger = pino({ level: 'info' }, sink);
  const eventLog = new EventLog({
    logger,
    maxLinesPerWindow: 100,
    windowMs: 10_000,
    nowMs: Date.now,
  });
  const pipeline = new EventPipeline({
    resolver: () => standaloneResolver,
    sinks: [
      { name: 'metrics', handle: (e) => metrics.record(e, false) },
      { name: 'log', handle: (e) => eventLog.record(e) },
    ],
    clock: systemClock,
    registry,
    logger,
  });
  const decode = createLineDecoder('bench', (code) => `REASON_${code}`);
  let events = 0;
  const run = (count: number) => {
    for (let i = 0; i < count; i += 1) {
      const decoded = decode(lines[i % lines.length]!);
      if (decoded.type === 'event') {
        pipeline.handle(decoded.event);
        events += 1;
      }
    }
  };
  run(100_000); // warm-up: let V8 optimise the hot path before timing it
  events = 0;
  const started = process.hrtime.bigint();
  run(totalLines);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { lines: totalLines, events, seconds, eventsPerSecond: events / seconds, fixtures };
}
