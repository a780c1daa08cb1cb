import {
  resolveKubernetesConnection,
  type KubernetesConnection,
} from '../../src/attribute/kubernetes/connection.js';
import type { Lab } from '../lab/index.js';
import { startAgentUnderTest, waitUntilReady, type AgentUnderTest } from './agent-harness.js';
import type { FakeApiServer } from './fake-apiserver.js';
import { LAB_NODE_NAME } from './lab-cluster.js';

/** The agent in process on the lab's node, its Kubernetes API the fake; ready when returned. */
export async function startAgentOn(
  lab: Lab,
  fake: FakeApiServer,
  extraArgs: readonly string[] = [],
): Promise<AgentUnderTest> {
  const connection = resolveKubernetesConnection({ kubeconfigFlag: await fake.kubeConfigFile() });
  if (!connection || connection instanceof Error) throw new Error(`kubeconfig: ${connection}`);
  const agent = await startAgentUnderTest(
    [
      '--probe-mode',
      'tracepoint',
      '--netns-pid',
      String(lab.node.pid),
      '--node-name',
      LAB_NODE_NAME,
      '--poll-interval',
      '0.5',
      ...extraArgs,
    ],
    connection satisfies KubernetesConnection,
  );
  await waitUntilReady(agent.baseUrl);
  return agent;
}
