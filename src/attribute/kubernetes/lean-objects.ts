import type {
  V1EndpointSlice,
  V1Node,
  V1Pod,
  V1PodCondition,
  V1Service,
} from '@kubernetes/client-node';
import { SERVICE_NAME_LABEL } from './endpoint-slice-index.js';

/**
 * Transforms applied to every listed or watched object before the informer stores it: only
 * the fields the indexes (pod-ip-index, service-index, endpoint-slice-index,
 * node-address-index) and the diagnosis (diagnose/pod-facts-index) read are kept, in objects
 * of the same shape, so every reader works unchanged. managedFields, annotations, other labels,
 * ports, selectors and the rest of spec and status are dropped: on a cluster of 5,000
 * Services and 10,000 EndpointSlices the full objects held ~260 MB (docs/benchmarks.md).
 *
 * Each transform takes the object as the watch delivers it (plain JSON) or as the typed list
 * returns it (client-node models, dates as Date): the field names are the same.
 * `metadata.resourceVersion` is kept everywhere: the informer's cache compares it to skip
 * unchanged objects on a relist.
 */
export type LeanTransform<T> = (object: T) => T;

/** Pod: identity, IPs, hostNetwork, phase, the network-ready condition, DNS and container ids. */
export function leanPod(pod: V1Pod): V1Pod {
  const { metadata, spec, status } = pod;
  const lean: V1Pod = {
    metadata: pick(metadata, ['name', 'namespace', 'uid', 'resourceVersion']),
  };
  if (spec) {
    lean.spec = {
      containers: [], // required by the type; the container specs are never read
      ...pick(spec, ['hostNetwork', 'nodeName', 'dnsPolicy', 'dnsConfig']),
    };
  }
  if (status) {
    const conditions = status.conditions?.filter(isNetworkReadyCondition).map(leanCondition);
    lean.status = {
      ...pick(status, ['phase', 'podIP', 'podIPs']),
      ...(conditions && conditions.length > 0 ? { conditions } : {}),
      ...(status.containerStatuses
        ? { containerStatuses: status.containerStatuses.map(leanContainerStatus) }
        : {}),
      ...(status.initContainerStatuses
        ? { initContainerStatuses: status.initContainerStatuses.map(leanContainerStatus) }
        : {}),
    };
  }
  return lean;
}

/** Service: identity and its virtual IPs (clusterIP(s), externalIPs). */
export function leanService(service: V1Service): V1Service {
  const lean: V1Service = {
    metadata: pick(service.metadata, ['name', 'namespace', 'resourceVersion']),
  };
  if (service.spec) lean.spec = pick(service.spec, ['clusterIP', 'clusterIPs', 'externalIPs']);
  return lean;
}

/** EndpointSlice: identity, the service-name label, each endpoint's addresses and targetRef. */
export function leanEndpointSlice(slice: V1EndpointSlice): V1EndpointSlice {
  const serviceName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return {
    addressType: slice.addressType,
    metadata: {
      ...pick(slice.metadata, ['name', 'namespace', 'resourceVersion']),
      ...(serviceName !== undefined ? { labels: { [SERVICE_NAME_LABEL]: serviceName } } : {}),
    },
    endpoints: (slice.endpoints ?? []).map((endpoint) => ({
      addresses: endpoint.addresses,
      ...(endpoint.targetRef
        ? { targetRef: pick(endpoint.targetRef, ['kind', 'name', 'namespace', 'uid']) }
        : {}),
    })),
  };
}

/** Node: identity and its addresses. */
export function leanNode(node: V1Node): V1Node {
  const addresses = node.status?.addresses?.map((a) => ({ type: a.type, address: a.address }));
  return {
    metadata: pick(node.metadata, ['name', 'uid', 'resourceVersion']),
    ...(addresses ? { status: { addresses } } : {}),
  };
}

function isNetworkReadyCondition(condition: V1PodCondition): boolean {
  return condition.type === 'PodReadyToStartContainers' || condition.type === 'PodHasNetwork';
}

function leanCondition(condition: V1PodCondition): V1PodCondition {
  return pick(condition, ['type', 'status', 'lastTransitionTime']) as V1PodCondition;
}

function leanContainerStatus<S extends { name: string; containerID?: string }>(status: S): S {
  return pick(status, ['name', 'containerID']) as S;
}

/** The listed keys that are present (not undefined), in a new plain object. */
function pick<T extends object, K extends keyof T>(
  object: T | undefined,
  keys: readonly K[],
): Pick<T, K> {
  const picked = {} as Pick<T, K>;
  if (!object) return picked;
  for (const key of keys) {
    if (object[key] !== undefined) picked[key] = object[key];
  }
  return picked;
}
