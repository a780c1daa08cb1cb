import { existsSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

import { SERVICE_ACCOUNT_DIR } from './connection-hint.js';

export { SERVICE_ACCOUNT_DIR };

export interface ConnectionInputs {
  /** `--kubeconfig FILE`: wins over everything else. */
  readonly kubeconfigFlag?: string;
  /** The value of `KUBECONFIG`, read by the entry point (one path, or several joined by ':'). */
  readonly kubeconfigEnv?: string;
  /** `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT`, read by the entry point. */
  readonly inCluster?: { readonly host?: string; readonly port?: string };
  /** Directory holding `token`, `ca.crt`, `namespace`; injectable for tests. */
  readonly serviceAccountDir?: string;
}

export type ConnectionSource = 'flag' | 'env' | 'in-cluster';

export interface KubernetesConnection {
  readonly kubeConfig: KubeConfig;
  readonly source: ConnectionSource;
  /** The file or directory the configuration came from, for the start-up log. */
  readonly origin: string;
  readonly server: string;
}

export class KubeConfigError extends Error {
  override readonly name = 'KubeConfigError';
  readonly code = 'ERR_KUBECONFIG';
  constructor(
    message: string,
    readonly origin: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Resolves how to reach the API server: `--kubeconfig` > `KUBECONFIG` > in-cluster service
 * account > none. `undefined` means no Kubernetes configuration at all: the agent stays
 * standalone. A configuration that exists but cannot be used is an error value, never silently
 * ignored, because the operator asked for Kubernetes.
 */
export function resolveKubernetesConnection(
  inputs: ConnectionInputs,
): KubernetesConnection | KubeConfigError | undefined {
  if (inputs.kubeconfigFlag) return loadFile(inputs.kubeconfigFlag, 'flag');
  const envPaths = (inputs.kubeconfigEnv ?? '').split(':').filter((path) => path !== '');
  if (envPaths.length > 0) {
    // kubectl merges a KUBECONFIG list; the agent needs one cluster, so the first file that
    // exists is used, as kubectl's first-wins rule would pick its context from it anyway.
    const existing = envPaths.find((path) => existsSync(path));
    if (existing === undefined) {
      return new KubeConfigError(
        `none of the KUBECONFIG files exists: ${envPaths.join(', ')}`,
        envPaths.join(':'),
      );
    }
    return loadFile(existing, 'env');
  }
  const saDir = inputs.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const tokenFile = join(saDir, 'token');
  if (existsSync(tokenFile)) return loadInCluster(saDir, inputs.inCluster);
  return undefined;
}

function loadFile(path: string, source: ConnectionSource): KubernetesConnection | KubeConfigError {
  const kubeConfig = new KubeConfig();
  try {
    kubeConfig.loadFromFile(path);
  } catch (cause) {
    return new KubeConfigError(`cannot read kubeconfig ${path}: ${messageOf(cause)}`, path, {
      cause,
    });
  }
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster?.server) {
    return new KubeConfigError(
      `kubeconfig ${path} has no current context with a cluster server`,
      path,
    );
  }
  return { kubeConfig, source, origin: path, server: cluster.server };
}

function loadInCluster(
  saDir: string,
  env: ConnectionInputs['inCluster'],
): KubernetesConnection | KubeConfigError {
  const host = env?.host;
  const port = env?.port;
  if (!host || !port) {
    return new KubeConfigError(
      'service-account token found but KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set',
      saDir,
    );
  }
  const serverHost = isIPv6(host) ? `[${host}]` : host;
  const server = `https://${serverHost}:${port}`;
  const kubeConfig = new KubeConfig();
  // The tokenFile provider re-reads the token every minute: bound service-account tokens rotate.
  kubeConfig.loadFromClusterAndUser(
    { name: 'in-cluster', server, caFile: join(saDir, 'ca.crt'), skipTLSVerify: false },
    {
      name: 'in-cluster',
      authProvider: { name: 'tokenFile', config: { tokenFile: join(saDir, 'token') } },
    },
  );
  return { kubeConfig, source: 'in-cluster', origin: saDir, server };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
