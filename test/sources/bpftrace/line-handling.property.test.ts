import { Readable } from 'node:stream';

import fc from 'fast-check';
import { pino } from 'pino';
import { Registry } from 'prom-client';

import { createLineDecoder } from '../../../src/decode/decode.js';
import { MAX_LINE_CHARS } from '../../../src/decode/decoded-line.js';
import type { ProbeEvent } from '../../../src/events/types.js';
import { BpftraceSupervisor } from '../../../src/sources/bpftrace/bpftrace-supervisor.js';
import {
  lineBatches,
  type ProbeExit,
  type ProbeProcess,
} from '../../../src/sources/bpftrace/probe-process.js';
import { hostileLine } from '../../support/hostile-lines.js';
import { propertyParameters } from '../../support/property.js';
import { ManualDelay, metricValue } from './bpftrace-supervisor-support.js';

const PROBE = 'tracepoint/property';
const realDecode = createLineDecoder(PROBE, (code) => `UNKNOWN_${code}`);

/**
 * A probe process that prints `batches` and exits when killed; `reading` is set from its
 * first batch until the supervisor has handled its last.
 */
function scriptedProcess(
  batches: readonly (readonly string[])[],
  reading: { active: boolean },
): ProbeProcess {
  let exit: (exit: ProbeExit) => void = () => {};
  const exited = new Promise<ProbeExit>((resolve) => (exit = resolve));
  return {
    pid: undefined,
    stdoutBatches: (async function* () {
      reading.active = true;
      for (const batch of batches) yield batch;
      reading.active = false;
    })(),
    stderrLines: (async function* () {})(),
    kill: (signal) => exit({ exitCode: undefined, signal, spawnError: undefined }),
    exited,
  };
}

/** Cuts `lines` into consecutive batches of the given sizes (the rest in one last batch). */
function batchesOf(lines: readonly string[], sizes: readonly number[]): string[][] {
  const batches: string[][] = [];
  let at = 0;
  for (const size of sizes) {
    if (at >= lines.length) break;
    batches.push(lines.slice(at, at + size));
    at += size;
  }
  if (at < lines.length) batches.push(lines.slice(at));
  return batches;
}

interface Expected {
  events: ProbeEvent[];
  rejected: Map<string, number>;
  lost: number;
}

/** What the supervisor must count: the real decoder's verdict on each line, and the injected faults. */
function expectedCounts(lines: readonly string[], decoderThrowsAt: ReadonlySet<number>): Expected {
  const expected: Expected = { events: [], rejected: new Map(), lost: 0 };
  const reject = (code: string) =>
    expected.rejected.set(code, (expected.rejected.get(code) ?? 0) + 1);
  let handled = 0;
  for (const line of lines) {
    if (line.trim() === '') continue;
    handled += 1;
    if (decoderThrowsAt.has(handled)) {
      reject('decoder_exception');
      continue;
    }
    const decoded = realDecode(line);
    if (decoded.type === 'event') expected.events.push(decoded.event);
    else if (decoded.type === 'lost') expected.lost += decoded.count;
    else if (decoded.type === 'rejected') reject(decoded.code);
  }
  return expected;
}

const faults = fc.record({
  /** Lines (1-based, among the non-blank ones) on which the decoder throws. */
  decoderThrowsAt: fc.uniqueArray(fc.integer({ min: 1, max: 80 }), { maxLength: 4 }),
  /** Events (1-based) on which the event sink throws. */
  sinkThrowsAt: fc.uniqueArray(fc.integer({ min: 1, max: 80 }), { maxLength: 10 }),
  /** Every n-th log write while lines are handled throws; 0: the log never fails. */
  logFailsEvery: fc.integer({ min: 0, max: 4 }),
});

