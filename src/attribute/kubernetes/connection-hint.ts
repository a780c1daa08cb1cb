import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Where the kubelet mounts a pod's service-account credentials. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * Whether anything could configure Kubernetes: a flag, KUBECONFIG, or a mounted service
 * account. Kept apart from connection.ts so that answering it does not load
 * @kubernetes/client-node, which a standalone agent never needs.
 */
export function mayHaveKubernetesConfig(inputs: {
  readonly kubeconfigFlag?: string;
  readonly kubeconfigEnv?: string;
  readonly serviceAccountDir?: string;
}): boolean {
  return Boolean(
    inputs.kubeconfigFlag ||
    inputs.kubeconfigEnv ||
    existsSync(join(inputs.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, 'token')),
  );
}
