import type { EventDiagnosis, PodDiagnosis } from '../../src/events/diagnosis.js';

/** A glibc container asking kube-dns, its spec setting ndots:2 in dnsConfig. */
export function glibcPodDiagnosis(): PodDiagnosis {
  return {
    status: 'diagnosed',
    foundBy: 'pod-uid',
    containers: [
      {
        pid: 4242,
        name: 'cart',
        libc: { kind: 'glibc', version: '2.36' },
        resolvConf: {
          nameservers: ['10.96.0.10'],
          search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
          options: {
            ndots: 2,
            timeout: 5,
            attempts: 2,
            singleRequest: false,
            singleRequestReopen: false,
            useVc: false,
            rotate: false,
            edns0: false,
          },
          warnings: [],
        },
        nameservers: [{ address: '10.96.0.10', kind: 'cluster-dns' }],
      },
    ],
    spec: {
      dnsPolicy: 'ClusterFirst',
      hostNetwork: false,
      dnsConfig: { options: [{ name: 'ndots', value: '2' }] },
    },
    diagnosedAtMs: 0,
  };
}

/**
 * Seed 004's Alpine pod: musl, ndots:5 and a search list of three domains, the last one served
 * by a server that answers NODATA for names it does not hold.
 */
export function muslSeed004Diagnosis(libc: 'musl' | 'glibc' = 'musl'): PodDiagnosis {
  const glibc = glibcPodDiagnosis();
  const container = glibc.containers[0]!;
  return {
    ...glibc,
    containers: [
      {
        ...container,
        name: 'alpine',
        libc: libc === 'musl' ? { kind: 'musl', version: '1.2.3' } : container.libc,
        resolvConf: {
          ...container.resolvConf!,
          search: ['shop.svc.cluster.local', 'svc.cluster.local', 'corp.test'],
          options: { ...container.resolvConf!.options, ndots: 5 },
        },
      },
    ],
  };
}

export function eventDiagnosis(pod: PodDiagnosis = glibcPodDiagnosis()): EventDiagnosis {
  return {
    pod,
    node: {
      status: 'diagnosed',
      natRules: [],
      natSources: [],
      kubeProxyMode: 'iptables',
      nodeLocalDns: { present: false, addresses: [] },
      conntrack: {},
      diagnosedAtMs: 0,
    },
  };
}
