import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import {
  agentAuthError,
  agentOnNode,
  agentProxyPath,
  messageOf,
  PluginError,
  type ClusterApi,
} from './agent-proxy.js';
import { parsePluginArgs, type PluginCommand } from './plugin-options.js';
import { totalsOfExposition } from './prometheus-totals.js';
import { parseStory, renderStory } from './render-story.js';

export const PLUGIN_EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export interface PluginIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export interface PluginSystem {
  /** Loads the kubeconfig: the file given, else kubectl's default (KUBECONFIG, ~/.kube/config). */
  readonly loadKubeConfig: (file: string | undefined, context: string | undefined) => KubeConfig;
  readonly clusterApi: (kubeConfig: KubeConfig) => ClusterApi;
}

/** `kubectl conntrack-race …`: resolves to the exit code; never throws. */
export async function runPlugin(
  argv: readonly string[],
  io: PluginIo,
  system: PluginSystem,
): Promise<number> {
  const parsed = parsePluginArgs(argv);
  if (parsed.kind === 'exit') {
    io.stdout(parsed.output);
    return PLUGIN_EXIT.ok;
  }
  if (parsed.kind === 'error') {
    io.stderr(`kubectl conntrack-race: ${parsed.message}\n`);
    return PLUGIN_EXIT.usage;
  }
  const { options } = parsed;
  let kubeConfig: KubeConfig;
  try {
    kubeConfig = system.loadKubeConfig(options.kubeconfig, options.context);
  } catch (error) {
    io.stderr(`kubectl conntrack-race: cannot load the kubeconfig: ${messageOf(error)}\n`);
    return PLUGIN_EXIT.usage;
  }
  try {
    const api = system.clusterApi(kubeConfig);
    if (options.command === 'why') {
      const namespace = options.namespace ?? namespaceOf(kubeConfig);
      io.stdout(await why(api, options, namespace));
    } else io.stdout(await nodes(api, options));
    return PLUGIN_EXIT.ok;
  } catch (error) {
    const code = error instanceof PluginError ? ` (${error.code})` : '';
    io.stderr(`kubectl conntrack-race: ${messageOf(error)}${code}\n`);
    return PLUGIN_EXIT.failed;
  }
}

function namespaceOf(kubeConfig: KubeConfig): string {
  const context = kubeConfig.getContextObject(kubeConfig.getCurrentContext());
  return context?.namespace || 'default';
}

async function why(
  api: ClusterApi,
  options: Extract<PluginCommand, { command: 'why' }>,
  namespace: string,
): Promise<string> {
  const pod = await api.readPod(namespace, options.pod);
  if (!pod) throw new PluginError(`pod ${namespace}/${options.pod} not found`, 'ERR_POD_NOT_FOUND');
  const nodeName = pod.spec?.nodeName;
  if (!nodeName)
    throw new PluginError(
      `pod ${namespace}/${options.pod} is not scheduled on a node`,
      'ERR_NO_NODE',
    );
  const agent = await agentOnNode(api, options.agent, nodeName);
  const agentName = agent.metadata?.name ?? '';
  const path = agentProxyPath(
    options.agent,
    agent,
    `/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(options.pod)}`,
  );
  const answer = await api.get(path);
  if (answer.status === 404 && answer.body.includes('pod not known')) {
    return `Pod               ${namespace}/${options.pod} on node ${nodeName} (agent ${agentName})\nNo race or DNS drop counted for this pod, and the agent does not know it yet.\n`;
  }
  if (answer.status === 401) throw agentAuthError(path);
  if (answer.status !== 200) {
    throw new PluginError(
      `GET ${path}: HTTP ${answer.status}: ${answer.body.trim().slice(0, 300)}${answer.status === 403 ? ' (RBAC: get on pods/proxy is needed)' : ''}`,
      'ERR_PROXY',
    );
  }
  const story = parseStory(answer.body);
  if (!story)
    throw new PluginError(
      `the agent ${agentName} answered what is not a pod's story`,
      'ERR_AGENT_ANSWER',
    );
  return renderStory(story, pod, `${options.agent.namespace}/${agentName}`);
}

async function nodes(
  api: ClusterApi,
  options: Extract<PluginCommand, { command: 'nodes' }>,
): Promise<string> {
  const [nodeNames, agents] = await Promise.all([
    api.listNodeNames(),
    api.listPods(options.agent.namespace, options.agent.selector),
  ]);
  const agentByNode = new Map<string, V1Pod>();
  for (const agent of agents) {
    const node = agent.spec?.nodeName;
    const name = agent.metadata?.name;
    if (node && name && (!agentByNode.has(node) || agent.status?.phase === 'Running'))
      agentByNode.set(node, agent);
  }
  const rows = [['NODE', 'AGENT', 'INSERT_FAILURES', 'DNS_DROPS', 'CLASHES_RESOLVED']];
  for (const node of [...nodeNames].sort()) {
    const agentPod = agentByNode.get(node);
    const agent = agentPod?.metadata?.name;
    if (!agentPod || !agent) {
      rows.push([node, '<none>', '-', '-', '-']);
      continue;
    }
    const answer = await api
      .get(agentProxyPath(options.agent, agentPod, '/metrics'))
      .catch((error: unknown) => ({ status: 0, body: messageOf(error) }));
    if (answer.status !== 200) {
      // An agent with --metrics-auth kubernetes never sees the caller's token (agentAuthError).
      const why = answer.status === 401 ? ' (ERR_AGENT_AUTH: --metrics-auth)' : '';
      rows.push([node, agent, `error: HTTP ${answer.status}${why}`, '-', '-']);
      continue;
    }
    const totals = totalsOfExposition(answer.body);
    rows.push([
      node,
      agent,
      String(totals.insertFailures),
      String(totals.dnsDrops),
      String(totals.clashesResolved),
    ]);
  }
  return table(rows);
}

/** Columns padded to their widest cell, three spaces apart, as kubectl prints tables. */
function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const lines = rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('   ')
      .trimEnd(),
  );
  return `${lines.join('\n')}\n`;
}
