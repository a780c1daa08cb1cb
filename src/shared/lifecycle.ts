/**
 * A long-lived part of the agent: probes, kernel counters, informers, the Event writer, the
 * HTTP server. One shape for all of them, so that the agent starts and stops them the same way.
 */
export interface Lifecycle {
  /** Names the part in logs and in the readiness text. */
  readonly name: string;
  /**
   * Starts the part. Resolves once it runs (not once it is ready); rejects when it cannot start,
   * having released whatever it took. Aborting `signal` stops it like `stop()`.
   */
  start(signal: AbortSignal): void | Promise<void>;
  /** Stops the part; safe to call more than once; resolves once nothing of it runs. */
  stop(): Promise<void>;
  /** What the part still waits for before it does its job fully; undefined once it does. */
  waitingFor?(): string | undefined;
}

/** One part's failure to stop, with the part it came from. */
export interface StopFailure {
  readonly part: string;
  readonly error: unknown;
}

/**
 * Starts parts in order and stops them in reverse. When a part fails to start, the parts already
 * started are stopped (in reverse order) before the error reaches the caller, so a failed start
 * leaves nothing running.
 */
export class LifecycleStack {
  private readonly started: Lifecycle[] = [];
  private readonly abort = new AbortController();
  private stopping: Promise<StopFailure[]> | undefined;

  /** Starts `part` and stacks it; on failure unwinds the stack, then rethrows. */
  async push(part: Lifecycle): Promise<void> {
    if (this.stopping) throw new Error(`cannot start ${part.name}: the agent is stopping`);
    try {
      await part.start(this.abort.signal);
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.started.push(part);
  }

  /** What the started parts still wait for, one entry per part that waits. */
  waitingFor(): string[] {
    const waiting: string[] = [];
    for (const part of this.started) {
      const detail = part.waitingFor?.();
      if (detail !== undefined) waiting.push(detail);
    }
    return waiting;
  }

  /**
   * Stops every started part, the last started first, each after the one above it has stopped;
   * a part that fails to stop does not keep the others running. Resolves with the failures.
   */
  stop(): Promise<StopFailure[]> {
    this.stopping ??= (async () => {
      const failures: StopFailure[] = [];
      for (const part of this.started.splice(0).reverse()) {
        try {
          await part.stop();
        } catch (error) {
          failures.push({ part: part.name, error });
        }
      }
      this.abort.abort();
      return failures;
    })();
    return this.stopping;
  }
}
