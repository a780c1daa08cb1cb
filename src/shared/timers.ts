/**
 * The seam for callbacks on time: a part that acts later (a pending log summary) or regularly
 * (a poll, a refresh) takes `Timers` rather than calling setTimeout or setInterval, so that
 * its tests fire the callbacks themselves. Waiting in an async loop is `Delay` (delay.ts);
 * reading the time is `Clock` (clock.ts).
 */
export interface Timers {
  /** Calls `tick` once after `ms`; returns a function that cancels it. */
  after(ms: number, tick: () => void): () => void;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
}

/** Timers on the real clock, unref'd: no pending callback ever holds the process open. */
export const unrefTimers: Timers = {
  after(ms, tick) {
    const handle = setTimeout(tick, ms).unref();
    return () => clearTimeout(handle);
  },
  every(ms, tick) {
    const handle = setInterval(tick, ms).unref();
    return () => clearInterval(handle);
  },
};
