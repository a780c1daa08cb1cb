import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Clock } from '../../shared/clock.js';
import type { AttributedEvent, DnsDropEvent } from '../../events/types.js';
import { ClusterInformers } from './cluster-informers.js';
import { EndpointSliceIndex } from './endpoint-slice-index.js';
import {
  explainDnsDrop,
  explainInsertFailure,
  explainTableFull,
} from '../../sinks/kubernetes-events/event-messages.js';
import {
  EventRecorder,
  type EventRecorderOptions,
  type InvolvedObject,
} from '../../sinks/kubernetes-events/event-recorder.js';
import { coreV1EventsApi, type EventsApi } from '../../sinks/kubernetes-events/events-api.js';
import { KubernetesResolver } from './kubernetes-resolver.js';
import { NodeAddressIndex } from './node-address-index.js';
import { PodIpIndex } from './pod-ip-index.js';
import { PodSeriesJanitor } from '../../sinks/metrics/pod-series-janitor.js';
import { realDelay, waitOrAbort, type Delay } from '../../shared/delay.js';
import { ServiceIndex } from './service-index.js';

export interface KubernetesCorrelationOptions {
  readonly kubeConfig: KubeConfig;
  /** This node's name (`--node-name` / `NODE_NAME`). */
  readonly nodeName: string;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Defaults to real, unref'd timers. */
  readonly delay?: Delay;
  /** Aborting it stops everything, like `stop()`. */
  readonly signal?: AbortSignal;
  /** Removes a deleted pod's metric series; called once its grace period has passed. */
  readonly forgetPod: (namespace: string, name: string) => void;
  /** Defaults to CoreV1Api on `kubeConfig`. */
  readonly eventsApi?: EventsApi;
  readonly tuning?: KubernetesCorrelationTuning;
}

export interface KubernetesCorrelationTuning {
  /** How long a deleted pod's IP is still attributed to it for late events (default 10 min). */
  readonly podIpRetentionMs?: number;
  /** How long a deleted pod's metric series are kept (default 10 min). */
  readonly seriesGraceMs?: number;
  /** How often deleted pods' series are checked for expiry (default 30 s). */
  readonly janitorSweepMs?: number;
  readonly informerInitialBackoffMs?: number;
  readonly informerMaxBackoffMs?: number;
  readonly watchTimeoutSeconds?: number;
  readonly recorder?: Partial<
    Omit<EventRecorderOptions, 'api' | 'clock' | 'delay' | 'registry' | 'logger' | 'nodeName'>
  >;
}

export interface TableFullReport {
  readonly entries: number;
  readonly limit: number;
  /** Packets of new flows dropped since the previous report. */
  readonly drops: number;
  readonly wallTimeMs: number;
}

export interface KubernetesCorrelation {
  /** Swap it in for the standalone resolver; usable at once, complete once synced. */
  readonly resolver: KubernetesResolver;
  /**
   * Turns an attributed drop into a Warning Event on its pod, or on the Node for the host
   * network. Clash-resolved races (nothing dropped) and events blamable on neither are
   * ignored: the metrics count them. Synchronous, never throws.
   */
  recordEvent(attributed: AttributedEvent): void;
  /** A full conntrack table: a ConntrackTableFull Event on the Node. Never throws. */
  recordTableFull(report: TableFullReport): void;
  /** Every informer has completed its first list: what `/readyz` waits for. */
  isSynced(): boolean;
  /** Resources still waiting for their first list. */
  pendingResources(): string[];
  whenSynced(): Promise<void>;
  /** Stops the informers, flushes waiting Events briefly, stops the janitor. */
  stop(): Promise<void>;
}

/**
 * The Kubernetes part of the agent, started from the entry point once a KubeConfig and a node
 * name are known. Returns at once: informers sync in the background.
 */
