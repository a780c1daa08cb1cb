import {
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffPolicy } from '../../shared/backoff.js';
import type { Clock } from '../../shared/clock.js';
import type { InformerMetrics } from './informer-metrics.js';
import { waitOrAbort, type Delay } from '../../shared/delay.js';

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
  readonly list: () => Promise<KubernetesListObject<T>>;
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
 * its error handlers; this wrapper restarts it with exponential backoff and counts each restart.
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
      onWatchStart: () => this.markSynced(),
      onActivity: () => this.resetBackoff(),
    });
    this.listWatch = new ListWatch<T>(
      options.path,
      watch,
      async () => {
        const list = await options.list();
        this.resetBackoff();
        return list;
      },
      false,
      undefined,
      options.fieldSelector,
    );
    this.listWatch.on('add', (object) => this.handle('upsert', object));
    this.listWatch.on('update', (object) => this.handle('upsert', object));
    this.listWatch.on('delete', (object) => this.handle('remove', object));
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

  /** The objects in the informer's cache. */
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
        callback(phase, apiObj, watchObj);
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
