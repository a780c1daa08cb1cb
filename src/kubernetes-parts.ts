import { collectGarbageOnce } from './shared/collect-garbage.js';
import { ClusterAttribution } from './attribute/kubernetes/cluster-attribution.js';
import {
  kubernetesContext,
  type KubernetesContext,
} from './attribute/kubernetes/kubernetes-context.js';
import { KUBERNETES, SHUTDOWN_BUDGET } from './config/tuning.js';
import {
  EventRecorder,
  type EventRecorderOptions,
} from './sinks/kubernetes-events/event-recorder.js';
import { coreV1EventsApi, type EventsApi } from './sinks/kubernetes-events/events-api.js';
import {
  KubernetesEventSink,
  type KubernetesEventSinkOptions,
} from './sinks/kubernetes-events/kubernetes-event-sink.js';
import { PodSeriesJanitor } from './sinks/metrics/pod-series-janitor.js';
import { PodFactsIndex } from './diagnose/pod-facts-index.js';
import type { PodFacts } from './diagnose/pod-diagnosis-cache.js';

export interface KubernetesPartsOptions extends KubernetesContext {
  /** Removes a deleted pod's metric series once its grace period has passed. */
  readonly forgetPod: (namespace: string, name: string) => void;
  /** Told each pod of this node listed or changed, to diagnose it before its first event. */
  readonly onPodFacts?: (facts: PodFacts) => void;
  /** The diagnosis a new Event waits for (KubernetesEventSinkOptions.whenDiagnosed). */
  readonly whenDiagnosed?: KubernetesEventSinkOptions['whenDiagnosed'];
  /** Defaults to CoreV1Api on `kubeConfig`. */
  readonly eventsApi?: EventsApi;
  /** Shorter timings for tests; the defaults are config/tuning.ts's. */
  readonly tuning?: KubernetesTuning;
}

export interface KubernetesTuning {
  readonly podIpRetentionMs?: number;
  readonly seriesGraceMs?: number;
  readonly janitorSweepMs?: number;
  readonly eventFlushMs?: number;
  readonly informerInitialBackoffMs?: number;
  readonly informerMaxBackoffMs?: number;
  readonly recorder?: Partial<
    Omit<EventRecorderOptions, 'api' | 'clock' | 'delay' | 'registry' | 'logger' | 'nodeName'>
  >;
}

/** The Kubernetes parts of the agent, each a Lifecycle for the agent to start in this order. */
export interface KubernetesParts {
  /** Forgets deleted pods' metric series. */
  readonly janitor: PodSeriesJanitor;
  /** Writes Events; started before the informers so that nothing they trigger is refused. */
  readonly events: KubernetesEventSink;
  /** Informers, indexes and the resolver. */
  readonly cluster: ClusterAttribution;
  /** The pods' DNS settings and container ids, for the diagnosis. */
  readonly podFacts: PodFactsIndex;
}

/**
 * Builds (does not start) the informers, the Event writer and the series janitor. This module
 * is imported only when a Kubernetes configuration was found: the Kubernetes client is most of
 * a standalone agent's memory otherwise.
 */
export function kubernetesParts(options: KubernetesPartsOptions): KubernetesParts {
  const { clock, delay, nodeName, registry, logger } = options;
  const tuning = options.tuning ?? {};
  const janitor = new PodSeriesJanitor({
    clock,
    delay,
    graceMs: tuning.seriesGraceMs ?? KUBERNETES.seriesGraceMs,
    sweepMs: tuning.janitorSweepMs ?? KUBERNETES.janitorSweepMs,
    forgetPod: options.forgetPod,
    onError: (error, namespace, pod) =>
      logger.error({ err: error, namespace, pod }, 'forgetting pod series failed'),
  });
  const podFacts = new PodFactsIndex(options.onPodFacts);
  const cluster = new ClusterAttribution({
    podObjects: podFacts,
    afterFirstSync: () => {
      if (collectGarbageOnce()) logger.debug('heap collected after the first lists');
    },
    ...kubernetesContext(options),
    podIpRetentionMs: tuning.podIpRetentionMs ?? KUBERNETES.podIpRetentionMs,
    onPodSeen: (namespace, name) => janitor.onPodSeen(namespace, name),
    onPodDeleted: (namespace, name) => janitor.onPodDeleted(namespace, name),
    informerInitialBackoffMs: tuning.informerInitialBackoffMs,
    informerMaxBackoffMs: tuning.informerMaxBackoffMs,
  });
  const events = new KubernetesEventSink({
    recorder: new EventRecorder({
      ...tuning.recorder,
      api: options.eventsApi ?? coreV1EventsApi(options.kubeConfig),
      clock,
      delay,
      registry,
      logger,
      nodeName,
    }),
    nodeName,
    nodeUid: () => cluster.nodeUid(),
    isNodeAddress: (ip) => cluster.resolver.isNodeAddress(ip),
    logger,
    flushTimeoutMs: tuning.eventFlushMs ?? SHUTDOWN_BUDGET.eventFlushMs,
    whenDiagnosed: options.whenDiagnosed,
  });
  return { janitor, events, cluster, podFacts };
}
