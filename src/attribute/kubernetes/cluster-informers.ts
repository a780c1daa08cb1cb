import {
  CoreV1Api,
  DiscoveryV1Api,
  type V1EndpointSlice,
  type V1Node,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { InformerMetrics } from './informer-metrics.js';
import type { KubernetesIndexes } from './kubernetes-resolver.js';
import type { KubernetesContext } from './kubernetes-context.js';
import { leanEndpointSlice, leanNode, leanPod, leanService } from './lean-objects.js';
import { ResilientInformer, type ResilientInformerOptions } from './resilient-informer.js';

export const INFORMER_RESOURCES = ['pods', 'services', 'endpointslices', 'nodes'] as const;
export type InformerResource = (typeof INFORMER_RESOURCES)[number];

/**
 * Objects each informer holds at most (see ResilientInformerOptions.maxObjects for what happens
 * at the bound). Far above what a conformant cluster holds (110 pods per node by default, the
 * scalability envelope's 10,000 Services), low enough that a runaway collection cannot take the
 * node's memory: a lean EndpointSlice of 10 endpoints costs ~3 KB in the cache and the indexes
 * (docs/benchmarks.md, section 6), so 100,000 of them stay within ~300 MB.
 */
export const DEFAULT_MAX_OBJECTS: Readonly<Record<InformerResource, number>> = {
  pods: 5_000,
  services: 50_000,
  endpointslices: 100_000,
  nodes: 10,
};

export interface ClusterInformersOptions extends KubernetesContext {
  readonly indexes: KubernetesIndexes;
  /** Told when a pod of this node disappears, e.g. to expire its metric series later. */
  readonly onPodDeleted?: (pod: V1Pod) => void;
  /** Told when a pod of this node is listed or changes (a recreated name cancels expiry). */
  readonly onPodSeen?: (pod: V1Pod) => void;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly watchTimeoutSeconds?: number;
  /** Items per list page. */
  readonly pageSize?: number;
  readonly maxObjects?: Partial<Record<InformerResource, number>>;
  /** Randomness for the backoff and watch-timeout jitter. */
  readonly random?: () => number;
}

/**
 * The four informers the attribution needs, feeding the indexes: this node's pods (field
 * selector spec.nodeName, so the agent's watch stays small on large clusters), all Services
 * and EndpointSlices (ClusterIPs and backends anywhere), and this Node (its addresses).
 */
/** What every informer shares; each adds its resource, list call and handlers. */
type CommonInformerOptions = Pick<
  ResilientInformerOptions<V1Pod>,
  | 'kubeConfig'
  | 'metrics'
  | 'delay'
  | 'clock'
  | 'logger'
  | 'initialBackoffMs'
  | 'maxBackoffMs'
  | 'watchTimeoutSeconds'
  | 'pageSize'
  | 'random'
>;

export class ClusterInformers {
  private readonly informers: Array<
    ResilientInformer<V1Pod | V1Service | V1EndpointSlice | V1Node>
  >;

  constructor(options: ClusterInformersOptions) {
    const core = options.kubeConfig.makeApiClient(CoreV1Api);
    const discovery = options.kubeConfig.makeApiClient(DiscoveryV1Api);
    const metrics = new InformerMetrics(options.registry, INFORMER_RESOURCES);
    const { indexes, clock } = options;
    const common: CommonInformerOptions = {
      kubeConfig: options.kubeConfig,
      metrics,
      delay: options.delay,
      clock,
      logger: options.logger,
      initialBackoffMs: options.initialBackoffMs,
      maxBackoffMs: options.maxBackoffMs,
      watchTimeoutSeconds: options.watchTimeoutSeconds,
      pageSize: options.pageSize,
      random: options.random,
    };
    const bound = (resource: InformerResource) =>
      options.maxObjects?.[resource] ?? DEFAULT_MAX_OBJECTS[resource];
    const pods = podInformer(options, common, core, bound('pods'));
    const services = new ResilientInformer<V1Service>({
      ...common,
      resource: 'services',
      path: '/api/v1/services',
      listPage: (page) =>
        core.listServiceForAllNamespaces({ limit: page.limit, _continue: page.continueToken }),
      transform: leanService,
      maxObjects: bound('services'),
      handlers: {
        upsert: (s) => indexes.services.upsert(s),
        remove: (s) => indexes.services.remove(s),
      },
    });
    const endpointSlices = new ResilientInformer<V1EndpointSlice>({
      ...common,
      resource: 'endpointslices',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      listPage: (page) =>
        discovery.listEndpointSliceForAllNamespaces({
          limit: page.limit,
          _continue: page.continueToken,
        }),
      transform: leanEndpointSlice,
      maxObjects: bound('endpointslices'),
      handlers: {
        upsert: (slice) => indexes.endpointSlices.upsert(slice),
        remove: (slice) => indexes.endpointSlices.remove(slice),
      },
    });
    const nodeSelector = `metadata.name=${options.nodeName}`;
    const node = new ResilientInformer<V1Node>({
      ...common,
      resource: 'nodes',
      path: '/api/v1/nodes',
      fieldSelector: nodeSelector,
      listPage: (page) =>
        core.listNode({
          fieldSelector: nodeSelector,
          limit: page.limit,
          _continue: page.continueToken,
        }),
      transform: leanNode,
      maxObjects: bound('nodes'),
      handlers: { upsert: (n) => indexes.node.upsert(n), remove: (n) => indexes.node.remove(n) },
    });
    this.informers = [pods, services, endpointSlices, node] as typeof this.informers;
  }

  start(): void {
    for (const informer of this.informers) informer.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.stop()));
  }

  /** All four have completed a first list: what `/readyz` waits for. */
  isSynced(): boolean {
    return this.informers.every((informer) => informer.isSynced());
  }

  async whenSynced(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.whenSynced()));
  }

  /** Resources not yet synced, for a helpful `/readyz` body or log line. */
  pending(): string[] {
    return this.informers
      .filter((informer) => !informer.isSynced())
      .map((informer) => informer.resource);
  }
}

/** The pods of this node only (field selector spec.nodeName): the watch stays small. */
function podInformer(
  options: ClusterInformersOptions,
  common: CommonInformerOptions,
  core: CoreV1Api,
  maxObjects: number,
): ResilientInformer<V1Pod> {
  const podSelector = `spec.nodeName=${options.nodeName}`;
  return new ResilientInformer<V1Pod>({
    ...common,
    resource: 'pods',
    path: '/api/v1/pods',
    fieldSelector: podSelector,
    listPage: (page) =>
      core.listPodForAllNamespaces({
        fieldSelector: podSelector,
        limit: page.limit,
        _continue: page.continueToken,
      }),
    transform: leanPod,
    maxObjects,
    handlers: {
      upsert: (pod) => {
        options.indexes.pods.upsert(pod, options.clock.nowMs());
        options.onPodSeen?.(pod);
      },
      remove: (pod) => {
        options.indexes.pods.remove(pod, options.clock.nowMs());
        options.onPodDeleted?.(pod);
      },
    },
  });
}
