import type { V1Pod } from '@kubernetes/client-node';
import type {
  ContainerDiagnosis,
  NodeDiagnosis,
  PodDiagnosis,
  PodDnsSpec,
} from '../../events/diagnosis.js';
import type { Clock } from '../../shared/clock.js';
import type { HostFiles } from '../host-files.js';
import type { NameserverContext } from '../nameserver-kind.js';
import { NetnsAddressMap } from '../netns-addresses.js';
import { diagnosePod } from '../pod-diagnoser.js';
import { podFactsOf } from '../pod-facts-index.js';
import { locateAndDiagnosePod } from '../pod-locator.js';
import { adviceFor, summaryOf } from '../remedies.js';
import type { Remedy } from '../../events/advice.js';
import { adviseFromSpec } from './spec-advice.js';

/** Lists the pods scheduled on a node (`fieldSelector=spec.nodeName=…`). */
export type NodePodLister = (nodeName: string) => Promise<readonly V1Pod[]>;

export interface DoctorKubernetesPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** What the pod asks for: its dnsPolicy, hostNetwork and dnsConfig. */
  readonly spec: PodDnsSpec;
  /** Whether its containers' libc and /etc/resolv.conf were read through /proc. */
  readonly read: boolean;
  /** How its processes were found, when read. */
  readonly foundBy?: PodDiagnosis['foundBy'];
  /** Why not, when not read. */
  readonly notRead?: string;
  /** What its containers really use (empty when not read). */
  readonly containers: readonly ContainerDiagnosis[];
  readonly summary: string;
  readonly remedies: readonly Remedy[];
  readonly notes: readonly string[];
}

export interface DoctorKubernetes {
  readonly nodeName: string;
  /** Where the connection came from: flag, env or in-cluster. */
  readonly source: string;
  readonly server: string;
  readonly pods: readonly DoctorKubernetesPod[];
}

export interface KubernetesPodsDependencies {
  readonly files: HostFiles;
  readonly procRoot: string;
  readonly clock: Clock;
  readonly nodeName: string;
  readonly listPods: NodePodLister;
  readonly nameserverContext: NameserverContext;
}

/** The advice for a DNS query of the pod lost in a race: the case the doctor checks for. */
const DNS_RACE = { race: 'snat_dnat', protocol: 'udp', dns: true, dnsRaceLike: true } as const;

/** Per pod of the node: its DNS spec beside what its containers use, and the advice. */
export async function readKubernetesPods(
  deps: KubernetesPodsDependencies,
  node: NodeDiagnosis,
): Promise<DoctorKubernetesPod[]> {
  const addresses = new NetnsAddressMap({
    files: deps.files,
    procRoot: deps.procRoot,
    clock: deps.clock,
    maxAgeMs: 60_000,
  });
  const locator = {
    diagnose: (request: Parameters<typeof diagnosePod>[1]) =>
      diagnosePod(
        {
          files: deps.files,
          procRoot: deps.procRoot,
          clock: deps.clock,
          nameserverContext: () => deps.nameserverContext,
        },
        request,
      ),
    namespaceOfIp: (ip: string) => addresses.namespaceOf(ip),
  };
  const pods: DoctorKubernetesPod[] = [];
  const listed = [...(await deps.listPods(deps.nodeName))].sort((a, b) =>
    `${a.metadata?.namespace}/${a.metadata?.name}`.localeCompare(
      `${b.metadata?.namespace}/${b.metadata?.name}`,
    ),
  );
  for (const pod of listed) {
    const facts = podFactsOf(pod);
    if (!facts) continue;
    const namespace = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    const diagnosis = facts.spec.hostNetwork
      ? { status: 'unknown' as const, reason: "hostNetwork: it uses the node's resolver" }
      : await locateAndDiagnosePod(locator, {
          pod: { uid: facts.uid, namespace, name },
          ip: facts.ip ?? '',
          facts,
        });
    const advice = adviceFor(DNS_RACE, { pod: diagnosis, node });
    const adjusted = adviseFromSpec(facts.spec, diagnosis, advice, deps.nameserverContext);
    const read = diagnosis.status === 'diagnosed';
    pods.push({
      namespace,
      name,
      uid: facts.uid,
      spec: facts.spec,
      read,
      ...(read ? { foundBy: diagnosis.foundBy } : { notRead: diagnosis.reason }),
      containers: read ? diagnosis.containers : [],
      summary: summaryOf(read ? diagnosis : undefined),
      remedies: adjusted.remedies.filter(
        (r) => r.id !== 'random-fully' && !r.id.startsWith('kernel'),
      ),
      notes: [...adjusted.notes, ...advice.notes],
    });
  }
  return pods;
}
