/**
 * The one seam for time passing: a part that waits in an async loop (a restart's backoff, an
 * informer's retry), acts later (a pending log summary) or acts regularly (a poll, a refresh)
 * takes `Timers`, or the member it uses, rather than calling setTimeout or setInterval, so
 * that its tests drive time themselves. main.ts gives every part the one real `unrefTimers`
 * (through system-dependencies.ts). Reading the time is `Clock` (clock.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Waits `ms` milliseconds. Settles early (resolving or rejecting, callers accept either) when
 * `signal` aborts, so that a waiting loop can be woken or stopped.
 */
export type Delay = (ms: number, signal?: AbortSignal) => Promise<void>;

export interface Timers {
  /** Calls `tick` once after `ms`; returns a function that cancels it. */
  after(ms: number, tick: () => void): () => void;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
  /** Waits in an async loop (see `Delay`). */
  readonly delay: Delay;
}

/** Timers on the real clock, unref'd: no pending callback or wait ever holds the process open. */
export const unrefTimers: Timers = {
  after(ms, tick) {
    const handle = setTimeout(tick, ms).unref();
    return () => clearTimeout(handle);
  },
  every(ms, tick) {
    const handle = setInterval(tick, ms).unref();
    return () => clearInterval(handle);
  },
  delay: async (ms, signal) => {
    await sleep(ms, undefined, { signal, ref: false });
  },
};

/** Waits, treating an abort as the end of the wait rather than an error. */
export async function waitOrAbort(delay: Delay, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  try {
    await delay(ms, signal);
  } catch {
    // An aborted wait is the wake-up itself, not a failure.
  }
}
