import type { CoreV1Event } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { backoffDelay } from '../../shared/backoff.js';
import type { Clock } from '../../shared/clock.js';
import { EventRecorderMetrics, type EventDropCause } from './recorder-metrics.js';
import { classifyApiError, type EventsApi } from './events-api.js';
import { waitOrAbort, type Delay } from '../../shared/timers.js';
import { TokenBucket } from '../../shared/token-bucket.js';

/** The name Events carry as their source and reporting component. */
export const REPORTING_COMPONENT = 'conntrack-race-observer';

export interface InvolvedObject {
  readonly kind: 'Pod' | 'Node';
  /** Empty for the Node (cluster-scoped). */
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

/** One thing that happened, to be counted on an Event. */
export interface EventOccurrence {
  readonly involvedObject: InvolvedObject;
  readonly reason: string;
  /** Separates Events of one reason on one object, e.g. the race kind or the drop reason. */
  readonly aggregationKey: string;
  readonly message: string;
  /** When it happened (wall clock): the Event's first/last timestamps. */
  readonly wallTimeMs: number;
  /** How many times it happened (counted elsewhere, e.g. in the kernel); default 1. */
  readonly occurrences?: number;
  /** The message is about to improve (what it is written from is being read): see EventHold. */
  readonly hold?: EventHold;
}

/**
 * Holds the first write of a new Event until `until` settles, at most `maxWaitMs`, then writes
 * `message()` instead of the occurrence's message. Only an Event not yet created is held: the
 * first message is the one read, and exporters forward the create.
 */
export interface EventHold {
  readonly until: Promise<unknown>;
  readonly maxWaitMs: number;
  readonly message: () => string;
}

export type RecordOutcome = 'queued' | 'aggregated' | 'dropped';

export interface EventRecorderOptions {
  readonly api: EventsApi;
  readonly clock: Clock;
  readonly delay: Delay;
  readonly registry: Registry;
  readonly logger: Logger;
  /** This node: the Events' reportingInstance and source.host. */
  readonly nodeName: string;
  /** Occurrences of one key closer than this continue one Event; after a quiet window, a new one. */
  readonly aggregationWindowMs?: number;
  /** Least time between two writes of one Event: a storm becomes one create and a few patches. */
  readonly patchIntervalMs?: number;
  /** New Events per object: burst, then refill rate (client-go's spam filter: 25, 1 per 5 min). */
  readonly perObjectBurst?: number;
  readonly perObjectPerSecond?: number;
  /** All writes of the agent: burst, then sustained rate. Writes wait for a token; nothing is lost. */
  readonly globalBurst?: number;
  readonly globalPerSecond?: number;
  /** Distinct Events tracked at once (the queue's bound). */
  readonly maxKeys?: number;
  /** Attempts of one write on 429/5xx/network errors before its occurrences are dropped. */
  readonly maxAttempts?: number;
  readonly initialRetryMs?: number;
  readonly maxRetryMs?: number;
  /** Randomness for the retry jitter; injectable so tests are reproducible. */
  readonly random?: () => number;
}

const DEFAULTS = {
  aggregationWindowMs: 10 * 60_000,
  patchIntervalMs: 30_000,
  perObjectBurst: 25,
  perObjectPerSecond: 1 / 300,
  globalBurst: 25,
  globalPerSecond: 5,
  maxKeys: 1024,
  maxAttempts: 10,
  initialRetryMs: 1000,
  maxRetryMs: 60_000,
};

interface EventState {
  readonly key: string;
  readonly involvedObject: InvolvedObject;
  /** The Event's namespace: the pod's, or "default" for the Node (as the kubelet does). */
  readonly namespace: string;
  readonly reason: string;
  /** Chosen at the first attempt and kept across retries, so a create that succeeded unseen is found (409). */
  name: string;
  created: boolean;
  firstMs: number;
  lastMs: number;
  message: string;
  /** Set while the latest occurrence's message may still improve (EventHold). */
  refine: (() => string) | undefined;
  writtenCount: number;
  pending: number;
  lastOccurrenceMs: number;
  lastWriteMs: number;
  readyAtMs: number;
  attempts: number;
  queued: boolean;
  inFlight: boolean;
}

/**
 * Posts core/v1 Events the way client-go's EventCorrelator does, adapted so that no occurrence
 * is silently lost: occurrences of one key (object, reason, aggregation key) within the window
 * go to one Event whose `count` is patched, and while a write waits (rate limit, patch interval,
 * retry backoff) further occurrences are folded into it. `record()` is synchronous and returns
 * at once; one background loop does the writes. What cannot be written is counted by cause.
 */
export class EventRecorder {
  private readonly settings: typeof DEFAULTS;
  private readonly states = new Map<string, EventState>();
  private readonly queue = new Set<EventState>();
  private readonly objectBuckets = new Map<string, TokenBucket>();
  private readonly globalBucket: TokenBucket;
  private readonly metrics: EventRecorderMetrics;
  private readonly stopController = new AbortController();
  private wakeController = new AbortController();
  private closed = false;
  private draining = false;
  private loop: Promise<void> | undefined;
  private nameSequence = 0;
  private readonly random: () => number;

