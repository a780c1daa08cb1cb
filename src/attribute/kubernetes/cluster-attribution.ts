import type { V1Pod } from '@kubernetes/client-node';
import type { Lifecycle } from '../../shared/lifecycle.js';
import { ClusterInformers } from './cluster-informers.js';
import { EndpointSliceIndex } from './endpoint-slice-index.js';
import { kubernetesContext, type KubernetesContext } from './kubernetes-context.js';
import { KubernetesResolver } from './kubernetes-resolver.js';
import { NodeAddressIndex } from './node-address-index.js';
import { PodIpIndex } from './pod-ip-index.js';
import { ServiceIndex } from './service-index.js';

export interface ClusterAttributionOptions extends KubernetesContext {
  /** Runs once every informer has listed once, e.g. to return the lists' garbage. */
  readonly afterFirstSync?: () => void;
  /** How long a deleted pod's IP is still attributed to it, for late events. */
  readonly podIpRetentionMs: number;
  /** Told when a pod of this node is listed or changes, and when it is deleted. */
  readonly onPodSeen?: (namespace: string, name: string) => void;
  readonly onPodDeleted?: (namespace: string, name: string) => void;
  /** Told the whole Pod object when it is listed, changes or is deleted (the diagnosis). */
  readonly podObjects?: { upsert(pod: V1Pod): void; remove(pod: V1Pod): void };
  readonly informerInitialBackoffMs?: number;
  readonly informerMaxBackoffMs?: number;
  readonly watchTimeoutSeconds?: number;
}

/**
 * What the agent knows of the cluster: this node's pods, every Service and EndpointSlice, this
 * Node, kept current by informers, and the resolver that attributes events from them. The
 * resolver is usable at once and complete once every informer has listed.
 */
export class ClusterAttribution implements Lifecycle {
  readonly name = 'kubernetes-informers';
  readonly resolver: KubernetesResolver;
  private readonly nodeAddresses: NodeAddressIndex;
  private readonly informers: ClusterInformers;
  private readonly services: ServiceIndex;
  private readonly afterFirstSync: (() => void) | undefined;

  constructor(options: ClusterAttributionOptions) {
    this.afterFirstSync = options.afterFirstSync;
    this.nodeAddresses = new NodeAddressIndex(options.nodeName);
    const indexes = {
      pods: new PodIpIndex({ retentionMs: options.podIpRetentionMs }),
      services: (this.services = new ServiceIndex()),
      endpointSlices: new EndpointSliceIndex(),
      node: this.nodeAddresses,
    };
    this.resolver = new KubernetesResolver(indexes);
    const nameOf = (pod: V1Pod): [string, string] => [
      pod.metadata?.namespace ?? '',
      pod.metadata?.name ?? '',
    ];
    this.informers = new ClusterInformers({
      ...kubernetesContext(options),
      indexes,
      onPodSeen: (pod) => {
        options.podObjects?.upsert(pod);
        options.onPodSeen?.(...nameOf(pod));
      },
      onPodDeleted: (pod) => {
        options.podObjects?.remove(pod);
        options.onPodDeleted?.(...nameOf(pod));
      },
      initialBackoffMs: options.informerInitialBackoffMs,
      maxBackoffMs: options.informerMaxBackoffMs,
      watchTimeoutSeconds: options.watchTimeoutSeconds,
    });
  }

  /** Starts listing and watching in the background: returns at once. */
  start(signal: AbortSignal): void {
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.informers.start();
    const afterFirstSync = this.afterFirstSync;
    if (afterFirstSync) {
      void this.informers.whenSynced().then(() => {
        if (!signal.aborted) afterFirstSync();
      });
    }
  }

  stop(): Promise<void> {
    return this.informers.stop();
  }

  waitingFor(): string | undefined {
    const pending = this.informers.pending();
    return pending.length > 0 ? `Kubernetes not synced: ${pending.join(', ')}` : undefined;
  }

  /** Resolves once every informer has listed once, or at stop. */
  whenSynced(): Promise<void> {
    return this.informers.whenSynced();
  }

  /** The cluster DNS Service's ClusterIPs (kube-system/kube-dns), once listed. */
  kubeDnsIps(): ReadonlySet<string> {
    return new Set(this.services.ipsOf('kube-system', 'kube-dns'));
  }

  /** This Node's uid once listed: Events on the Node need it. */
  nodeUid(): string {
    return this.nodeAddresses.nodeUid();
  }
}
