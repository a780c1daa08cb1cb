import { readdirSync, readFileSync } from 'node:fs';
import { readRepoFile, repoPath } from './support/repo-paths.js';
import { dig, isObject, parseDocument, parseDocuments, type YamlObject } from './support/yaml.js';

// No helm binary exists on these machines: the chart is checked for consistency, not rendered.
const CHART = ['deploy', 'helm', 'conntrack-race-observer'];
const chart = parseDocument(readRepoFile(...CHART, 'Chart.yaml'));
const values = parseDocument(readRepoFile(...CHART, 'values.yaml'));
const templateNames = readdirSync(repoPath(...CHART, 'templates')).sort();
const templates = new Map(
  templateNames.map((name) => [name, readRepoFile(...CHART, 'templates', name)] as const),
);
const allTemplates = [...templates.values()].join('\n');
const packageJson = JSON.parse(readRepoFile('package.json')) as { version: string };

/** Every `.Values.a.b` path the templates read (also through `$.Values`). */
function valuePaths(text: string): string[] {
  return [
    ...new Set(
      [...text.matchAll(/\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)].map((m) => m[1]!.slice(1)),
    ),
  ];
}

function baseObject(file: string): YamlObject {
  return parseDocument(readRepoFile('deploy', 'base', file));
}

/** The text of a template from a line starting with `key:` up to the next `---` or `{{- end`. */
function block(template: string, key: string): string {
  const start = template.indexOf(`\n${key}:`);
  expect(start).toBeGreaterThanOrEqual(0);
  const rest = template.slice(start + 1);
  const end = rest.search(/\n(---|\{\{-? end)/);
  return end < 0 ? rest : rest.slice(0, end);
}

describe('Helm chart (consistency checks; no helm binary renders it here)', () => {
  it('is named after its directory and versioned with the agent', () => {
    expect(chart).toMatchObject({ apiVersion: 'v2', name: CHART.at(-1), type: 'application' });
    expect(chart['appVersion']).toBe(packageJson.version);
    expect(chart['version']).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('has the templates of every object the kustomize base and components ship', () => {
    expect(templateNames).toEqual([
      '_helpers.tpl',
      'clusterrole.yaml',
      'daemonset.yaml',
      'grafana-dashboard.yaml',
      'podmonitor.yaml',
      'prometheusrule.yaml',
      'service.yaml',
      'serviceaccount.yaml',
      'servicemonitor.yaml',
    ]);
  });

  it('declares in values.yaml every value a template reads', () => {
    const paths = valuePaths(allTemplates);
    expect(paths.length).toBeGreaterThan(20);
    const missing = paths.filter((path) => dig(values, ...path.split('.')) === undefined);
    expect(missing).toEqual([]);
  });

  it('reads every top-level value somewhere (no dead settings)', () => {
    const read = new Set(valuePaths(allTemplates).map((path) => path.split('.')[0]));
    expect(Object.keys(values).filter((key) => !read.has(key))).toEqual([]);
  });

  it('switches each monitoring object on its own value, off by default', () => {
    for (const [template, switchPath] of [
      ['podmonitor.yaml', 'monitoring.podMonitor.enabled'],
      ['servicemonitor.yaml', 'monitoring.serviceMonitor.enabled'],
      ['prometheusrule.yaml', 'monitoring.prometheusRule.enabled'],
      ['grafana-dashboard.yaml', 'monitoring.grafanaDashboard.enabled'],
    ] as const) {
      expect(templates.get(template)!.trimStart()).toMatch(
        new RegExp(`^\\{\\{- if \\.Values\\.${switchPath.replaceAll('.', '\\.')} \\}\\}`),
      );
      expect(dig(values, ...switchPath.split('.'))).toBe(false);
    }
  });

  it.each(templateNames)('%s balances its template actions and blocks', (name) => {
    const text = templates.get(name)!;
    const actions = [...text.matchAll(/\{\{-?\s*(.*?)\s*-?\}\}/gs)].map((m) => m[1]!);
    expect(text.split('{{').length).toBe(text.split('}}').length);
    const opened = actions.filter((action) => /^(if|with|range|define)\b/.test(action)).length;
    const closed = actions.filter((action) => action === 'end').length;
    expect(closed).toBe(opened);
  });

  it('grants the same RBAC rules as the kustomize base', () => {
    const rules = parseDocument(block(templates.get('clusterrole.yaml')!, 'rules'))['rules'];
    expect(rules).toEqual(baseObject('clusterrole.yaml')['rules']);
  });

  it('runs the DaemonSet like the kustomize base', () => {
    const template = templates.get('daemonset.yaml')!;
    for (const line of [
      'hostNetwork: true',
      'hostPID: true',
      'dnsPolicy: ClusterFirstWithHostNet',
      'fieldPath: spec.nodeName',
      'path: /healthz',
      'path: /readyz',
      'privileged: true',
      'mountPath: /sys/kernel/tracing',
      'mountPath: /sys/kernel/debug',
      'mountPath: /sys/fs/bpf',
      'mountPath: /host/proc',
      '- --probes-dir',
    ]) {
      expect(template).toContain(line);
    }
    const base = baseObject('daemonset.yaml');
    const container = dig(base, 'spec', 'template', 'spec', 'containers', 0);
    expect(values['resources']).toEqual(dig(container, 'resources'));
    expect(values['tolerations']).toEqual(dig(base, 'spec', 'template', 'spec', 'tolerations'));
    expect(values['priorityClassName']).toBe(
      dig(base, 'spec', 'template', 'spec', 'priorityClassName'),
    );
    expect(dig(values, 'updateStrategy', 'maxUnavailable')).toBe(
      dig(base, 'spec', 'updateStrategy', 'rollingUpdate', 'maxUnavailable'),
    );
    const args = dig(container, 'args') as string[];
    expect(values['probeMode']).toBe(args[args.indexOf('--probe-mode') + 1]);
    expect(values['port']).toBe(9474);
  });

  it('locks /metrics down only when metricsAuth.mode is kubernetes, off by default', () => {
    expect(dig(values, 'metricsAuth', 'mode')).toBe('none');
    expect(dig(values, 'metricsAuth', 'tlsSecretName')).toBe('');
    const daemonSet = templates.get('daemonset.yaml')!;
    const switched = '{{- if eq .Values.metricsAuth.mode "kubernetes" }}';
    const argsBlock = block(daemonSet, '          args').split(switched)[1] ?? '';
    expect(argsBlock).toContain('- --metrics-auth=kubernetes');
    expect(argsBlock).toContain('- --tls-cert-file=/etc/conntrack-race-observer/tls/tls.crt');
    // Both probes switch to HTTPS with the server.
    expect(daemonSet.split(`${switched}\n              scheme: HTTPS`)).toHaveLength(3);
    expect(daemonSet).toContain('secretName: {{ .Values.metricsAuth.tlsSecretName }}');
    for (const monitor of ['servicemonitor.yaml', 'podmonitor.yaml']) {
      const text = templates.get(monitor)!;
      const secured = text.split(switched)[1] ?? '';
      expect(secured).toContain('scheme: https');
      expect(secured).toMatch(
        /\{\{- if not \.Values\.metricsAuth\.tlsSecretName \}\}\s+# .*\n\s+tlsConfig:\n\s+insecureSkipVerify: true/,
      );
    }
    expect(templates.get('servicemonitor.yaml')).toContain(
      'bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token',
    );
    expect(templates.get('podmonitor.yaml')).toMatch(/authorization:\n\s+type: Bearer/);
  });

  it('tracks DNS queries only when dnsQueryTracking is true, off by default, as the kustomize component', () => {
    expect(values['dnsQueryTracking']).toBe(false);
    const argsBlock = block(templates.get('daemonset.yaml')!, '          args');
    const switched = argsBlock.split('{{- if .Values.dnsQueryTracking }}');
    expect(switched).toHaveLength(2);
    const componentArg = readRepoFile(
      'deploy',
      'components',
      'dns-query-tracking',
      'kustomization.yaml',
    )
      .split('\n')
      .find((line) => line.includes('value: --dns-query-tracking'))
      ?.trim()
      .replace('value: ', '');
    expect(componentArg).toBe('--dns-query-tracking=on');
    expect(switched[0]).not.toContain('--dns-query-tracking');
    expect(switched[1]!.split('{{- end }}')[0]!.trim()).toBe(`- ${componentArg}`);
  });

  it('grants the capability-only variant the same capabilities as the kustomize component', () => {
    const component = parseDocuments(
      readRepoFile('deploy', 'components', 'capabilities', 'daemonset-capabilities.yaml'),
    )[0];
    const added = dig(
      component,
      'spec',
      'template',
      'spec',
      'containers',
      0,
      'securityContext',
      'capabilities',
      'add',
    );
    const match = /add: (\[.*\])/.exec(templates.get('daemonset.yaml')!);
    expect(match).not.toBeNull();
    expect(JSON.parse(match![1]!)).toEqual(added);
  });

  it('ships the rules file and the dashboard byte for byte, inserted unrendered', () => {
    expect(readRepoFile(...CHART, 'files', 'rules.yaml')).toBe(
      readRepoFile('deploy', 'prometheus', 'rules.yaml'),
    );
    expect(readRepoFile(...CHART, 'files', 'conntrack-race-observer.json')).toBe(
      readRepoFile('deploy', 'grafana', 'conntrack-race-observer.json'),
    );
    expect(templates.get('prometheusrule.yaml')).toContain(
      '{{ .Files.Get "files/rules.yaml" | indent 2 }}',
    );
    expect(templates.get('grafana-dashboard.yaml')).toContain(
      '{{ .Files.Get "files/conntrack-race-observer.json" | indent 4 }}',
    );
  });

  it('parses values.yaml into plain settings', () => {
    expect(isObject(values['image'])).toBe(true);
    expect(readFileSync(repoPath(...CHART, 'values.yaml'), 'utf8')).not.toContain('\t');
  });
});