  constructor(private readonly options: EventRecorderOptions) {
    this.settings = { ...DEFAULTS, ...definedOnly(options) };
    this.random = options.random ?? Math.random;
    this.metrics = new EventRecorderMetrics(options.registry);
    this.globalBucket = new TokenBucket(
      () => options.clock.nowMs(),
      this.settings.globalBurst,
      this.settings.globalPerSecond,
    );
  }

  start(): void {
    this.loop ??= this.run().catch((error: unknown) => {
      this.options.logger.error({ err: error }, 'event writer loop failed');
    });
  }

  /** Never throws, never waits. */
  record(occurrence: EventOccurrence): RecordOutcome {
    const occurrences = occurrence.occurrences ?? 1;
    if (this.closed) return this.drop('shutdown', occurrences);
    const now = this.options.clock.nowMs();
    const { involvedObject, reason, aggregationKey } = occurrence;
    const key = `${involvedObject.uid}\u0000${reason}\u0000${aggregationKey}`;
    let state = this.states.get(key);
    if (
      state &&
      !state.queued &&
      !state.inFlight &&
      now - state.lastOccurrenceMs > this.settings.aggregationWindowMs
    ) {
      this.states.delete(key);
      state = undefined;
    }
    let outcome: RecordOutcome = 'aggregated';
    if (!state) {
      if (this.states.size >= this.settings.maxKeys && !this.evictIdle())
        return this.drop('queue_full', occurrences);
      if (!this.objectBucket(involvedObject.uid).tryTake())
        return this.drop('rate_limited', occurrences);
      state = this.newState(key, occurrence, now);
      outcome = 'queued';
    } else {
      // Re-inserting keeps the Map in least-recently-used order for eviction.
      this.states.delete(key);
    }
    this.states.set(key, state);
    state.pending += occurrences;
    state.firstMs = Math.min(state.firstMs, occurrence.wallTimeMs);
    state.lastMs = Math.max(state.lastMs, occurrence.wallTimeMs);
    state.message = occurrence.message;
    state.refine = occurrence.hold?.message;
    state.lastOccurrenceMs = now;
    // Only a new Event is held, once: later occurrences must not push its write further away.
    if (occurrence.hold && outcome === 'queued') this.hold(state, occurrence.hold, now);
    if (!state.queued && !state.inFlight) this.enqueue(state, now);
    return outcome;
  }

  /**
   * Stops accepting occurrences, writes what is waiting for up to `flushTimeoutMs` (ignoring
   * patch intervals, still honouring the rate limit and retries), then abandons the request in
   * flight and stops. What is still unwritten is counted as dropped (shutdown).
   */
  async stop(flushTimeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.draining = true;
    this.wake();
    if (this.loop) {
      const deadline = new AbortController();
      await Promise.race([
        this.loop,
        waitOrAbort(this.options.delay, flushTimeoutMs, deadline.signal),
      ]);
      deadline.abort();
    }
    this.stopController.abort();
    this.wake();
    await this.loop;
    let unwritten = 0;
    for (const state of this.states.values()) unwritten += state.pending;
    if (unwritten > 0) {
      this.drop('shutdown', unwritten);
      this.options.logger.warn(
        { unwritten, flushTimeoutMs },
        'stopping: Kubernetes Event occurrences not written in time are counted as dropped (shutdown)',
      );
    }
    this.states.clear();
    this.queue.clear();
  }

  /** Occurrences recorded but not yet written (for tests and the shutdown log). */
  pendingOccurrences(): number {
    let pending = 0;
    for (const state of this.states.values()) pending += state.pending;
    return pending;
  }

  /** Delays the create until the hold settles or expires, whichever comes first. */
  private hold(state: EventState, hold: EventHold, now: number): void {
    const releaseAtMs = Math.max(state.readyAtMs, now + hold.maxWaitMs);
    state.readyAtMs = releaseAtMs;
    const release = (): void => {
      // Only the hold still in force is released: a retry's backoff is not cut short.
      if (state.created || state.readyAtMs !== releaseAtMs) return;
      state.readyAtMs = this.options.clock.nowMs();
      this.wake();
    };
    hold.until.then(release, release);
  }

