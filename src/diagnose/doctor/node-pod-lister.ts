import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { listAllPages } from '../../attribute/kubernetes/paged-list.js';
import type { NodePodLister } from './kubernetes-pods.js';

/** Pods listed at most: a node holds a few hundred (the kubelet's default max is 110). */
const MAX_PODS = 5_000;

export class PodListError extends Error {
  override readonly name = 'PodListError';
  readonly code = 'ERR_DOCTOR_POD_LIST';
}

/** The pods of one node through the API, page by page (`fieldSelector=spec.nodeName=…`). */
export function nodePodLister(kubeConfig: KubeConfig): NodePodLister {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  return async (nodeName) => {
    const list = await listAllPages<V1Pod>(
      ({ limit, continueToken }) =>
        core.listPodForAllNamespaces({
          fieldSelector: `spec.nodeName=${nodeName}`,
          limit,
          ...(continueToken ? { _continue: continueToken } : {}),
        }),
      { pageSize: 500, transform: (pod) => pod, maxObjects: MAX_PODS, onDropped: () => {} },
    ).catch((cause: unknown) => {
      throw new PodListError(`could not list the pods of node ${nodeName}: ${String(cause)}`, {
        cause,
      });
    });
    return list.items;
  };
}
