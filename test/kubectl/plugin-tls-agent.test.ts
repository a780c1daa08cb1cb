import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { clusterApi } from '../../src/kubectl/agent-proxy.js';
import { runPlugin, type PluginSystem } from '../../src/kubectl/run-plugin.js';
import { kubernetesReviewApi } from '../../src/sinks/metrics/kubernetes-review-api.js';
import { MetricsAuthorizer, type AuthDecision } from '../../src/sinks/metrics/metrics-auth.js';
import { MetricsServer } from '../../src/sinks/metrics/metrics-server.js';
import { selfSignedCertificate } from '../../src/sinks/metrics/self-signed-certificate.js';
import {
  startFakeApiServer,
  type FakeApiServer,
  type K8sObject,
} from '../support/fake-apiserver.js';
import { podFrom, stored } from '../support/k8s-fixtures.js';

const AGENT_NS = 'conntrack-race-observer';
const AGENT_POD = 'conntrack-race-observer-s3cur';

/** An agent pod as the secure-metrics overlay runs it: `--metrics-auth kubernetes`. */
function secureAgentPod(): K8sObject {
  const pod = podFrom('pod-dns-client-b', {
    name: AGENT_POD,
    namespace: AGENT_NS,
    nodeName: 'lab-node',
  });
  pod.metadata.uid = `uid-${AGENT_POD}`;
  pod.metadata.labels = {
    'app.kubernetes.io/name': 'conntrack-race-observer',
    'app.kubernetes.io/component': 'agent',
  };
  pod.metadata.ownerReferences = [];
  pod.spec.containers[0].args = ['--listen', '0.0.0.0:9474', '--metrics-auth', 'kubernetes'];
  return pod;
}

const system: PluginSystem = {
  loadKubeConfig: (file) => {
    const kubeConfig = new KubeConfig();
    if (file) kubeConfig.loadFromFile(file);
    return kubeConfig;
  },
  clusterApi,
};

describe('kubectl conntrack-race against an agent with --metrics-auth kubernetes', () => {
  let api: FakeApiServer;
  let agent: MetricsServer;
  let kubeconfig: string;
  const refused: Exclude<AuthDecision, { status: 200 }>[] = [];
  const client = stored('pod-dns-client-a');

  beforeAll(async () => {
    api = await startFakeApiServer({
      pods: [client, secureAgentPod()],
      nodes: [stored('node-lab-node')],
    });
    kubeconfig = await api.kubeConfigFile();
    // The agent's real TLS server and TokenReview/SubjectAccessReview authorizer.
    const authorizer = new MetricsAuthorizer({
      api: kubernetesReviewApi(api.kubeConfig()),
      nowMs: () => Date.now(),
    });
    agent = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry: new Registry(),
      readiness: () => ({ ready: true, detail: '' }),
      tls: selfSignedCertificate({ commonName: 'conntrack-race-observer', nowMs: Date.now() }),
      authorize: (header) => authorizer.authorize(header),
      onAuthRefused: (decision) => refused.push(decision),
      podStory: () => undefined,
    });
    await agent.start();
    api.proxyPod(AGENT_NS, AGENT_POD, 9474, `https://127.0.0.1:${agent.address.port}`);
  });
  afterAll(async () => {
    await agent.stop();
    await api.close();
  });

  async function plugin(argv: readonly string[]) {
    let stdout = '';
    let stderr = '';
    const code = await runPlugin(
      [...argv, '--kubeconfig', kubeconfig],
      { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) },
      system,
    );
    return { code, stdout, stderr };
  }

  it('reaches the agent over TLS through the pod proxy (https:POD:PORT), and says why it cannot read it', async () => {
    refused.length = 0;
    const { code, stdout, stderr } = await plugin(['why', client.metadata.name, '-n', 'default']);
    const proxied = api.requests().filter((r) => r.path.includes('/proxy/'));
    expect(proxied.at(-1)?.path).toBe(
      `/api/v1/namespaces/${AGENT_NS}/pods/https:${AGENT_POD}:9474/proxy/pods/default/${client.metadata.name}`,
    );
    // The agent itself refused: the TLS connection was made, the request arrived without a token.
    expect(refused).toEqual([{ status: 401, reason: 'no bearer token' }]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/pod proxy does not pass the caller's credentials on/);
    expect(stderr).toMatch(/kubectl port-forward .*\/pods\/default\/.*\(ERR_AGENT_AUTH\)$/m);
  });

  it('nodes: the https path too, the refusal shown in the row', async () => {
    const { code, stdout } = await plugin(['nodes']);
    expect(code).toBe(0);
    expect(api.requests().at(-1)?.path).toBe(
      `/api/v1/namespaces/${AGENT_NS}/pods/https:${AGENT_POD}:9474/proxy/metrics`,
    );
    expect(stdout).toMatch(new RegExp(`^lab-node\\s+${AGENT_POD}\\s+error: HTTP 401`, 'm'));
  });

  it('--agent-scheme http overrides what the pod spec says', async () => {
    const { code, stderr } = await plugin(['nodes', '--agent-scheme', 'http']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(api.requests().at(-1)?.path).toBe(
      `/api/v1/namespaces/${AGENT_NS}/pods/${AGENT_POD}:9474/proxy/metrics`,
    );
  });
});
