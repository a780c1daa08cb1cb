import { ListWatch, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffPolicy } from '../../shared/backoff.js';
import type { Clock } from '../../shared/clock.js';
import type { InformerMetrics } from './informer-metrics.js';
import { waitOrAbort, type Delay } from '../../shared/timers.js';
import { listAllPages, type ListPageFn } from './paged-list.js';

const DEFAULT_PAGE_SIZE = 100;

export interface InformerHandlers<T> {
  upsert(object: T): void;
  remove(object: T): void;
}

export interface ResilientInformerOptions<T extends KubernetesObject> {
  /** Label value for the metrics, e.g. "pods". */
  readonly resource: string;
  /** The collection's API path, e.g. "/api/v1/pods". */
  readonly path: string;
  readonly kubeConfig: KubeConfig;
  /** One page of the collection; the informer follows `continue` tokens to the end. */
  readonly listPage: ListPageFn<T>;
  /**
   * Items per list page. Default 100: against 5,000 Services and 10,000 EndpointSlices the agent
   * settled at 137 MB RSS with pages of 100 and 159–164 MB with pages of 500 (the same heap in
   * use: the larger pages grow the heap V8 keeps committed), for 154 list requests instead of 34
   * (docs/benchmarks.md, section 6).
   */
  readonly pageSize?: number;
  /** Applied to every listed or watched object before it is stored (see lean-objects.ts). */
  readonly transform: (object: T) => T;
  /**
   * Objects held at most. At the bound a new object (listed, or ADDED by the watch) is not
   * stored nor handed to the handlers, and is counted in
   * `conntrack_observer_k8s_informer_objects_dropped_total`; changes to held objects still
   * apply, and a deletion makes room for the next new object.
   */
  readonly maxObjects: number;
  readonly fieldSelector?: string;
  readonly handlers: InformerHandlers<T>;
  readonly metrics: InformerMetrics;
  readonly delay: Delay;
  readonly clock: Clock;
  readonly logger: Logger;
  /** First restart delay after an error; doubles up to `maxBackoffMs`. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /**
   * Asks the server to end each watch after this many seconds (it closes the stream cleanly
   * and the informer resumes from its resourceVersion). Jittered up to 2× like client-go, so
   * the agents of a large cluster do not reconnect in step.
   */
  readonly watchTimeoutSeconds?: number;
  /** Randomness for the jitter; injectable so tests are reproducible. */
  readonly random?: () => number;
}

