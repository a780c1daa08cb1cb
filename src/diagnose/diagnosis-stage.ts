import type { Logger } from 'pino';
import type { CommandRunner } from '../detect/capabilities.js';
import type { EventDiagnosis, NodeDiagnosisResult } from '../events/diagnosis.js';
import type { AttributedEvent } from '../events/types.js';
import type { Clock } from '../shared/clock.js';
import type { Lifecycle } from '../shared/lifecycle.js';
import type { HostFiles } from './host-files.js';
import { NetnsAddressMap } from './netns-addresses.js';
import { NetnsDiscovery } from './netns-discovery.js';
import { diagnoseNode } from './node-diagnoser.js';
import { diagnosePod } from './pod-diagnoser.js';
import { PodDiagnosisCache, type PodFacts } from './pod-diagnosis-cache.js';
import { netnsInodeOfPid } from './pod-processes.js';
import { unrefTimers, type Delay, type Timers } from '../shared/timers.js';

export interface DiagnosisTuning {
  readonly nodeRefreshMs: number;
  readonly podRefreshMs: number;
  readonly podRetryMs: number;
  readonly maxPods: number;
  readonly maxPending: number;
  readonly netnsScanMaxAgeMs: number;
  /** Standalone: time between two looks for new network namespaces (pods) in /proc. */
  readonly discoveryIntervalMs: number;
  /** Pods read at once. */
  readonly concurrency: number;
  /** Bound on how long /readyz waits for the pods found at start to be read. */
  readonly startupReadMaxMs: number;
}

export const DEFAULT_DIAGNOSIS_TUNING: DiagnosisTuning = {
  nodeRefreshMs: 5 * 60_000,
  podRefreshMs: 5 * 60_000,
  podRetryMs: 30_000,
  maxPods: 2_000,
  maxPending: 256,
  netnsScanMaxAgeMs: 30_000,
  discoveryIntervalMs: 30_000,
  // Two: each read walks /proc (one file per process), and the node has two CPUs to spare at best.
  concurrency: 2,
  startupReadMaxMs: 30_000,
};

export interface DiagnosisStageOptions {
  /** Runs the node's refresh; default unref'd real timers. */
  readonly timers?: Pick<Timers, 'every'>;
  readonly files: HostFiles;
  readonly procRoot: string;
  readonly netnsPid: number | 'self';
  readonly run: CommandRunner;
  readonly commandPrefix: readonly string[];
  readonly clock: Clock;
  readonly logger: Logger;
  readonly nodeLocalDnsIps: readonly string[];
  /** The pod's facts from the API (Kubernetes mode). */
  readonly podFacts?: (uid: string) => PodFacts | undefined;
  /** The kube-dns ClusterIPs, when known. */
  readonly clusterDnsIps?: () => ReadonlySet<string>;
  readonly tuning?: Partial<DiagnosisTuning>;
  /**
   * Standalone: look for new network namespaces in /proc and read each one's pod ahead of its
   * first event (Kubernetes mode reads pods from the informer instead, through `podSeen`).
   */
  readonly discoverNamespaces?: { readonly delay: Delay };
}

/**
 * The diagnosis stage of the pipeline: a synchronous lookup per event from caches that are
 * filled in the background: the node every few minutes, each pod when it appears (the
 * informer's add, or a new network namespace standalone) and again when it changes, or at its
 * first event if it was missed. Never blocks the event path on a file read or a command; a
 * sink that can wait asks `whenDiagnosed`.
 */
