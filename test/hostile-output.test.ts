import { fileURLToPath } from 'node:url';

import { execa } from 'execa';

import { tally } from './fixtures/fake-bpftrace/hostile-stream.mjs';
import { followAgentLog } from './support/agent-process.js';
import { scrape, sumOf, type Sample } from './support/prometheus-text.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const HOST = fileURLToPath(new URL('./support/hostile-agent-host.ts', import.meta.url));
const FAKE_BPFTRACE = fileURLToPath(
  new URL('./fixtures/fake-bpftrace/hostile-bpftrace.mjs', import.meta.url),
);
const LINES = 1_000_000;
const SEED = 20_260_512;
const DNS_PROBE = 'tracepoint/dns-drops';
const REJECTION_CODES = [
  'not_json',
  'not_an_object',
  'unknown_record',
  'bad_field_count',
  'bad_field',
  'unsupported_version',
  'bad_count',
  'line_too_long',
  'decoder_exception',
];
// Measured at about 20 s for the million lines on 2 shared CPUs; the bound leaves room for a
// busy machine, and a slower run fails with what was counted so far.
const READ_TIMEOUT_MS = 150_000;

describe('an agent fed a million hostile probe lines', () => {
  it(
    'never crashes, counts every good line exactly and every bad one as rejected by its code',
    async () => {
      const expected = tally(LINES, SEED);
      const child = execa('node', ['--import', 'tsx', HOST, FAKE_BPFTRACE], {
        cwd: REPO_ROOT,
        env: { HOSTILE_LINES: String(LINES), HOSTILE_SEED: String(SEED), NODE_OPTIONS: '' },
        reject: false,
        buffer: false,
      });
      const { logs, stderr, listening } = followAgentLog(child);
      const port = await listening;

      try {
        const baseUrl = `http://127.0.0.1:${port}`;
        const goodLines = Object.values(expected.events).reduce((a, b) => a + b, 0);
        const badLines = Object.values(expected.rejected).reduce((a, b) => a + b, 0);
        const started = Date.now();
        let samples: Sample[] = [];
        const accounted = () =>
          sumOf(samples, 'conntrack_observer_probe_events_decoded_total', { probe: DNS_PROBE }) +
          sumOf(samples, 'conntrack_observer_probe_lines_rejected_total', { probe: DNS_PROBE });
        while (accounted() < goodLines + badLines) {
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`agent died: ${String(child.exitCode ?? child.signalCode)}`);
          }
          if (Date.now() - started > READ_TIMEOUT_MS) {
            throw new Error(
              `after ${READ_TIMEOUT_MS} ms only ${accounted()} of ${goodLines + badLines} lines were counted`,
            );
          }
          await new Promise((resolve) => setTimeout(resolve, 500));
          try {
            samples = await scrape(baseUrl);
          } catch (error) {
            const died = await Promise.race([
              child.then((result) => result),
              new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2_000)),
            ]);
            if (died === undefined) throw error;
            throw new Error(
              `agent died (exit ${String(died.exitCode)}, ${String(died.signal)}) after ${accounted()} lines: ${stderr.join('').slice(-2_000)} ${JSON.stringify(logs.slice(-3))}`,
            );
          }
        }
        const readMs = Date.now() - started;
        process.stdout.write(`hostile output: ${LINES} lines read and counted in ${readMs} ms\n`);

        const ofProbe = (name: string, labels: Record<string, string> = {}) =>
          sumOf(samples, name, { probe: DNS_PROBE, ...labels });
        expect(ofProbe('conntrack_observer_probe_events_decoded_total')).toBe(goodLines);
        const rejected = Object.fromEntries(
          REJECTION_CODES.map((code) => [
            code,
            ofProbe('conntrack_observer_probe_lines_rejected_total', { error: code }),
          ]),
        );
        expect(rejected).toEqual(
          Object.fromEntries(REJECTION_CODES.map((code) => [code, expected.rejected[code] ?? 0])),
        );
        expect(ofProbe('conntrack_observer_probe_events_lost_total')).toBe(expected.lost);
        expect(ofProbe('conntrack_observer_probe_line_handling_errors_total')).toBe(0);
        expect(ofProbe('conntrack_observer_probe_restarts_total')).toBe(0);
        expect(ofProbe('conntrack_observer_probe_up')).toBe(1);
        expect(sumOf(samples, 'conntrack_observer_dns_drops_total')).toBe(expected.events.dns_drop);
        expect(sumOf(samples, 'conntrack_observer_insert_failures_total')).toBe(
          expected.events.insert_failed,
        );
        expect(sumOf(samples, 'conntrack_observer_sink_errors_total')).toBe(0);
        // Rejections are logged at most ten a minute, however many arrive.
        expect(logs.filter((record) => record.msg === 'probe line rejected').length).toBeLessThan(
          30,
        );
      } finally {
        child.kill('SIGTERM');
        // Also when the test failed: the child must be gone before the test ends.
        await child;
      }
      const result = await child;
      expect({ exitCode: result.exitCode, signal: result.signal }).toEqual({
        exitCode: 0,
        signal: undefined,
      });
    },
    READ_TIMEOUT_MS + 60_000,
  );
});
