import type { Attribution } from '../events/types.js';
import type { PodDiagnosis, PodDiagnosisResult, PodDnsSpec } from '../events/diagnosis.js';
import type { Clock } from '../shared/clock.js';
import type { PodDiagnosisRequest } from './pod-diagnoser.js';
import { locateAndDiagnosePod } from './pod-locator.js';

/** What the Kubernetes informers know of a pod on this node, for its diagnosis. */
export interface PodFacts {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  /** Pending, Running, Succeeded, Failed: only a running pod has processes to read. */
  readonly phase?: string;
  /** Changes whenever the pod does: a new value re-reads the pod. */
  readonly resourceVersion: string;
  readonly ip?: string;
  readonly spec: PodDnsSpec;
  readonly containerNames: ReadonlyMap<string, string>;
}

export interface PodDiagnosisCacheOptions {
  readonly clock: Clock;
  /** Reads one pod; undefined when none of its processes is visible. */
  readonly diagnose: (request: PodDiagnosisRequest) => Promise<PodDiagnosis | undefined>;
  /** The network namespace holding an address (standalone attribution by IP). */
  readonly namespaceOfIp: (ip: string) => Promise<number | undefined>;
  /** The pod's facts from the API (Kubernetes mode); undefined standalone. */
  readonly podFacts?: (uid: string) => PodFacts | undefined;
  /** Bound on the pods remembered; the least recently used go first. */
  readonly maxEntries: number;
  /** A diagnosis is read again after this long (resolv.conf may be edited in place). */
  readonly refreshMs: number;
  /** A pod that could not be read is tried again after this long. */
  readonly retryMs: number;
  /** Bound on the pods waiting to be read. */
  readonly maxPending: number;
  /** Pods read at once (each read walks /proc): bounded so that a burst of new pods stays cheap. */
  readonly concurrency?: number;
  readonly onError?: (error: unknown) => void;
}

/** A read to do: the attribution keys it; a namespace already known skips the search by IP. */
interface Request {
  readonly attribution: Attribution;
  readonly netnsInode?: number;
}

interface Entry {
  result: PodDiagnosisResult;
  readAtMs: number;
  resourceVersion?: string;
}

const NOT_YET: PodDiagnosisResult = {
  status: 'unknown',
  reason: 'not read yet: the pod is being diagnosed in the background',
};

/**
 * The diagnoses of the pods, looked up synchronously on the event path and filled in the
 * background, a few pods at a time. Pods are read ahead, when they appear (`ahead`), so that
 * their first event finds its diagnosis; an event whose pod is still not read gets `unknown` at
 * once, moves its pod to the front of the queue, and `settled` tells when the reading is done.
 */