/**
 * client-node's ListWatch, kept alive. ListWatch relists by itself on 410 Gone, but after any
 * other error (list failure, refused connection, 5xx, a broken stream) it stops and only calls
 * its error handlers; this wrapper restarts it with jittered exponential backoff and counts each
 * restart. A restart resumes the watch from the last resourceVersion seen (an event or a
 * bookmark), so a dropped connection costs one watch request, not a relist of the collection;
 * only 410 Gone (that resourceVersion compacted away) or a failed list relists. Lists go page by
 * page, and every object is made lean and counted against a bound before it is stored.
 * It also asks for bookmarks and for a server-side watch timeout, and aborts a watch that stays
 * silent past that timeout (a half-open connection would otherwise hang it forever).
 */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly listWatch: ListWatch<T>;
  private readonly stopController = new AbortController();
  /** Restarts since the informer last made progress: the backoff's exponent. */
  private failures = 0;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private synced = false;
  private restartPending = false;
  private started = false;
  private readonly syncWaiters: Array<() => void> = [];
  /** Objects in the ListWatch cache: its adds minus its deletes. */
  private held = 0;
  private readonly pendingLean = new WeakMap<T, T>();
  private droppedLogged = false;

  constructor(private readonly options: ResilientInformerOptions<T>) {
    // Jitter, so that after an API outage the agents of every node do not reconnect in step.
    this.backoff = {
      initialMs: options.initialBackoffMs ?? 1000,
      maxMs: options.maxBackoffMs ?? 60_000,
      jitter: 0.2,
    };
    const random = options.random ?? Math.random;
    this.random = random;
    const baseTimeout = options.watchTimeoutSeconds ?? 300;
    const watch = new SupervisedWatch(options.kubeConfig, {
      timeoutSeconds: () => Math.round(baseTimeout * (1 + random())),
      delay: options.delay,
      nowMs: () => options.clock.nowMs(),
      stopSignal: this.stopController.signal,
      onWatchStart: () => {
        options.metrics.watches.inc({ resource: options.resource });
        this.markSynced();
      },
      onActivity: () => this.resetBackoff(),
      admit: (phase, object) => this.admit(phase, object),
    });
    this.listWatch = new ListWatch<T>(
      options.path,
      watch,
      async () => {
        options.metrics.lists.inc({ resource: options.resource });
        const list = await listAllPages(options.listPage, {
          pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE,
          transform: (object) => this.stub(options.transform(object)),
          maxObjects: options.maxObjects,
          onDropped: (count) => this.countDropped(count),
        });
        this.resetBackoff();
        return list;
      },
      false,
      undefined,
      options.fieldSelector,
    );
    this.listWatch.on('add', (object) => {
      this.setHeld(this.held + 1);
      this.handle('upsert', this.takeLean(object));
    });
    this.listWatch.on('update', (object) => this.handle('upsert', this.takeLean(object)));
    this.listWatch.on('delete', (object) => {
      this.setHeld(this.held - 1);
      this.handle('remove', object);
    });
    this.listWatch.on('error', (error) => this.onError(error));
  }

  get resource(): string {
    return this.options.resource;
  }

  /** Starts listing and watching in the background; never rejects. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.launch();
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    await this.listWatch.stop();
    for (const resolve of this.syncWaiters.splice(0)) resolve();
  }

  /** True once the first list has been applied to the indexes (stays true while reconnecting). */
  isSynced(): boolean {
    return this.synced;
  }

  /** Resolves at the first sync, or at stop. */
  whenSynced(): Promise<void> {
    if (this.synced || this.stopController.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  /** The objects in the informer's cache: their metadata only (see `stub`). */
  list(): readonly T[] {
    return this.listWatch.list();
  }

  private launch(): void {
    this.listWatch.start().catch((error: unknown) => this.onError(error));
  }

  private handle(kind: 'upsert' | 'remove', object: T): void {
    try {
      this.options.handlers[kind](object);
    } catch (error) {
      this.options.logger.error(
        { err: error, resource: this.options.resource },
        'informer handler failed',
      );
    }
  }

  /**
   * A watch event on its way into the cache: its object made lean, or, for a new object at the
   * bound, turned into a bookmark so the resourceVersion still advances (a resume does not
   * replay it) while nothing is stored.
   */
  private admit(phase: string, object: unknown): { phase: string; object: unknown } {
    if (phase !== 'ADDED' && phase !== 'MODIFIED' && phase !== 'DELETED') return { phase, object };
    const lean = this.options.transform(object as T);
    if (phase !== 'DELETED' && this.held >= this.options.maxObjects) {
      const known = this.listWatch.get(lean.metadata?.name ?? '', lean.metadata?.namespace);
      if (!known) {
        this.countDropped(1);
        return {
          phase: 'BOOKMARK',
          object: { metadata: { resourceVersion: lean.metadata?.resourceVersion } },
        };
      }
    }
    return { phase, object: phase === 'DELETED' ? lean : this.stub(lean) };
  }

  /**
   * What the informer's cache keeps of an object: its metadata only (name and namespace to find
   * it, resourceVersion to skip it unchanged on a relist, what the remove handlers read). The
   * lean object rides beside the stub until the add or update handler has indexed it, then only
   * the indexes' derived entries remain. Measured on 10,000 EndpointSlices of 10 endpoints: the
   * lean objects kept a second time in the cache took the agent from 90 to 120 MB of heap
   * (docs/benchmarks.md, section 6).
   */
  private stub(lean: T): T {
    const stub = { metadata: lean.metadata } as T;
    this.pendingLean.set(stub, lean);
    return stub;
  }

  private takeLean(stub: T): T {
    const lean = this.pendingLean.get(stub);
    if (!lean) return stub;
    this.pendingLean.delete(stub);
    return lean;
  }

  private countDropped(count: number): void {
    this.options.metrics.dropped.inc({ resource: this.options.resource }, count);
    if (this.droppedLogged) return;
    this.droppedLogged = true;
    this.options.logger.warn(
      { resource: this.options.resource, maxObjects: this.options.maxObjects },
      'informer holds its bound of objects; new objects are not kept (counted in conntrack_observer_k8s_informer_objects_dropped_total)',
    );
  }

  private setHeld(count: number): void {
    this.held = Math.max(0, count);
    this.options.metrics.objects.set({ resource: this.options.resource }, this.held);
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    this.options.metrics.synced.set({ resource: this.options.resource }, 1);
    this.options.logger.info({ resource: this.options.resource }, 'informer synced');
    for (const resolve of this.syncWaiters.splice(0)) resolve();
  }

  private resetBackoff(): void {
    this.failures = 0;
  }

  private onError(error: unknown): void {
    if (this.stopController.signal.aborted || this.restartPending) return;
    this.restartPending = true;
    const waitMs = backoffDelay(this.failures, this.backoff, this.random);
    this.failures += 1;
    this.options.logger.warn(
      { err: error, resource: this.options.resource, retryInMs: waitMs },
      'informer stopped on an error; restarting',
    );
    void (async () => {
      await waitOrAbort(this.options.delay, waitMs, this.stopController.signal);
      this.restartPending = false;
      if (this.stopController.signal.aborted) return;
      this.options.metrics.restarts.inc({ resource: this.options.resource });
      this.launch();
    })();
  }
}

interface SupervisedWatchOptions {
  readonly timeoutSeconds: () => number;
  readonly delay: Delay;
  readonly nowMs: () => number;
  readonly stopSignal: AbortSignal;
  /** Called when a watch request is issued: ListWatch has applied its list before that. */
  readonly onWatchStart: () => void;
  /** Called for every line received: the connection is healthy. */
  readonly onActivity: () => void;
  /** Rewrites each event before the informer's cache sees it (lean object, bound). */
  readonly admit: (phase: string, object: unknown) => { phase: string; object: unknown };
}

/** Watch with bookmarks, a server-side timeout and an idle watchdog. */
class SupervisedWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly supervision: SupervisedWatchOptions,
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    this.supervision.onWatchStart();
    const timeoutSeconds = this.supervision.timeoutSeconds();
    let lastActivity = this.supervision.nowMs();
    const finished = new AbortController();
    const controller = await super.watch(
      path,
      { ...queryParams, allowWatchBookmarks: true, timeoutSeconds },
      (phase, apiObj, watchObj) => {
        lastActivity = this.supervision.nowMs();
        this.supervision.onActivity();
        const admitted = this.supervision.admit(phase, apiObj);
        callback(admitted.phase, admitted.object, watchObj);
      },
      (err) => {
        finished.abort();
        done(err);
      },
    );
    void this.watchdog(
      controller,
      finished.signal,
      (timeoutSeconds + 30) * 1000,
      () => lastActivity,
    );
    return controller;
  }

  private async watchdog(
    controller: AbortController,
    finished: AbortSignal,
    idleLimitMs: number,
    lastActivity: () => number,
  ): Promise<void> {
    const signal = AbortSignal.any([finished, this.supervision.stopSignal]);
    while (!signal.aborted) {
      const idleMs = this.supervision.nowMs() - lastActivity();
      if (idleMs >= idleLimitMs) {
        // The server promised to end the stream by now: it is a dead connection.
        controller.abort();
        return;
      }
      await waitOrAbort(this.supervision.delay, idleLimitMs - idleMs, signal);
    }
  }
}
