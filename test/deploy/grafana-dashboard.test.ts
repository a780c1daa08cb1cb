import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knownMetrics, metricNamesIn } from './support/metric-names.js';
import { repoPath } from './support/repo-paths.js';
import { runCli, type CliResult } from './support/run-cli.js';

interface Target {
  expr: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query: string };
}
interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

const dashboard = JSON.parse(
  readFileSync(repoPath('deploy', 'grafana', 'conntrack-race-observer.json'), 'utf8'),
) as Dashboard;

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

const queryPanels = allPanels(dashboard.panels).filter((panel) => panel.type !== 'row');
const panelQueries = queryPanels.flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })),
);

/** The series selectors of the `label_values(selector, label)` variable queries. */
const variableSelectors = dashboard.templating.list
  .filter((variable) => variable.type === 'query')
  .map((variable) => {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    const match = /^label_values\((.*),\s*\w+\)$/.exec(query ?? '');
    if (match === null) throw new Error(`variable ${variable.name}: not label_values(…): ${query}`);
    return { panel: `variable ${variable.name}`, expr: match[1]! };
  });

/** Grafana's variables replaced by values Prometheus accepts, as Grafana does before sending. */
function interpolate(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__range', '6h')
    .replace(/\$(node|namespace|pod)\b/g, '.*');
}

/** promtool has no single-expression parser; a recording rule per query gives it one. */
function checkWithPromtool(exprs: readonly string[]): CliResult {
  const dir = mkdtempSync(join(tmpdir(), 'dashboard-'));
  try {
    const rules = [
      'groups:',
      '  - name: dashboard',
      '    rules:',
      ...exprs.flatMap((expr, index) => [
        `      - record: dashboard_query_${index}`,
        `        expr: ${JSON.stringify(interpolate(expr))}`,
      ]),
    ].join('\n');
    writeFileSync(join(dir, 'queries.yaml'), `${rules}\n`);
    return runCli('promtool', ['check', 'rules', join(dir, 'queries.yaml')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('Grafana dashboard', () => {
  it('has data source, node, namespace and pod variables', () => {
    expect(dashboard.templating.list.map((variable) => variable.name)).toEqual([
      'datasource',
      'node',
      'namespace',
      'pod',
    ]);
    expect(dashboard.templating.list[0]).toMatchObject({ type: 'datasource', query: 'prometheus' });
  });

  it('has a node view, a pod view, a DNS queries and an agent health row', () => {
    const rows = dashboard.panels.filter((panel) => panel.type === 'row').map((row) => row.title);
    expect(rows).toEqual(['Node view', 'Pod view', 'DNS queries', 'Agent health']);
  });

  it('queries through the data source variable in every panel and target', () => {
    for (const panel of queryPanels) {
      expect({ panel: panel.title, uid: panel.datasource?.uid }).toEqual({
        panel: panel.title,
        uid: '${datasource}',
      });
      for (const target of panel.targets ?? [])
        expect(target.datasource?.uid).toBe('${datasource}');
    }
  });

  it('gives every panel a unique id', () => {
    const ids = allPanels(dashboard.panels).map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('filters every panel query by the node variable, and the pod view by namespace and pod', () => {
    for (const { panel, expr } of panelQueries) {
      expect({ panel, expr, byNode: expr.includes('node=~"$node"') }).toMatchObject({
        byNode: true,
      });
    }
    const podView = panelQueries.filter(({ panel }) => /per pod|affected pods/i.test(panel));
    expect(podView.length).toBeGreaterThan(0);
    for (const { expr } of podView) {
      expect(expr).toContain('namespace=~"$namespace"');
      expect(expr).toContain('pod=~"$pod"');
    }
  });

  it('parses every query and variable selector as PromQL (promtool)', () => {
    const exprs = [...panelQueries, ...variableSelectors].map(({ expr }) => expr);
    expect(exprs.length).toBeGreaterThan(20);
    const result = checkWithPromtool(exprs);
    expect(result.stdout + result.stderr).toContain(`SUCCESS: ${exprs.length} rules found`);
    expect(result.status).toBe(0);
  });

  it('rejects a query that is not PromQL (the parse check can fail)', () => {
    const result = checkWithPromtool(['sum by (node (rate(conntrack_observer_probe_up[1m]))']);
    expect(result.status).not.toBe(0);
  });

  it('charts unanswered DNS queries per pod and cause, and the p50 and p99 query duration', () => {
    const exprs = panelQueries.map(({ expr }) => expr);
    expect(exprs).toContainEqual(
      expect.stringMatching(
        /^sum by \(namespace, pod, cause\) \(rate\(conntrack_observer_dns_unanswered_queries_total\{/,
      ),
    );
    for (const quantile of ['0.5', '0.99'])
      expect(exprs).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^histogram_quantile\\(${quantile}, sum by \\(namespace, pod, le\\) \\(rate\\(conntrack_observer_dns_query_duration_seconds_bucket\\{`,
          ),
        ),
      );
  });

  it('uses only metrics the agent exports', () => {
    const known = knownMetrics();
    const used = new Set(
      [...panelQueries, ...variableSelectors].flatMap(({ expr }) => [...metricNamesIn(expr)]),
    );
    const unknown = [...used].filter((metric) => !known.names.has(metric));
    expect({ source: known.source, unknown }).toEqual({ source: known.source, unknown: [] });
  });

  it('charts the races, DNS drops, unanswered DNS queries, table usage, kernel counters and agent health', () => {
    const all = panelQueries.map(({ expr }) => expr).join('\n');
    for (const metric of [
      'conntrack_observer_insert_failures_total',
      'conntrack_observer_dns_drops_total',
      'conntrack_observer_kernel_conntrack_entries',
      'conntrack_observer_kernel_conntrack_limit',
      'conntrack_observer_kernel_conntrack_clash_resolve_total',
      'conntrack_observer_unexplained_insert_failures_total',
      'conntrack_observer_probe_up',
      'conntrack_observer_probe_restarts_total',
      'conntrack_observer_probe_events_lost_total',
      'conntrack_observer_probe_lines_rejected_total',
      'conntrack_observer_process_cpu_seconds_total',
      'conntrack_observer_process_resident_memory_bytes',
      'conntrack_observer_dns_unanswered_queries_total',
      'conntrack_observer_dns_queries_total',
      'conntrack_observer_dns_query_duration_seconds_bucket',
      'conntrack_observer_dns_queries_untracked_total',
    ]) {
      expect(all).toContain(metric);
    }
  });
});
