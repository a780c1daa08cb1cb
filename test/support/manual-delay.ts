import type { Delay } from '../../src/shared/timers.js';
import { eventually } from './eventually.js';

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
    await eventually(
      `a pending delay of ${ms} ms`,
      () => this.pending.some((entry) => entry.ms === ms),
      10_000,
    );
    this.pending.find((entry) => entry.ms === ms)?.resolve();
  }

  private remove(entry: PendingDelay): void {
    const index = this.pending.indexOf(entry);
    if (index !== -1) this.pending.splice(index, 1);
  }
}
