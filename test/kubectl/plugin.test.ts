import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { KubeConfig } from '@kubernetes/client-node';
import { execa } from 'execa';
import { Registry } from 'prom-client';
import { clusterApi } from '../../src/kubectl/agent-proxy.js';
import { runPlugin, type PluginSystem } from '../../src/kubectl/run-plugin.js';
import { EventMetrics } from '../../src/sinks/metrics/event-metrics.js';
import { MetricsServer } from '../../src/sinks/metrics/metrics-server.js';
import { podStoryLookup } from '../../src/sinks/metrics/pod-story.js';
import { attributed, dnsDrop, insertFailure } from '../support/events.js';
import {
  startFakeApiServer,
  type FakeApiServer,
  type K8sObject,
} from '../support/fake-apiserver.js';
import { fixture, podFrom, stored } from '../support/k8s-fixtures.js';
import { eventDiagnosis } from '../support/pod-diagnoses.js';

const AGENT_NS = 'conntrack-race-observer';
const AGENT_POD = 'conntrack-race-observer-x7k2p';

/** The client pod of the fixtures, its spec asking for ndots:2 through dnsConfig. */
function clientPod(): K8sObject {
  const pod = stored('pod-dns-client-a');
  pod.spec.dnsConfig = { options: [{ name: 'ndots', value: '2' }] };
  return pod;
}

function agentPod(name: string, nodeName: string): K8sObject {
  const pod = podFrom('pod-dns-client-b', { name, namespace: AGENT_NS, nodeName });
  pod.metadata.uid = `uid-${name}`;
  pod.metadata.labels = {
    'app.kubernetes.io/name': 'conntrack-race-observer',
    'app.kubernetes.io/component': 'agent',
  };
  pod.metadata.ownerReferences = [];
  return pod;
}

const system: PluginSystem = {
  loadKubeConfig: (file, context) => {
    const kubeConfig = new KubeConfig();
    if (file) kubeConfig.loadFromFile(file);
    if (context) kubeConfig.setCurrentContext(context);
    return kubeConfig;
  },
  clusterApi,
};

