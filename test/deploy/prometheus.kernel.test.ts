import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import type { KubernetesConnection } from '../../src/attribute/kubernetes/connection.js';
import { createLab, startSnatRaceLoop, type Lab, type SnatRaceLoop } from '../lab/index.js';
import {
  startAgentUnderTest,
  waitFor,
  waitUntilReady,
  type AgentUnderTest,
} from '../support/agent-harness.js';
import { startFakeApiServer, type FakeApiServer } from '../support/fake-apiserver.js';
import { dashboardQueries, interpolateGrafanaVariables } from '../support/grafana-queries.js';
import { podFrom, stored } from '../support/k8s-fixtures.js';
import {
  startPrometheusServer,
  type PrometheusAlert,
  type PrometheusServer,
} from '../support/prometheus-server.js';
import { dig, isObject, parseDocument, type YamlObject } from './support/yaml.js';
import { readRepoFile, repoPath } from './support/repo-paths.js';

interface ShippedScrapeTarget {
  readonly node: string;
  readonly config: YamlObject;
}

/** The shipped local configuration, with its `node` label, pointed at `target`. */
function localConfigScraping(target: string): ShippedScrapeTarget {
  const config = parseDocument(readRepoFile('deploy', 'prometheus', 'prometheus-local.yml'));
  const scrapeConfigs = dig(config, 'scrape_configs');
  if (!Array.isArray(scrapeConfigs) || scrapeConfigs.length !== 1)
    throw new Error('prometheus-local.yml: expected one scrape configuration');
  const staticConfigs = dig(scrapeConfigs[0], 'static_configs');
  if (!Array.isArray(staticConfigs) || staticConfigs.length !== 1 || !isObject(staticConfigs[0]))
    throw new Error('prometheus-local.yml: expected one static configuration');
  const node = dig(staticConfigs[0], 'labels', 'node');
  if (typeof node !== 'string') throw new Error('prometheus-local.yml: no node label');
  const rules = dig(config, 'rule_files');
  if (!Array.isArray(rules)) throw new Error('prometheus-local.yml: no rule_files');
  return {
    node,
    config: {
      ...config,
      global: {
        ...(dig(config, 'global') as YamlObject),
        scrape_interval: '1s',
        evaluation_interval: '1s',
      },
      rule_files: rules.map((file) => repoPath('deploy', 'prometheus', String(file))),
      scrape_configs: [
        {
          ...(scrapeConfigs[0] as YamlObject),
          static_configs: [{ ...staticConfigs[0], targets: [target] }],
        },
      ],
    },
  };
}

const dashboard = JSON.parse(
  readFileSync(repoPath('deploy', 'grafana', 'conntrack-race-observer.json'), 'utf8'),
) as Parameters<typeof dashboardQueries>[0];

// Panels that must show the SNAT race the lab runs, the DNS queries it drops, the node's
// table and the agent itself.
const PANELS_WITH_DATA = [
  'Conntrack insertion failures by race kind',
  'DNS drops by reason and direction',
  'Conntrack table usage',
  'Conntrack table entries and limit',
  'Kernel conntrack counters',
  'Insertion failures per pod',
  'DNS drops per pod',
  'Most affected pods over the time range',
  'Kubernetes Events written',
  'Probes attached',
  'Probe mode',
  'Agent CPU',
  'Agent resident memory',
  'variable node',
  'variable namespace',
  'variable pod',
];