  private newState(key: string, occurrence: EventOccurrence, now: number): EventState {
    const { involvedObject } = occurrence;
    return {
      key,
      involvedObject,
      namespace: involvedObject.namespace || 'default',
      reason: occurrence.reason,
      name: this.eventName(involvedObject.name, now),
      created: false,
      firstMs: occurrence.wallTimeMs,
      lastMs: occurrence.wallTimeMs,
      message: occurrence.message,
      refine: undefined,
      writtenCount: 0,
      pending: 0,
      lastOccurrenceMs: now,
      lastWriteMs: Number.NEGATIVE_INFINITY,
      readyAtMs: now,
      attempts: 0,
      queued: false,
      inFlight: false,
    };
  }

  private enqueue(state: EventState, now: number): void {
    state.queued = true;
    state.readyAtMs = Math.max(
      state.readyAtMs,
      state.created ? state.lastWriteMs + this.settings.patchIntervalMs : now,
    );
    this.queue.add(state);
    this.wake();
  }

  private drop(cause: EventDropCause, occurrences: number): 'dropped' {
    this.metrics.dropped.inc({ cause }, occurrences);
    return 'dropped';
  }

  /** Forgets the least recently used Event that has nothing waiting; false if every one has. */
  private evictIdle(): boolean {
    for (const [key, state] of this.states) {
      if (!state.queued && !state.inFlight && state.pending === 0) {
        this.states.delete(key);
        return true;
      }
    }
    return false;
  }

  private objectBucket(uid: string): TokenBucket {
    let bucket = this.objectBuckets.get(uid);
    if (!bucket) {
      if (this.objectBuckets.size >= this.settings.maxKeys) {
        // A full bucket behaves like a fresh one: forgetting it changes nothing.
        for (const [id, candidate] of this.objectBuckets)
          if (candidate.isFull()) this.objectBuckets.delete(id);
      }
      bucket = new TokenBucket(
        () => this.options.clock.nowMs(),
        this.settings.perObjectBurst,
        this.settings.perObjectPerSecond,
      );
      this.objectBuckets.set(uid, bucket);
    }
    return bucket;
  }

  /** Same form as client-go: "<object name>.<hex nanoseconds>", unique per recorder. */
  private eventName(objectName: string, nowMs: number): string {
    this.nameSequence = (this.nameSequence + 1) % 1_000_000;
    const suffix = (BigInt(Math.floor(nowMs)) * 1_000_000n + BigInt(this.nameSequence)).toString(
      16,
    );
    return `${objectName.slice(0, 253 - suffix.length - 1)}.${suffix}`;
  }

  private wake(): void {
    this.wakeController.abort();
  }

  private async sleep(ms: number | undefined): Promise<void> {
    this.wakeController = new AbortController();
    const signal = AbortSignal.any([this.wakeController.signal, this.stopController.signal]);
    if (signal.aborted) return;
    if (ms === undefined) {
      await new Promise<void>((resolve) =>
        signal.addEventListener('abort', () => resolve(), { once: true }),
      );
    } else {
      await waitOrAbort(this.options.delay, ms, signal);
    }
  }

  private nextDue(now: number): { state: EventState; waitMs: number } | undefined {
    let best: EventState | undefined;
    for (const state of this.queue) {
      if (!best || state.readyAtMs < best.readyAtMs) best = state;
    }
    if (!best) return undefined;
    const readyAt = this.draining && best.attempts === 0 ? now : best.readyAtMs;
    return { state: best, waitMs: Math.max(0, readyAt - now) };
  }

  private async run(): Promise<void> {
    while (!this.stopController.signal.aborted) {
      const now = this.options.clock.nowMs();
      const next = this.nextDue(now);
      if (!next) {
        if (this.draining) return;
        await this.sleep(undefined);
        continue;
      }
      if (next.waitMs > 0) {
        await this.sleep(next.waitMs);
        continue;
      }
      const tokenWaitMs = this.globalBucket.msUntilToken();
      if (tokenWaitMs > 0) {
        await this.sleep(tokenWaitMs);
        continue;
      }
      this.globalBucket.tryTake();
      await this.write(next.state);
    }
  }

