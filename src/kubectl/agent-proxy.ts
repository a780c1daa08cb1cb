import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { AgentLocation } from './plugin-options.js';

export class PluginError extends Error {
  override readonly name = 'PluginError';
  constructor(
    message: string,
    readonly code:
      | 'ERR_POD_NOT_FOUND'
      | 'ERR_NO_NODE'
      | 'ERR_NO_AGENT'
      | 'ERR_PROXY'
      | 'ERR_API'
      | 'ERR_AGENT_ANSWER'
      | 'ERR_AGENT_AUTH',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ProxyAnswer {
  readonly status: number;
  readonly body: string;
}

/** What the plugin needs from the API server: pods, and GETs through the pod proxy. */
export interface ClusterApi {
  readPod(namespace: string, name: string): Promise<V1Pod | undefined>;
  listPods(namespace: string, labelSelector: string, nodeName?: string): Promise<V1Pod[]>;
  listNodeNames(): Promise<string[]>;
  /** GET `path` (from `/api/…`) on the API server, with the kubeconfig's credentials. */
  get(path: string): Promise<ProxyAnswer>;
}

export function clusterApi(kubeConfig: KubeConfig): ClusterApi {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  return {
    async readPod(namespace, name) {
      try {
        return await core.readNamespacedPod({ namespace, name });
      } catch (error) {
        if ((error as { code?: number }).code === 404) return undefined;
        throw new PluginError(`reading pod ${namespace}/${name}: ${messageOf(error)}`, 'ERR_API', {
          cause: error,
        });
      }
    },
    async listPods(namespace, labelSelector, nodeName) {
      const list = await core
        .listNamespacedPod({
          namespace,
          labelSelector,
          ...(nodeName ? { fieldSelector: `spec.nodeName=${nodeName}` } : {}),
        })
        .catch((error: unknown) => {
          throw new PluginError(
            `listing the agents in ${namespace}: ${messageOf(error)}`,
            'ERR_API',
            { cause: error },
          );
        });
      return list.items;
    },
    async listNodeNames() {
      const list = await core.listNode().catch((error: unknown) => {
        throw new PluginError(`listing nodes: ${messageOf(error)}`, 'ERR_API', { cause: error });
      });
      return list.items.flatMap((node) => (node.metadata?.name ? [node.metadata.name] : []));
    },
    get: (path) => getThroughApiServer(kubeConfig, path),
  };
}

/** A GET on the API server with node:http(s) and the kubeconfig's CA, client cert and token. */
async function getThroughApiServer(kubeConfig: KubeConfig, path: string): Promise<ProxyAnswer> {
  const server = kubeConfig.getCurrentCluster()?.server;
  if (!server) throw new PluginError('the kubeconfig has no current cluster', 'ERR_API');
  const url = new URL(path, server.endsWith('/') ? server : `${server}/`);
  // The server may have a path prefix (Rancher, proxies): keep it.
  url.pathname = `${new URL(server).pathname.replace(/\/$/, '')}${path}`;
  const options: RequestOptions = { method: 'GET', headers: { accept: 'application/json, */*' } };
  await kubeConfig.applyToHTTPSOptions(options);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = request(url, options, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    outgoing.setTimeout(30_000, () => outgoing.destroy(new Error('no answer within 30 s')));
    outgoing.on('error', (error) =>
      reject(
        new PluginError(`GET ${url.pathname}: ${error.message}`, 'ERR_PROXY', { cause: error }),
      ),
    );
    outgoing.end();
  });
}

/** The running agent pod on a node. */
export async function agentOnNode(
  api: ClusterApi,
  agent: AgentLocation,
  nodeName: string,
): Promise<V1Pod> {
  const pods = await api.listPods(agent.namespace, agent.selector, nodeName);
  const running = pods.find((pod) => pod.status?.phase === 'Running') ?? pods[0];
  if (!running?.metadata?.name) {
    throw new PluginError(
      `no agent on node ${nodeName} (pods labelled ${agent.selector} in namespace ${agent.namespace})`,
      'ERR_NO_AGENT',
    );
  }
  return running;
}

/**
 * Whether the agent pod serves TLS: `--metrics-auth kubernetes` (or `=kubernetes`, or
 * METRICS_AUTH=kubernetes) in its container's args or environment, as the secure-metrics
 * overlay sets it. An explicit `--agent-scheme` wins.
 */
export function agentScheme(agent: AgentLocation, pod: V1Pod | undefined): 'http' | 'https' {
  if (agent.scheme !== 'auto') return agent.scheme;
  for (const container of pod?.spec?.containers ?? []) {
    const args = [...(container.command ?? []), ...(container.args ?? [])];
    const flag = args.findIndex((arg) => arg === '--metrics-auth');
    if (flag >= 0 && args[flag + 1] === 'kubernetes') return 'https';
    if (args.includes('--metrics-auth=kubernetes')) return 'https';
    const env = container.env?.find((entry) => entry.name === 'METRICS_AUTH');
    if (flag < 0 && env?.value === 'kubernetes') return 'https';
  }
  return 'http';
}

/** `/api/v1/namespaces/<ns>/pods/[https:]<agent>:<port>/proxy/<path>`: RBAC decides (pods/proxy). */
export function agentProxyPath(
  agent: AgentLocation,
  agentPod: V1Pod | string,
  path: string,
): string {
  const name = typeof agentPod === 'string' ? agentPod : (agentPod.metadata?.name ?? '');
  const scheme = agentScheme(agent, typeof agentPod === 'string' ? undefined : agentPod);
  const target = `${scheme === 'https' ? 'https:' : ''}${name}:${agent.port}`;
  return `/api/v1/namespaces/${encodeURIComponent(agent.namespace)}/pods/${encodeURIComponent(target).replaceAll('%3A', ':')}/proxy${path}`;
}

/**
 * A 401 from an agent behind the pod proxy: kube-apiserver authenticates the caller and then
 * drops its Authorization header, and dials pods without a client certificate, so an agent
 * with `--metrics-auth kubernetes` never sees who asks.
 */
export function agentAuthError(path: string): PluginError {
  return new PluginError(
    `GET ${path}: HTTP 401 from the agent: it runs with --metrics-auth kubernetes, and the API server's pod proxy does not pass the caller's credentials on to a pod, so the agent cannot authorize the request. Read it with a token it accepts instead: kubectl port-forward -n NS POD 9474 and curl -k -H "Authorization: Bearer $TOKEN" https://127.0.0.1:9474${path.slice(path.indexOf('/proxy/') + '/proxy'.length)}`,
    'ERR_AGENT_AUTH',
  );
}

export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