describe('kubectl conntrack-race', () => {
  let api: FakeApiServer;
  let agent: MetricsServer;
  let kubeconfig: string;
  let scratch: string;
  const client = clientPod();

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'plugin-'));
    const otherNode = fixture('node-lab-node');
    otherNode.metadata.name = 'quiet-node';
    delete otherNode.metadata.resourceVersion;
    api = await startFakeApiServer({
      pods: [client, agentPod(AGENT_POD, 'lab-node')],
      nodes: [stored('node-lab-node'), otherNode],
    });
    kubeconfig = await api.kubeConfigFile();

    // The agent on lab-node: its real metrics server, with counts and a diagnosis of the pod.
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const ref = {
      namespace: client.metadata.namespace as string,
      name: client.metadata.name as string,
      uid: client.metadata.uid as string,
      hostNetwork: false,
    };
    metrics.record(attributed(insertFailure({ race: 'snat' }), ref), true);
    metrics.record(attributed(insertFailure({ race: 'snat' }), ref), true);
    metrics.record(attributed(dnsDrop({ count: 4 }), ref), true);
    agent = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      readiness: () => ({ ready: true, detail: '' }),
      podStory: podStoryLookup({
        nodeName: 'lab-node',
        counts: (namespace, name) => metrics.podCounts(namespace, name),
        uidOf: (namespace, name) =>
          namespace === ref.namespace && name === ref.name ? ref.uid : undefined,
        diagnosisOf: (uid) => (uid === ref.uid ? eventDiagnosis() : undefined),
      }),
    });
    await agent.start();
    api.proxyPod(AGENT_NS, AGENT_POD, 9474, `http://127.0.0.1:${agent.address.port}`);
  });
  afterAll(async () => {
    await agent.stop();
    await api.close();
    rmSync(scratch, { recursive: true, force: true });
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

  it("why POD: asks the pod's agent through the API server's pod proxy and prints its story", async () => {
    const { code, stdout, stderr } = await plugin(['why', client.metadata.name, '-n', 'default']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /on node lab-node \(agent conntrack-race-observer\/conntrack-race-observer-x7k2p\)/,
    );
    expect(stdout).toMatch(/Insert failures {3}snat 2/);
    expect(stdout).toMatch(/DNS drops {9}NETFILTER_DROP 4/);
    expect(stdout).toMatch(/Diagnosis {9}cart: glibc 2\.36/);
    expect(stdout).toMatch(/single-request-reopen for cart \(glibc\)/);
    const proxied = api.requests().find((r) => r.path.includes('/proxy/'));
    expect(proxied?.path).toBe(
      `/api/v1/namespaces/${AGENT_NS}/pods/${AGENT_POD}:9474/proxy/pods/default/${client.metadata.name}`,
    );
    const agentList = api.requests().find((r) => r.path === `/api/v1/namespaces/${AGENT_NS}/pods`);
    expect(agentList?.query.get('fieldSelector')).toBe('spec.nodeName=lab-node');
  });

  it("prints the remedy as a patch of the owning Deployment's template that kubectl applies", async () => {
    const { stdout } = await plugin(['why', client.metadata.name, '-n', 'default']);
    const patch = stdout
      .split(/^---$/m)
      .slice(1)
      .find((doc) => doc.includes('single-request-reopen'));
    expect(patch).toMatch(
      /^# kubectl patch deployment dns-client -n default --type strategic --patch-file single-request-reopen\.yaml$/m,
    );
    // The Deployment the fixture pod came from, its template the pod's spec.
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'dns-client', namespace: 'default' },
      spec: {
        selector: { matchLabels: { app: 'dns-client' } },
        template: { metadata: { labels: { app: 'dns-client' } }, spec: client.spec },
      },
    };
    writeFileSync(join(scratch, 'deployment.json'), JSON.stringify(deployment));
    writeFileSync(join(scratch, 'patch.yaml'), patch!);
    const patched = await execa(
      'kubectl',
      [
        'patch',
        '--local',
        '-f',
        join(scratch, 'deployment.json'),
        '--type',
        'strategic',
        '--patch-file',
        join(scratch, 'patch.yaml'),
        '-o',
        'json',
      ],
      { env: { KUBECONFIG: '/dev/null' }, timeout: 30_000 },
    );
    const result = JSON.parse(patched.stdout) as K8sObject;
    expect(result.spec.template.spec.dnsConfig).toEqual({
      options: [{ name: 'ndots', value: '2' }, { name: 'single-request-reopen' }],
    });
    expect(result.spec.template.spec.containers[0].name).toBe('client');
  }, 40_000);

  it("nodes: each node's agent totals from its /metrics, a node without an agent shown so", async () => {
    const { code, stdout } = await plugin(['nodes']);
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NODE\s+AGENT\s+INSERT_FAILURES\s+DNS_DROPS\s+CLASHES_RESOLVED$/);
    expect(lines[1]).toMatch(/^lab-node\s+conntrack-race-observer-x7k2p\s+2\s+4\s+0$/);
    expect(lines[2]).toMatch(/^quiet-node\s+<none>\s+-\s+-\s+-$/);
  });

  it.each<[string, readonly string[], number, RegExp]>([
    [
      'a pod that does not exist',
      ['why', 'nobody', '-n', 'default'],
      1,
      /pod default\/nobody not found \(ERR_POD_NOT_FOUND\)/,
    ],
    ['an unknown command', ['because'], 2, /unknown command "because"/],
    ['why without a pod', ['why'], 2, /missing required argument 'pod'/],
    ['a bad port', ['nodes', '--agent-port', 'x'], 2, /expected a port/],
  ])('answers %s with a message and its exit code', async (_, argv, exit, message) => {
    const { code, stderr } = await plugin(argv);
    expect(code).toBe(exit);
    expect(stderr).toMatch(message);
  });

  it('says so when the agent has nothing on a pod of its node', async () => {
    const quiet = podFrom('pod-dns-client-a', { name: 'quiet', uid: 'uid-quiet' });
    api.apply('pods', quiet);
    const { code, stdout } = await plugin(['why', 'quiet']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/No race or DNS drop counted for this pod/);
  });

  it('names the missing agent when the pod runs on a node without one', async () => {
    api.apply(
      'pods',
      podFrom('pod-dns-client-a', { name: 'elsewhere', uid: 'uid-e', nodeName: 'quiet-node' }),
    );
    const { code, stderr } = await plugin(['why', 'elsewhere']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/no agent on node quiet-node .*\(ERR_NO_AGENT\)/);
  });

  it('runs as a process with KUBECONFIG from the environment, as kubectl starts it', async () => {
    const run = await execa('npx', ['tsx', 'src/kubectl/plugin-main.ts', 'nodes'], {
      env: { KUBECONFIG: kubeconfig },
      reject: false,
      timeout: 30_000,
    });
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/^lab-node\s+conntrack-race-observer-x7k2p\s+2\s+4\s+0$/m);
  }, 40_000);
});