export class DiagnosisStage implements Lifecycle {
  readonly name = 'diagnosis';
  private readonly pods: PodDiagnosisCache;
  private node: NodeDiagnosisResult = { status: 'unknown', reason: 'the node is being read' };
  private cancelRefresh: (() => void) | undefined;
  private nodeReading: Promise<void> | undefined;
  private readonly tuning: DiagnosisTuning;
  private readonly discovery: NetnsDiscovery | undefined;
  private startedAtMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: DiagnosisStageOptions) {
    this.tuning = { ...DEFAULT_DIAGNOSIS_TUNING, ...options.tuning };
    const addresses = new NetnsAddressMap({
      files: options.files,
      procRoot: options.procRoot,
      clock: options.clock,
      maxAgeMs: this.tuning.netnsScanMaxAgeMs,
    });
    this.pods = new PodDiagnosisCache({
      clock: options.clock,
      diagnose: (request) =>
        diagnosePod(
          {
            files: options.files,
            procRoot: options.procRoot,
            clock: options.clock,
            nameserverContext: () => ({
              clusterDnsIps: options.clusterDnsIps?.() ?? new Set(),
              nodeLocalDnsIps: new Set([
                ...options.nodeLocalDnsIps,
                ...(this.node.status === 'diagnosed' ? this.node.nodeLocalDns.addresses : []),
              ]),
            }),
          },
          request,
        ),
      namespaceOfIp: (ip) => addresses.namespaceOf(ip),
      podFacts: options.podFacts,
      maxEntries: this.tuning.maxPods,
      refreshMs: this.tuning.podRefreshMs,
      retryMs: this.tuning.podRetryMs,
      maxPending: this.tuning.maxPending,
      concurrency: this.tuning.concurrency,
      onError: (error) => options.logger.warn({ err: error }, 'diagnosing a pod failed'),
    });
    const discover = options.discoverNamespaces;
    this.discovery = discover
      ? new NetnsDiscovery({
          files: options.files,
          procRoot: options.procRoot,
          delay: discover.delay,
          intervalMs: this.tuning.discoveryIntervalMs,
          maxNamespaces: this.tuning.maxPods,
          // The node's own namespace, when the agent watches one other than pid 1's.
          ignoreInodes: () => (this.nodeNetnsInode === undefined ? [] : [this.nodeNetnsInode]),
          onNamespace: ({ inode, addresses }) => {
            for (const sourceIp of addresses)
              this.pods.ahead({ sourceIp, netnsInode: inode }, inode);
          },
          onError: (error) =>
            options.logger.warn({ err: error }, 'listing network namespaces failed'),
        })
      : undefined;
  }

  private nodeNetnsInode: number | undefined;

  /** Starts reading the node (and standalone, finding the pods) in the background. */
  async start(signal?: AbortSignal): Promise<void> {
    this.startedAtMs = this.options.clock.nowMs();
    this.readNode();
    // Unref'd by default: a pending refresh must never hold the process open.
    const timers = this.options.timers ?? unrefTimers;
    this.cancelRefresh = timers.every(this.tuning.nodeRefreshMs, () => this.readNode());
    if (this.discovery) {
      if (this.options.netnsPid !== 'self') {
        this.nodeNetnsInode = await netnsInodeOfPid(
          this.options.files,
          this.options.procRoot,
          this.options.netnsPid,
        );
      }
      this.discovery.start(signal);
    }
  }

  async stop(): Promise<void> {
    this.cancelRefresh?.();
    this.cancelRefresh = undefined;
    await this.discovery?.stop();
    this.pods.stop();
    await this.nodeReading;
  }

  /**
   * Until the node and the pods present at start have been read (at most
   * `startupReadMaxMs`), events would carry generic advice: /readyz says so.
   */
  waitingFor(): string | undefined {
    if (this.options.clock.nowMs() - this.startedAtMs >= this.tuning.startupReadMaxMs)
      return undefined;
    const waiting: string[] = [];
    if (this.node.status === 'unknown' && this.nodeReading) waiting.push('the node');
    const scanning = this.discovery?.waitingFor();
    if (scanning) waiting.push('the network namespaces');
    if (this.pods.pendingCount > 0) waiting.push(`${this.pods.pendingCount} pods`);
    return waiting.length > 0 ? `diagnosis: reading ${waiting.join(', ')}` : undefined;
  }

  /**
   * A pod of this node was listed or changed (Kubernetes): reads it now, so that its first
   * event carries advice for it. Pods without an address or processes are left for later.
   */
  podSeen(facts: PodFacts): void {
    if (facts.spec.hostNetwork || facts.ip === undefined) return;
    if (facts.phase !== undefined && facts.phase !== 'Running') return;
    this.pods.ahead({
      sourceIp: facts.ip,
      netnsInode: 0,
      pod: { namespace: facts.namespace, name: facts.name, uid: facts.uid, hostNetwork: false },
    });
  }

  diagnose(attributed: Pick<AttributedEvent, 'attribution'>): EventDiagnosis {
    return { pod: this.pods.lookup(attributed.attribution), node: this.node };
  }

  /** A pod's last diagnosis and the node's, without reading anything (the /pods endpoint). */
  diagnosisOfPod(uid: string): EventDiagnosis | undefined {
    const pod = this.pods.peek(uid);
    return pod ? { pod, node: this.node } : undefined;
  }

  /**
   * When the diagnosis of this event's pod or of the node is being read: resolves with the
   * diagnosis once it is. Undefined when nothing is being read (the diagnosis is final).
   */
  whenDiagnosed(
    attributed: Pick<AttributedEvent, 'attribution' | 'diagnosis'>,
  ): Promise<EventDiagnosis> | undefined {
    // A diagnosis the event already has is not waited for again while it is refreshed.
    const known = attributed.diagnosis;
    const pod =
      known?.pod.status === 'diagnosed' ? undefined : this.pods.settled(attributed.attribution);
    const node =
      known?.node.status === 'diagnosed' || this.node.status === 'diagnosed'
        ? undefined
        : this.nodeReading;
    if (!pod && !node) return undefined;
    return Promise.all([pod, node]).then(() => this.diagnose(attributed));
  }

  /** Resolves once the node has been read and no pod waits to be (tests). */
  async idle(): Promise<void> {
    await this.nodeReading;
    await this.pods.idle();
  }

  private readNode(): void {
    if (this.nodeReading) return;
    this.nodeReading = diagnoseNode({ ...this.options })
      .then(
        (node) => {
          this.node = node;
        },
        (error: unknown) => {
          this.options.logger.warn({ err: error }, 'diagnosing the node failed');
        },
      )
      .finally(() => (this.nodeReading = undefined));
  }
}