// A real Prometheus scrapes the real agent every second while the lab's SNAT race drops
// packets in a node namespace: the shipped alert rules and the dashboard are evaluated on
// what the kernel really did, not on hand-written series.
describe('a real Prometheus scraping the agent during a SNAT race', () => {
  let lab: Lab;
  let fakeApi: FakeApiServer;
  let agent: AgentUnderTest;
  let prometheus: PrometheusServer;
  let race: SnatRaceLoop | undefined;
  let node: string;
  let podNames: string[];

  beforeAll(async () => {
    lab = await createLab();
    const [podA, podB] = lab.pods;
    const pods = [
      podFrom('pod-dns-client-a', { ip: podA!.ip }),
      podFrom('pod-dns-client-b', { ip: podB!.ip }),
    ];
    podNames = pods.map((pod) => String(pod.metadata.name));
    fakeApi = await startFakeApiServer({ pods, nodes: [stored('node-lab-node')] });
    const kubernetes: KubernetesConnection = {
      kubeConfig: fakeApi.kubeConfig(),
      source: 'flag',
      origin: 'fake API server',
      server: fakeApi.url,
    };
    const placeholder = localConfigScraping('127.0.0.1:1');
    node = placeholder.node;
    agent = await startAgentUnderTest(
      [
        '--probe-mode',
        'tracepoint',
        '--netns-pid',
        String(lab.node.pid),
        '--poll-interval',
        '1',
        '--node-name',
        node,
      ],
      kubernetes,
    );
    await waitUntilReady(agent.baseUrl);
    const { config } = localConfigScraping(new URL(agent.baseUrl).host);
    prometheus = await startPrometheusServer({ config: yaml.dump(config) });
    race = await startSnatRaceLoop(lab, { intervalMs: 20 });
  });

  afterAll(async () => {
    await race?.stop();
    await prometheus?.stop();
    await agent?.stop();
    await fakeApi?.close();
    await lab?.destroy();
  });

  it('scrapes the agent', async () => {
    await waitFor('the agent target to be up', async () =>
      (await prometheus.targetHealth()).includes('up') ? true : undefined,
    );
    expect(await prometheus.targetHealth()).toEqual(['up']);
  });

  it('raises the insertion-failure alerts for the racing pods and the node on real data', async () => {
    const active = (alerts: PrometheusAlert[], name: string) =>
      alerts.filter(
        (alert) =>
          alert.labels.alertname === name &&
          (alert.state === 'pending' || alert.state === 'firing'),
      );
    const alerts = await waitFor(
      'ConntrackInsertFailuresOnPod and ConntrackInsertFailuresOnNode',
      async () => {
        const all = await prometheus.alerts();
        return active(all, 'ConntrackInsertFailuresOnPod').length > 0 &&
          active(all, 'ConntrackInsertFailuresOnNode').length > 0
          ? all
          : undefined;
      },
      60_000,
    );

    const onPods = active(alerts, 'ConntrackInsertFailuresOnPod');
    for (const alert of onPods) {
      expect(alert.labels).toMatchObject({ namespace: 'default', race: 'snat' });
      expect(podNames).toContain(alert.labels.pod);
      expect(Number(alert.value)).toBeGreaterThan(0);
      expect(alert.annotations.runbook_url).toBe('docs/runbooks/ConntrackInsertFailuresOnPod.md');
    }
    const onNode = active(alerts, 'ConntrackInsertFailuresOnNode');
    expect(onNode.map((alert) => alert.labels.node)).toEqual([node]);
    expect(onNode[0]!.annotations.summary).toBe(`Conntrack insertion failures on node ${node}`);
  });

  it('answers every dashboard query, with data in the race, DNS, conntrack and agent panels', async () => {
    const queries = dashboardQueries(dashboard).map(({ source, expr }) => ({
      source,
      expr: interpolateGrafanaVariables(expr, {
        node,
        namespace: '.*',
        pod: '.*',
      }),
    }));
    expect(queries.length).toBeGreaterThan(20);

    // The 1m windows need a few scrapes of the race before every rate has two samples.
    const answers = await waitFor(
      'every key dashboard panel to show data',
      async () => {
        const answered = await Promise.all(
          queries.map(async (query) => ({ ...query, answer: await prometheus.query(query.expr) })),
        );
        const withData = new Set(
          answered
            .filter(({ answer }) => answer.ok && answer.samples.length > 0)
            .map(({ source }) => source),
        );
        const empty = PANELS_WITH_DATA.filter((panel) => !withData.has(panel));
        // Thrown, not returned: waitFor names the last missing panels when it gives up.
        if (empty.length > 0) throw new Error(`no data yet in: ${empty.join(', ')}`);
        return answered;
      },
      30_000,
    );

    const failed = answers.filter(({ answer }) => !answer.ok);
    expect(failed).toEqual([]);
    const titles = new Set(queries.map(({ source }) => source));
    for (const panel of PANELS_WITH_DATA) expect(titles).toContain(panel);

    const valueOf = (source: string, where: Record<string, string>): number =>
      answers
        .filter((a) => a.source === source && a.answer.ok)
        .flatMap(({ answer }) => (answer.ok ? answer.samples : []))
        .filter((s) => Object.entries(where).every(([k, v]) => s.metric[k] === v))
        .reduce((sum, s) => sum + Number(s.value[1]), 0);
    expect(valueOf('Conntrack insertion failures by race kind', { race: 'snat' })).toBeGreaterThan(
      0,
    );
    expect(valueOf('Insertion failures per pod', { namespace: 'default' })).toBeGreaterThan(0);
    // The probes see every namespace of the machine; the kernel counters are this lab's node alone.
    const kernelInsertFailed = answers.find(({ expr }) =>
      expr.includes('conntrack_observer_kernel_conntrack_insert_failed_total'),
    );
    expect(kernelInsertFailed?.answer.ok && kernelInsertFailed.answer.samples).toEqual([
      expect.objectContaining({ metric: { node } }),
    ]);
    expect(
      kernelInsertFailed?.answer.ok ? Number(kernelInsertFailed.answer.samples[0]?.value[1]) : 0,
    ).toBeGreaterThan(0);
    expect(valueOf('Probe mode', { mode: 'tracepoint', node })).toBe(1);
  });
});
