import type { V1EndpointSlice } from '@kubernetes/client-node';
import type { ServiceRef } from '../../events/types.js';

/** The label the EndpointSlice controller puts on every slice it manages. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** A backend address as an EndpointSlice names it. */
export interface Backend {
  /** Unknown when several Services share the address and none was asked for. */
  readonly service?: ServiceRef;
  /** The pod behind the address, from the endpoint's targetRef (uid may be empty). */
  readonly pod?: { readonly namespace: string; readonly name: string; readonly uid: string };
}

/**
 * Backend IP → (Service, pod): who a DNAT translated towards. One address may back several
 * Services (two Services selecting one pod); the caller disambiguates with the ClusterIP.
 */
export class EndpointSliceIndex {
  private readonly bySlice = new Map<string, Map<string, Backend>>();
  private readonly byIp = new Map<string, Map<string, Backend>>();

  upsert(slice: V1EndpointSlice): void {
    const sliceKey = keyOf(slice);
    this.remove(slice);
    const serviceName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!serviceName) return;
    const service: ServiceRef = { namespace: slice.metadata?.namespace ?? '', name: serviceName };
    const backends = new Map<string, Backend>();
    for (const endpoint of slice.endpoints ?? []) {
      const target = endpoint.targetRef;
      const pod =
        target?.kind === 'Pod' && target.name
          ? {
              namespace: target.namespace ?? service.namespace,
              name: target.name,
              uid: target.uid ?? '',
            }
          : undefined;
      for (const address of endpoint.addresses ?? []) {
        backends.set(address, pod ? { service, pod } : { service });
      }
    }
    this.bySlice.set(sliceKey, backends);
    for (const [ip, backend] of backends) {
      const entries = this.byIp.get(ip) ?? new Map<string, Backend>();
      entries.set(sliceKey, backend);
      this.byIp.set(ip, entries);
    }
  }

  remove(slice: V1EndpointSlice): void {
    const sliceKey = keyOf(slice);
    for (const ip of this.bySlice.get(sliceKey)?.keys() ?? []) {
      const entries = this.byIp.get(ip);
      entries?.delete(sliceKey);
      if (entries?.size === 0) this.byIp.delete(ip);
    }
    this.bySlice.delete(sliceKey);
  }

  /** Backends at `ip`, preferring the one of `service` when given. */
  backendAt(ip: string, service?: ServiceRef): Backend | undefined {
    const entries = this.byIp.get(ip);
    if (!entries) return undefined;
    const all = [...entries.values()];
    if (service) {
      const match = all.find(
        (b) => b.service?.namespace === service.namespace && b.service.name === service.name,
      );
      if (match) return match;
    }
    if (all.length === 1) return all[0];
    // Several Services share the address: the pod is still known, the Service is not.
    const pod = all[0]?.pod;
    return pod && all.every((b) => b.pod?.uid === pod.uid && b.pod.name === pod.name)
      ? { pod }
      : undefined;
  }

  get size(): number {
    return this.bySlice.size;
  }
}

function keyOf(slice: V1EndpointSlice): string {
  return `${slice.metadata?.namespace ?? ''}/${slice.metadata?.name ?? ''}`;
}
