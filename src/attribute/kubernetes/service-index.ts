import type { V1Service } from '@kubernetes/client-node';
import { canonicalIp } from '../../shared/canonical-ip.js';
import type { ServiceRef } from '../../events/types.js';

/**
 * ClusterIP (and external IP) → Service, every entry of `spec.clusterIPs` (both families on a
 * dual-stack Service), keyed in canonical form. Not time-aware: a ClusterIP is freed only when its
 * Service is deleted and the allocator does not hand it out again at once, so a late event
 * meeting a reused ClusterIP is rare enough to accept.
 */
export class ServiceIndex {
  private readonly byIp = new Map<string, ServiceRef>();
  private readonly ipsByKey = new Map<string, string[]>();

  upsert(service: V1Service): void {
    const key = keyOf(service);
    this.dropKey(key);
    const ref: ServiceRef = {
      namespace: service.metadata?.namespace ?? '',
      name: service.metadata?.name ?? '',
    };
    const ips = new Set<string>();
    for (const ip of service.spec?.clusterIPs ?? []) ips.add(canonicalIp(ip));
    if (service.spec?.clusterIP) ips.add(canonicalIp(service.spec.clusterIP));
    for (const ip of service.spec?.externalIPs ?? []) ips.add(canonicalIp(ip));
    ips.delete('None'); // headless Services have no virtual IP to translate
    ips.delete('');
    for (const ip of ips) this.byIp.set(ip, ref);
    this.ipsByKey.set(key, [...ips]);
  }

  remove(service: V1Service): void {
    this.dropKey(keyOf(service));
  }

  /** The virtual IPs of the Service `namespace/name` (e.g. kube-system/kube-dns). */
  ipsOf(namespace: string, name: string): readonly string[] {
    return this.ipsByKey.get(`${namespace}/${name}`) ?? [];
  }

  serviceAt(ip: string): ServiceRef | undefined {
    return this.byIp.get(canonicalIp(ip));
  }

  get size(): number {
    return this.ipsByKey.size;
  }

  private dropKey(key: string): void {
    for (const ip of this.ipsByKey.get(key) ?? []) {
      const ref = this.byIp.get(ip);
      if (ref && `${ref.namespace}/${ref.name}` === key) this.byIp.delete(ip);
    }
    this.ipsByKey.delete(key);
  }
}

function keyOf(service: V1Service): string {
  return `${service.metadata?.namespace ?? ''}/${service.metadata?.name ?? ''}`;
}
