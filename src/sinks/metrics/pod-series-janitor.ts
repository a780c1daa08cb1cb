import type { Clock } from '../../shared/clock.js';
import { waitOrAbort, type Delay } from '../../shared/timers.js';
import type { Lifecycle } from '../../shared/lifecycle.js';

export interface PodSeriesJanitorOptions {
  readonly clock: Clock;
  /** How long a deleted pod's series stay, so the last increments are still scraped. */
  readonly graceMs: number;
  /** Removes every metric series labelled with this pod. */
  readonly forgetPod: (namespace: string, name: string) => void;
  /** Reports a failing callback; the janitor goes on with the other pods. */
  readonly onError?: (error: unknown, namespace: string, name: string) => void;
  /** How often a started janitor sweeps, and the wait it sweeps with. */
  readonly sweepMs: number;
  readonly delay: Delay;
}

/**
 * Keeps the number of pod-labelled metric series bounded: a deleted pod's series are removed
 * `graceMs` after its deletion, unless a pod of the same name appears again meanwhile (a
 * StatefulSet pod recreated under its name continues its series). Once started it sweeps
 * every `sweepMs`; time comes from the injected clock, waits from the injected delay.
 */
export class PodSeriesJanitor implements Lifecycle {
  readonly name = 'pod-series-janitor';
  private readonly deadlines = new Map<string, { namespace: string; name: string; atMs: number }>();
  private readonly stopController = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly options: PodSeriesJanitorOptions) {}

  start(signal: AbortSignal): void {
    const { delay, sweepMs } = this.options;
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.loop ??= (async () => {
      while (!this.stopController.signal.aborted) {
        await waitOrAbort(delay, sweepMs, this.stopController.signal);
        this.sweep();
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    await this.loop;
  }

  onPodDeleted(namespace: string, name: string): void {
    this.deadlines.set(keyOf(namespace, name), {
      namespace,
      name,
      atMs: this.options.clock.nowMs() + this.options.graceMs,
    });
  }

  onPodSeen(namespace: string, name: string): void {
    this.deadlines.delete(keyOf(namespace, name));
  }

  /** Forgets the pods whose grace period has passed; returns how many. */
  sweep(): number {
    const now = this.options.clock.nowMs();
    let forgotten = 0;
    for (const [key, entry] of this.deadlines) {
      if (entry.atMs > now) continue;
      this.deadlines.delete(key);
      forgotten += 1;
      try {
        this.options.forgetPod(entry.namespace, entry.name);
      } catch (error) {
        this.options.onError?.(error, entry.namespace, entry.name);
      }
    }
    return forgotten;
  }

  /** Deleted pods whose series are still kept. */
  pendingCount(): number {
    return this.deadlines.size;
  }

  /** Milliseconds until the next deadline, or undefined when none is pending. */
  msUntilNextDeadline(): number | undefined {
    let next: number | undefined;
    for (const { atMs } of this.deadlines.values())
      next = next === undefined ? atMs : Math.min(next, atMs);
    return next === undefined ? undefined : Math.max(0, next - this.options.clock.nowMs());
  }
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
