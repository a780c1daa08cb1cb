import type { PodDiagnosis, PodDiagnosisResult, PodDnsSpec } from '../events/diagnosis.js';
import type { PodDiagnosisRequest } from './pod-diagnoser.js';

export interface PodLocatorDependencies {
  /** Reads one pod; undefined when none of its processes is visible. */
  readonly diagnose: (request: PodDiagnosisRequest) => Promise<PodDiagnosis | undefined>;
  /** The network namespace holding an address. */
  readonly namespaceOfIp: (ip: string) => Promise<number | undefined>;
}

export interface PodToLocate {
  /** The pod as the API names it; undefined standalone (an address only). */
  readonly pod?: { readonly uid: string; readonly namespace: string; readonly name: string };
  /** The address its traffic came from (standalone) or its status.podIP; may be empty. */
  readonly ip: string;
  /** The network namespace holding it, when already known (standalone discovery). */
  readonly netnsInode?: number;
  /** What the API says of the pod (PodFacts): its DNS spec and container names. */
  readonly facts?: {
    readonly spec: PodDnsSpec;
    readonly containerNames: ReadonlyMap<string, string>;
  };
}

/**
 * Finds a pod's processes on this node and reads them: by the pod's uid in their cgroup path
 * first, else by the network namespace holding its address. The agent's diagnosis and the
 * doctor both find pods this way.
 */
export async function locateAndDiagnosePod(
  deps: PodLocatorDependencies,
  target: PodToLocate,
): Promise<PodDiagnosisResult> {
  const { pod, facts } = target;
  const base = facts ? { spec: facts.spec, containerNames: facts.containerNames } : {};
  if (pod) {
    const byUid = await deps.diagnose({
      ...base,
      target: { by: 'pod-uid', uid: pod.uid },
      foundBy: 'pod-uid',
    });
    if (byUid) return byUid;
  }
  const inode = target.netnsInode ?? (target.ip ? await deps.namespaceOfIp(target.ip) : undefined);
  if (inode !== undefined) {
    const byIp = await deps.diagnose({
      ...base,
      target: { by: 'netns', inode },
      foundBy: pod ? 'pod-ip' : 'netns',
    });
    if (byIp) return byIp;
  }
  return {
    status: 'unknown',
    reason: `no process of ${pod ? `pod ${pod.namespace}/${pod.name}` : target.ip} is visible from the node (hostPID needed)`,
  };
}
