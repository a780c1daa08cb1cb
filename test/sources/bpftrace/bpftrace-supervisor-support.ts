import { Writable } from 'node:stream';

import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';

import type { Delay } from '../../../src/shared/delay.js';

export interface LogRecord {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

/** A real pino logger writing parsed records to an array. */
export function capturingLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') records.push(JSON.parse(line) as LogRecord);
      }
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, destination), records };
}

interface PendingDelay {
  readonly ms: number;
  readonly resolve: () => void;
}

/** A Delay that only elapses when the test says so; aborting still ends it at once. */
export class ManualDelay {
  private readonly pending: PendingDelay[] = [];
  readonly requested: number[] = [];

  readonly delay: Delay = (ms, signal) =>
    new Promise((resolve) => {
      this.requested.push(ms);
      if (signal?.aborted) {
        resolve();
        return;
      }
      const entry: PendingDelay = {
        ms,
        resolve: () => {
          this.remove(entry);
          resolve();
        },
      };
      this.pending.push(entry);
      signal?.addEventListener('abort', entry.resolve, { once: true });
    });

  pendingDurations(): number[] {
    return this.pending.map((entry) => entry.ms);
  }

  /** Waits until a delay of `ms` is pending, then lets it elapse. */
  async elapse(ms: number): Promise<void> {
    await waitFor(
      () => this.pending.some((entry) => entry.ms === ms),
      `a pending delay of ${ms} ms`,
    );
    this.pending.find((entry) => entry.ms === ms)?.resolve();
  }

  private remove(entry: PendingDelay): void {
    const index = this.pending.indexOf(entry);
    if (index !== -1) this.pending.splice(index, 1);
  }
}

/** Polls until `condition` holds; fails with `what` after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`metric ${name} is not registered`);
  const { values } = await metric.get();
  const found = values.find((value) =>
    Object.entries(labels).every(([key, expected]) => String(value.labels[key]) === expected),
  );
  return found?.value;
}

export { isAlive } from '../../support/processes.js';