export class PodDiagnosisCache {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Request>();
  /** Keys an event is waiting for: read before the pods read ahead. */
  private readonly urgent = new Set<string>();
  private readonly reading = new Set<string>();
  private readonly waiters = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  private readonly workers = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly options: PodDiagnosisCacheOptions) {}

  lookup(attribution: Attribution): PodDiagnosisResult {
    const key = keyOf(attribution);
    if (key === undefined)
      return { status: 'unknown', reason: 'the sender is the node itself or a hostNetwork pod' };
    const entry = this.entries.get(key);
    const now = this.options.clock.nowMs();
    if (entry) {
      // Most recently used last: the first key is the one to evict.
      this.entries.delete(key);
      this.entries.set(key, entry);
      const age = now - entry.readAtMs;
      const changed =
        attribution.pod !== undefined &&
        this.options.podFacts?.(attribution.pod.uid)?.resourceVersion !== entry.resourceVersion;
      const due =
        entry.result.status === 'diagnosed' ? this.options.refreshMs : this.options.retryMs;
      if (changed || age >= due) this.request(key, { attribution });
      return entry.result;
    }
    this.request(key, { attribution }, true);
    return NOT_YET;
  }

  /** The last reading of a pod by uid, without asking for one (read-only views). */
  peek(uid: string): PodDiagnosisResult | undefined {
    return this.entries.get(`uid:${uid}`)?.result;
  }

  /**
   * Reads a pod before any event of it: the informer saw it (Kubernetes), or a new network
   * namespace holds the address (standalone, `netnsInode` known). A pod already read at the
   * same resourceVersion is left alone.
   */
  ahead(attribution: Attribution, netnsInode?: number): void {
    const key = keyOf(attribution);
    if (key === undefined) return;
    const entry = this.entries.get(key);
    if (entry) {
      const facts = attribution.pod ? this.options.podFacts?.(attribution.pod.uid) : undefined;
      if (facts === undefined || facts.resourceVersion === entry.resourceVersion) return;
    }
    this.request(key, { attribution, ...(netnsInode !== undefined ? { netnsInode } : {}) });
  }

  /**
   * Resolves when the reading of this attribution's pod, waiting or under way, is done;
   * undefined when none is (the pod is read, or cannot be).
   */
  settled(attribution: Attribution): Promise<void> | undefined {
    const key = keyOf(attribution);
    if (key === undefined || !this.pending.has(key)) return undefined;
    let waiter = this.waiters.get(key);
    if (!waiter) {
      let resolve = (): void => {};
      const promise = new Promise<void>((r) => (resolve = r));
      waiter = { promise, resolve };
      this.waiters.set(key, waiter);
    }
    return waiter.promise;
  }

  /** True while the pod of this attribution is waiting to be read or being read. */
  isPending(attribution: Attribution): boolean {
    const key = keyOf(attribution);
    return key !== undefined && this.pending.has(key);
  }

  /** Pods waiting to be read or being read. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Resolves once nothing waits to be read (tests, the doctor). */
  async idle(): Promise<void> {
    while (this.workers.size > 0) await Promise.all(this.workers);
  }

  stop(): void {
    this.stopped = true;
    this.pending.clear();
    this.urgent.clear();
    for (const waiter of this.waiters.values()) waiter.resolve();
    this.waiters.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  private request(key: string, request: Request, urgent = false): void {
    if (this.stopped) return;
    if (!this.pending.has(key)) {
      if (this.pending.size >= this.options.maxPending) return;
      this.pending.set(key, request);
    }
    if (urgent && !this.reading.has(key)) this.urgent.add(key);
    while (this.workers.size < (this.options.concurrency ?? 1) && this.unclaimed() !== undefined) {
      const worker: Promise<void> = this.work().finally(() => this.workers.delete(worker));
      this.workers.add(worker);
    }
  }

  /** The next key to read: one an event waits for first, then the oldest request. */
  private unclaimed(): string | undefined {
    for (const key of this.urgent) if (this.pending.has(key)) return key;
    for (const key of this.pending.keys()) if (!this.reading.has(key)) return key;
    return undefined;
  }

  private async work(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const key = this.unclaimed();
      const request = key === undefined ? undefined : this.pending.get(key);
      if (key === undefined || request === undefined) return;
      this.reading.add(key);
      this.urgent.delete(key);
      try {
        this.store(key, await this.read(request));
      } catch (error) {
        this.options.onError?.(error);
        this.store(key, {
          result: { status: 'unknown', reason: `reading failed: ${String(error)}` },
        });
      } finally {
        this.reading.delete(key);
        this.pending.delete(key);
        this.waiters.get(key)?.resolve();
        this.waiters.delete(key);
      }
    }
  }

  private async read(request: Request): Promise<Omit<Entry, 'readAtMs'>> {
    const { attribution } = request;
    const pod = attribution.pod;
    const facts = pod ? this.options.podFacts?.(pod.uid) : undefined;
    const result = await locateAndDiagnosePod(this.options, {
      ip: attribution.sourceIp,
      ...(pod ? { pod } : {}),
      ...(request.netnsInode !== undefined ? { netnsInode: request.netnsInode } : {}),
      ...(facts ? { facts } : {}),
    });
    return { result, resourceVersion: facts?.resourceVersion };
  }
  private store(key: string, entry: Omit<Entry, 'readAtMs'>): void {
    if (this.stopped) return;
    this.entries.delete(key);
    this.entries.set(key, { ...entry, readAtMs: this.options.clock.nowMs() });
    while (this.entries.size > this.options.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }
}

function keyOf(attribution: Attribution): string | undefined {
  if (attribution.pod)
    return attribution.pod.hostNetwork ? undefined : `uid:${attribution.pod.uid}`;
  return `ip:${attribution.sourceIp}`;
}