describe('the supervisor reading any probe output (property)', () => {
  it('counts every line exactly once by what it decodes to, whatever throws inside its handling', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(hostileLine, fc.constantFrom('', '  ', '\t')), { maxLength: 80 }),
          fc.array(fc.integer({ min: 1, max: 20 }), { maxLength: 10 }),
          faults,
          async (lines, sizes, { decoderThrowsAt, sinkThrowsAt, logFailsEvery }) => {
            const registry = new Registry();
            let writes = 0;
            // The log fails only inside line handling: that is the code under test.
            const reading = { active: false };
            const logger = pino(
              { level: 'debug' },
              {
                write: () => {
                  if (!reading.active) return;
                  writes += 1;
                  if (logFailsEvery > 0 && writes % logFailsEvery === 0) {
                    throw new Error('log destination broken');
                  }
                },
              },
            );
            const throwingDecodes = new Set(decoderThrowsAt);
            const throwingSinks = new Set(sinkThrowsAt);
            const received: ProbeEvent[] = [];
            let decodes = 0;
            const supervisor = new BpftraceSupervisor({
              probes: [{ name: PROBE, script: 'hostile.bt', args: [] }],
              decoderFor: () => (line) => {
                decodes += 1;
                if (throwingDecodes.has(decodes)) throw new Error('decoder bug');
                return realDecode(line);
              },
              onEvent: (event) => {
                received.push(event);
                if (throwingSinks.has(received.length)) throw new Error('sink bug');
              },
              spawn: () => scriptedProcess(batchesOf(lines, sizes), reading),
              registry,
              logger,
              delay: new ManualDelay().delay,
              now: () => 0,
            });
            supervisor.start();
            await supervisor.stop();

            const expected = expectedCounts(lines, throwingDecodes);
            expect(received).toEqual(expected.events);
            const value = (name: string, labels: Record<string, string> = {}) =>
              metricValue(registry, name, { probe: PROBE, ...labels });
            expect(await value('conntrack_observer_probe_events_decoded_total')).toBe(
              expected.events.length,
            );
            expect(await value('conntrack_observer_probe_events_lost_total')).toBe(expected.lost);
            const rejected = await registry
              .getSingleMetric('conntrack_observer_probe_lines_rejected_total')!
              .get();
            const counted = new Map(
              rejected.values
                .filter((sample) => sample.value > 0)
                .map((sample) => [String(sample.labels.error), sample.value]),
            );
            expect(counted).toEqual(expected.rejected);
            if (logFailsEvery === 0) {
              expect(await value('conntrack_observer_probe_line_handling_errors_total')).toBe(0);
            }
          },
        ),
        propertyParameters(300),
      );
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

/** The lines `lineBatches` must yield for `text`, when no line is over the limit. */
function expectedLines(text: string): string[] {
  const lines = text.split('\n');
  const last = lines.pop() ?? '';
  if (last !== '') lines.push(last);
  return lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
}

/** Splits `bytes` at the given offsets: pipe reads end anywhere, inside a UTF-8 sequence too. */
function chunksOf(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const offsets = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let at = 0;
  for (const offset of offsets) {
    if (offset > at) chunks.push(bytes.subarray(at, offset));
    at = Math.max(at, offset);
  }
  if (at < bytes.length) chunks.push(bytes.subarray(at));
  return chunks;
}

async function collect(chunks: readonly Buffer[]): Promise<string[]> {
  const lines: string[] = [];
  for await (const batch of lineBatches(Readable.from(chunks, { objectMode: false }))) {
    lines.push(...batch);
  }
  return lines;
}

describe('splitting probe stdout into lines (property)', () => {
  it('yields the same lines however the bytes are cut into reads, invalid UTF-8 included', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.array(hostileLine, { maxLength: 20 }).map((lines) => Buffer.from(lines.join('\n'))),
          fc.uint8Array({ maxLength: 400 }).map((bytes) => Buffer.from(bytes)),
        ),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (bytes, cuts) => {
          expect(await collect(chunksOf(bytes, cuts))).toEqual(
            expectedLines(bytes.toString('utf8')),
          );
        },
      ),
      propertyParameters(500),
    );
  });

  it('hands on a line past the limit once, cut, drops the rest of it and keeps the lines after', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 * 65_536 }),
        fc.array(fc.integer({ min: 1, max: 256 * 1024 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.stringMatching(/^[a-z]{1,10}$/), { maxLength: 3 }),
        async (over, readSizes, after) => {
          const long = 'x'.repeat(MAX_LINE_CHARS + over);
          const bytes = Buffer.from(`first\n${long}\n${after.join('\n')}`);
          // Reads of the sizes given, cycling: never one read holding everything.
          const chunks: Buffer[] = [];
          for (let at = 0, i = 0; at < bytes.length; i += 1) {
            const size = readSizes[i % readSizes.length]!;
            chunks.push(bytes.subarray(at, at + size));
            at += size;
          }
          const lines = await collect(chunks);
          expect(lines[0]).toBe('first');
          expect(lines[1]!.length).toBeGreaterThan(MAX_LINE_CHARS);
          expect(lines.slice(2)).toEqual(after);
        },
      ),
      propertyParameters(10),
    );
  });
});
