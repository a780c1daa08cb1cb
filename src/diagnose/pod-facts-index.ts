import type { V1Pod } from '@kubernetes/client-node';
import { canonicalIp } from '../shared/canonical-ip.js';
import type { PodFacts } from './pod-diagnosis-cache.js';

/** A pod's DNS settings and container ids, as its diagnosis reads them. */
export function podFactsOf(pod: V1Pod): PodFacts | undefined {
  const uid = pod.metadata?.uid;
  if (!uid) return undefined;
  const containerNames = new Map<string, string>();
  for (const status of [
    ...(pod.status?.containerStatuses ?? []),
    ...(pod.status?.initContainerStatuses ?? []),
  ]) {
    // "containerd://<64 hex>", "cri-o://…", "docker://…": the id is what cgroup paths hold.
    const id = status.containerID?.split('://')[1];
    if (id) containerNames.set(id, status.name);
  }
  const dnsConfig = pod.spec?.dnsConfig;
  const primaryIp = pod.status?.podIP || pod.status?.podIPs?.[0]?.ip;
  return {
    uid,
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    ...(pod.status?.phase ? { phase: pod.status.phase } : {}),
    resourceVersion: pod.metadata?.resourceVersion ?? '',
    // The primary address (either family; the first of podIPs), canonical like every index key.
    ...(primaryIp ? { ip: canonicalIp(primaryIp) } : {}),
    spec: {
      hostNetwork: pod.spec?.hostNetwork === true,
      ...(pod.spec?.dnsPolicy ? { dnsPolicy: pod.spec.dnsPolicy } : {}),
      ...(dnsConfig
        ? {
            dnsConfig: {
              ...(dnsConfig.nameservers ? { nameservers: dnsConfig.nameservers } : {}),
              ...(dnsConfig.searches ? { searches: dnsConfig.searches } : {}),
              ...(dnsConfig.options
                ? {
                    options: dnsConfig.options.map((o) => ({
                      name: o.name ?? '',
                      ...(o.value !== undefined ? { value: o.value } : {}),
                    })),
                  }
                : {}),
            },
          }
        : {}),
    },
    containerNames,
  };
}

/** The DNS settings and container ids of this node's pods, by uid, as the informer sees them. */
export class PodFactsIndex {
  private readonly byUid = new Map<string, PodFacts>();
  /** namespace/name → uid. */
  private readonly uidByName = new Map<string, string>();

  /** `onChange` is told each pod listed or changed, e.g. to diagnose it before its first event. */
  constructor(private readonly onChange?: (facts: PodFacts) => void) {}

  upsert(pod: V1Pod): void {
    const facts = podFactsOf(pod);
    if (!facts) return;
    this.byUid.set(facts.uid, facts);
    this.uidByName.set(`${pod.metadata?.namespace}/${pod.metadata?.name}`, facts.uid);
    this.onChange?.(facts);
  }

  remove(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (uid) this.byUid.delete(uid);
    const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    if (this.uidByName.get(key) === uid) this.uidByName.delete(key);
  }

  /** The uid of a pod of this node known by name. */
  uidOf(namespace: string, name: string): string | undefined {
    return this.uidByName.get(`${namespace}/${name}`);
  }

  get(uid: string): PodFacts | undefined {
    return this.byUid.get(uid);
  }
}