  private async write(state: EventState): Promise<void> {
    this.queue.delete(state);
    state.queued = false;
    state.inFlight = true;
    const sending = state.pending;
    const count = state.writtenCount + sending;
    const operation = state.created ? 'patch' : 'create';
    if (state.refine) {
      state.message = state.refine();
      state.refine = undefined;
    }
    try {
      if (state.created) {
        await this.options.api.patch(
          state.namespace,
          state.name,
          {
            count,
            lastTimestamp: rfc3339(state.lastMs),
            message: state.message,
          },
          this.stopController.signal,
        );
      } else {
        await this.options.api.create(
          state.namespace,
          this.eventBody(state, count),
          this.stopController.signal,
        );
      }
      state.created = true;
      state.writtenCount = count;
      state.pending -= sending;
      state.attempts = 0;
      state.lastWriteMs = this.options.clock.nowMs();
      state.readyAtMs = state.lastWriteMs;
      this.metrics.written.inc({ reason: state.reason, operation });
    } catch (error) {
      this.onWriteError(state, operation, error);
    } finally {
      state.inFlight = false;
    }
    if (state.pending > 0 && !state.queued) this.enqueue(state, this.options.clock.nowMs());
    if (!state.created && state.pending === 0 && this.states.get(state.key) === state)
      this.states.delete(state.key);
  }

  private onWriteError(state: EventState, operation: 'create' | 'patch', error: unknown): void {
    const failure = classifyApiError(error);
    const now = this.options.clock.nowMs();
    state.attempts += 1;
    const log = {
      err: error,
      event: state.name,
      namespace: state.namespace,
      reason: state.reason,
      operation,
    };
    if (state.attempts >= this.settings.maxAttempts) {
      this.options.logger.warn(
        { ...log, attempts: state.attempts },
        'giving up on a Kubernetes Event write',
      );
      this.giveUp(state, 'api_error');
      return;
    }
    switch (failure.kind) {
      case 'not_found':
        if (operation === 'patch') {
          // The Event expired (the API server keeps Events for an hour by default): post it
          // again with its whole count, as client-go does.
          state.created = false;
          state.name = this.eventName(state.involvedObject.name, now);
          state.pending += state.writtenCount;
          state.writtenCount = 0;
          state.readyAtMs = now;
          return;
        }
        // Create answered 404: the namespace is gone with its pod.
        this.options.logger.warn(log, 'Kubernetes Event rejected');
        this.giveUp(state, 'api_rejected');
        return;
      case 'conflict':
        if (operation === 'create') {
          // The name is ours: an earlier attempt was created but its answer was lost.
          // Patching the absolute count makes the retry idempotent.
          state.created = true;
          state.readyAtMs = now;
          return;
        }
        state.readyAtMs = now + this.backoffMs(state.attempts);
        return;
      case 'retryable':
        state.readyAtMs = now + Math.max(this.backoffMs(state.attempts), failure.retryAfterMs ?? 0);
        this.options.logger.debug(
          { ...log, retryInMs: state.readyAtMs - now },
          'Kubernetes Event write failed; will retry',
        );
        return;
      case 'rejected':
        this.options.logger.warn({ ...log, status: failure.status }, 'Kubernetes Event rejected');
        this.giveUp(state, 'api_rejected');
        return;
    }
  }

  private giveUp(state: EventState, cause: EventDropCause): void {
    if (state.pending > 0) this.drop(cause, state.pending);
    state.pending = 0;
    state.attempts = 0;
    if (!state.created) this.states.delete(state.key);
  }

  private backoffMs(attempts: number): number {
    // Jitter, so that the agents of every node do not retry against the API server in step.
    return backoffDelay(
      attempts - 1,
      { initialMs: this.settings.initialRetryMs, maxMs: this.settings.maxRetryMs, jitter: 0.2 },
      this.random,
    );
  }

  private eventBody(state: EventState, count: number): CoreV1Event {
    const { involvedObject } = state;
    return {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: state.name, namespace: state.namespace },
      involvedObject: {
        apiVersion: 'v1',
        kind: involvedObject.kind,
        name: involvedObject.name,
        uid: involvedObject.uid,
        ...(involvedObject.namespace ? { namespace: involvedObject.namespace } : {}),
      },
      reason: state.reason,
      message: state.message,
      type: 'Warning',
      count,
      firstTimestamp: new Date(secondsOf(state.firstMs)),
      lastTimestamp: new Date(secondsOf(state.lastMs)),
      source: { component: REPORTING_COMPONENT, host: this.options.nodeName },
      reportingComponent: REPORTING_COMPONENT,
      reportingInstance: this.options.nodeName,
    };
  }
}

/** metav1.Time has one-second resolution; sending whole seconds keeps the stored value exact. */
function secondsOf(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

function rfc3339(ms: number): string {
  return new Date(secondsOf(ms)).toISOString().replace('.000Z', 'Z');
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}
