import type { V1Pod } from '@kubernetes/client-node';
import { dump, load } from 'js-yaml';

/** What a remedy's pod spec fragment is to be applied to. */
export interface PatchTarget {
  /** Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, or Pod (none of those owns it). */
  readonly kind: string;
  readonly name: string;
  readonly namespace: string;
}

const TEMPLATED = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);

/**
 * The workload whose template makes the pod: its controller, and for a ReplicaSet named
 * `<deployment>-<pod-template-hash>` the Deployment above it (the Deployment controller's
 * naming; read from the pod alone, so no right to read ReplicaSets is needed).
 */
export function patchTargetOf(pod: V1Pod): PatchTarget {
  const namespace = pod.metadata?.namespace ?? 'default';
  const owner = pod.metadata?.ownerReferences?.find((ref) => ref.controller);
  const hash = pod.metadata?.labels?.['pod-template-hash'];
  if (owner?.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) {
    return { kind: 'Deployment', name: owner.name.slice(0, -hash.length - 1), namespace };
  }
  if (owner && TEMPLATED.has(owner.kind)) return { kind: owner.kind, name: owner.name, namespace };
  return { kind: 'Pod', name: pod.metadata?.name ?? '', namespace };
}

/**
 * A remedy's pod spec fragment (`spec: {dnsConfig: …}`) as a strategic-merge patch of the
 * target, with the command that applies it as a comment. A pod's dnsConfig cannot change in
 * place: for a bare pod the fragment is what its manifest needs before it is created again.
 */
export function remedyPatch(target: PatchTarget, fragmentYaml: string, file: string): string {
  const fragment = load(fragmentYaml) as { spec?: Record<string, unknown> } | undefined;
  const spec = fragment?.spec ?? {};
  if (target.kind === 'Pod') {
    return `# pod ${target.namespace}/${target.name}: a pod's dnsConfig is immutable; add this to its manifest and create it again\n${dump({ spec }, { lineWidth: -1, quotingType: '"' })}`;
  }
  if (target.kind === 'Job') {
    return `# job ${target.namespace}/${target.name}: a Job's template is immutable; add this to its manifest for the next run\n${dump({ spec: { template: { spec } } }, { lineWidth: -1, quotingType: '"' })}`;
  }
  const patch = dump({ spec: { template: { spec } } }, { lineWidth: -1, quotingType: '"' });
  return `# kubectl patch ${target.kind.toLowerCase()} ${target.name} -n ${target.namespace} --type strategic --patch-file ${file}\n${patch}`;
}
