import type { Logger } from 'pino';
import type { CommandRunner } from '../detect/capabilities.js';
import type { EventDiagnosis, NodeDiagnosisResult } from '../events/diagnosis.js';
import type { AttributedEvent } from '../events/types.js';
import type { Clock } from '../shared/clock.js';
import type { Lifecycle } from '../shared/lifecycle.js';
import type { HostFiles } from './host-files.js';
import { NetnsAddressMap } from './netns-addresses.js';
import { diagnoseNode } from './node-diagnoser.js';
import { diagnosePod } from './pod-diagnoser.js';
import { PodDiagnosisCache, type PodFacts } from './pod-diagnosis-cache.js';

export interface DiagnosisTuning {
  readonly nodeRefreshMs: number;
  readonly podRefreshMs: number;
  readonly podRetryMs: number;
  readonly maxPods: number;
  readonly maxPending: number;
  readonly netnsScanMaxAgeMs: number;
}

export const DEFAULT_DIAGNOSIS_TUNING: DiagnosisTuning = {
  nodeRefreshMs: 5 * 60_000,
  podRefreshMs: 5 * 60_000,
  podRetryMs: 30_000,
  maxPods: 2_000,
  maxPending: 256,
  netnsScanMaxAgeMs: 30_000,
};

export interface DiagnosisStageOptions {
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
}

/**
 * The diagnosis stage of the pipeline: a synchronous lookup per event from caches that are
 * filled in the background (the node every few minutes, each pod when its first event comes
 * and again when it changes). Never blocks the event path on a file read or a command.
 */
export class DiagnosisStage implements Lifecycle {
  readonly name = 'diagnosis';
  private readonly pods: PodDiagnosisCache;
  private node: NodeDiagnosisResult = { status: 'unknown', reason: 'the node is being read' };
  private timer: NodeJS.Timeout | undefined;
  private nodeReading: Promise<void> | undefined;
  private readonly tuning: DiagnosisTuning;

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
      onError: (error) => options.logger.warn({ err: error }, 'diagnosing a pod failed'),
    });
  }

  /** Starts reading the node in the background; returns at once. */
  start(): void {
    this.readNode();
    // unref: a pending refresh must never hold the process open.
    this.timer = setInterval(() => this.readNode(), this.tuning.nodeRefreshMs).unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.pods.stop();
    await this.nodeReading;
  }

  diagnose(attributed: Pick<AttributedEvent, 'attribution'>): EventDiagnosis {
    return { pod: this.pods.lookup(attributed.attribution), node: this.node };
  }

  /** A pod's last diagnosis and the node's, without reading anything (the /pods endpoint). */
  diagnosisOfPod(uid: string): EventDiagnosis | undefined {
    const pod = this.pods.peek(uid);
    return pod ? { pod, node: this.node } : undefined;
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
