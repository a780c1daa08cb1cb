import type { Attribution } from '../events/types.js';
import type { PodDiagnosis, PodDiagnosisResult, PodDnsSpec } from '../events/diagnosis.js';
import type { Clock } from '../shared/clock.js';
import type { PodDiagnosisRequest } from './pod-diagnoser.js';
import { locateAndDiagnosePod } from './pod-locator.js';

/** What the Kubernetes informers know of a pod on this node, for its diagnosis. */
export interface PodFacts {
  readonly uid: string;
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
  readonly onError?: (error: unknown) => void;
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
 * The diagnoses of the pods events came from, looked up synchronously on the event path and
 * filled in the background, one pod at a time: an event whose pod is not read yet gets
 * `unknown` at once and triggers the reading, so the pipeline never waits for a file.
 */
export class PodDiagnosisCache {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Attribution>();
  private working: Promise<void> | undefined;
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
      if (changed || age >= due) this.request(key, attribution);
      return entry.result;
    }
    this.request(key, attribution);
    return NOT_YET;
  }

  /** The last reading of a pod by uid, without asking for one (read-only views). */
  peek(uid: string): PodDiagnosisResult | undefined {
    return this.entries.get(`uid:${uid}`)?.result;
  }

  /** Resolves once nothing waits to be read (tests, the doctor). */
  async idle(): Promise<void> {
    while (this.working) await this.working;
  }

  stop(): void {
    this.stopped = true;
    this.pending.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  private request(key: string, attribution: Attribution): void {
    if (this.stopped || this.pending.has(key)) return;
    if (this.pending.size >= this.options.maxPending) return;
    this.pending.set(key, attribution);
    this.working ??= this.work().finally(() => (this.working = undefined));
  }

  private async work(): Promise<void> {
    while (!this.stopped) {
      const next = this.pending.entries().next();
      if (next.done) return;
      const [key, attribution] = next.value;
      try {
        this.store(key, await this.read(attribution));
      } catch (error) {
        this.options.onError?.(error);
        this.store(key, {
          result: { status: 'unknown', reason: `reading failed: ${String(error)}` },
        });
      } finally {
        this.pending.delete(key);
      }
    }
  }

  private async read(attribution: Attribution): Promise<Omit<Entry, 'readAtMs'>> {
    const pod = attribution.pod;
    const facts = pod ? this.options.podFacts?.(pod.uid) : undefined;
    const result = await locateAndDiagnosePod(this.options, {
      ip: attribution.sourceIp,
      ...(pod ? { pod } : {}),
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