export function startKubernetesCorrelation(
  options: KubernetesCorrelationOptions,
): KubernetesCorrelation {
  const { clock, logger, nodeName } = options;
  const tuning = options.tuning ?? {};
  const delay = options.delay ?? realDelay;
  const indexes = {
    pods: new PodIpIndex({ retentionMs: tuning.podIpRetentionMs ?? 10 * 60_000 }),
    services: new ServiceIndex(),
    endpointSlices: new EndpointSliceIndex(),
    node: new NodeAddressIndex(nodeName),
  };
  const resolver = new KubernetesResolver(indexes);
  const janitor = new PodSeriesJanitor({
    clock,
    graceMs: tuning.seriesGraceMs ?? 10 * 60_000,
    forgetPod: options.forgetPod,
    onError: (error, namespace, pod) =>
      logger.error({ err: error, namespace, pod }, 'forgetting pod series failed'),
  });
  const informers = new ClusterInformers({
    kubeConfig: options.kubeConfig,
    nodeName,
    indexes,
    registry: options.registry,
    logger,
    clock,
    delay,
    onPodSeen: (pod) => janitor.onPodSeen(pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''),
    onPodDeleted: (pod) =>
      janitor.onPodDeleted(pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''),
    initialBackoffMs: tuning.informerInitialBackoffMs,
    maxBackoffMs: tuning.informerMaxBackoffMs,
    watchTimeoutSeconds: tuning.watchTimeoutSeconds,
  });
  const recorder = new EventRecorder({
    ...tuning.recorder,
    api: options.eventsApi ?? coreV1EventsApi(options.kubeConfig),
    clock,
    delay,
    registry: options.registry,
    logger,
    nodeName,
  });

  const stopController = new AbortController();
  const sweepMs = tuning.janitorSweepMs ?? 30_000;
  const janitorLoop = (async () => {
    while (!stopController.signal.aborted) {
      await waitOrAbort(delay, sweepMs, stopController.signal);
      janitor.sweep();
    }
  })();

  informers.start();
  recorder.start();

  const nodeRef = (): InvolvedObject => ({
    kind: 'Node',
    namespace: '',
    name: nodeName,
    uid: indexes.node.nodeUid(),
  });
  let recordFailureLogged = false;
  const guarded = (what: () => void) => {
    try {
      what();
    } catch (error) {
      // A bug here must not reach the probe pipeline; once is enough to find it.
      if (!recordFailureLogged) logger.error({ err: error }, 'recording a Kubernetes Event failed');
      recordFailureLogged = true;
    }
  };

  const recordEvent = (attributed: AttributedEvent): void =>
    guarded(() => {
      const { event, attribution, wallTimeMs } = attributed;
      // Nothing was dropped: the metrics count these, no pod needs telling.
      if (event.kind === 'clash_resolved' || event.kind === 'snat_port_alloc') return;
      if (event.kind === 'dns_drop' && !deservesDnsEvent(event)) return;
      const pod = attribution.pod;
      const hostNetwork = !pod && resolver.isNodeAddress(attribution.sourceIp);
      if (!pod && !hostNetwork) return;
      const involvedObject: InvolvedObject = pod
        ? { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid }
        : nodeRef();
      const explanation =
        event.kind === 'insert_failed'
          ? explainInsertFailure(event, attribution, { hostNetwork })
          : explainDnsDrop(event, attribution, { hostNetwork });
      const aggregationKey =
        event.kind === 'insert_failed' ? event.race : `${event.reason}/${event.direction}`;
      recorder.record({ involvedObject, aggregationKey, wallTimeMs, ...explanation });
    });

  const recordTableFull = (report: TableFullReport): void =>
    guarded(() => {
      const explanation = explainTableFull({ nodeName, ...report });
      recorder.record({
        involvedObject: nodeRef(),
        aggregationKey: 'table_full',
        wallTimeMs: report.wallTimeMs,
        ...explanation,
      });
    });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      stopController.abort();
      await Promise.all([informers.stop(), recorder.stop(), janitorLoop]);
    })());
  options.signal?.addEventListener('abort', () => void stop(), { once: true });

  return {
    resolver,
    recordEvent,
    recordTableFull,
    isSynced: () => informers.isSynced(),
    pendingResources: () => informers.pending(),
    whenSynced: () => informers.whenSynced(),
    stop,
  };
}

/**
 * A DNS drop that tells the pod nothing new gets no Event (the metrics still count it): one
 * that lost a conntrack insertion race already has its ConntrackInsertFailed Event, and a
 * datagram freed unread from a closing socket (NOT_SPECIFIED) is a late answer the resolver
 * no longer wanted, not a drop on the network.
 */
function deservesDnsEvent(event: DnsDropEvent): boolean {
  if (event.conntrack?.lostInsertRace) return false;
  return event.reason !== 'NOT_SPECIFIED';
}
