#!/usr/bin/env node
// Writes the files of deploy/ that are copies of a single source, or checks them (--check):
// the alert rules live in deploy/prometheus/rules.yaml and the dashboard in
// deploy/grafana/conntrack-race-observer.json; the PrometheusRule component and the Helm chart
// carry them verbatim, because neither kustomize nor Helm may read files outside their own
// directory.
//
//   node deploy/scripts/sync-generated.mjs            rewrite the generated files
//   node deploy/scripts/sync-generated.mjs --check    exit 1 and name each file that drifted
//   --root DIR                                        repository root (default: this checkout)
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const RULES = 'deploy/prometheus/rules.yaml';
const DASHBOARD = 'deploy/grafana/conntrack-race-observer.json';
const CHART = 'deploy/helm/conntrack-race-observer';

const PROMETHEUS_RULE_HEADER = `# Generated from ${RULES} by deploy/scripts/sync-generated.mjs: do not edit.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: conntrack-race-observer
  namespace: conntrack-race-observer
  labels:
    app.kubernetes.io/name: conntrack-race-observer
    app.kubernetes.io/part-of: conntrack-race-observer
spec:
`;

/** The rules file nested under `spec:`: a PrometheusRule's spec is a rules file. */
export function prometheusRuleFrom(rulesText) {
  const body = rulesText
    .split('\n')
    .map((line) => (line === '' ? line : `  ${line}`))
    .join('\n');
  return PROMETHEUS_RULE_HEADER + body;
}

/** Each generated file: its path and the text it must hold, from the sources under root. */
export function generatedFiles(root) {
  const rules = readFileSync(join(root, RULES), 'utf8');
  const dashboard = readFileSync(join(root, DASHBOARD), 'utf8');
  return [
    {
      path: 'deploy/components/prometheusrule/prometheusrule.yaml',
      text: prometheusRuleFrom(rules),
    },
    { path: `${CHART}/files/rules.yaml`, text: rules },
    { path: `${CHART}/files/conntrack-race-observer.json`, text: dashboard },
  ];
}

function readOrEmpty(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function main(argv) {
  const check = argv.includes('--check');
  const rootIndex = argv.indexOf('--root');
  const root =
    rootIndex >= 0 && argv[rootIndex + 1] !== undefined
      ? resolve(argv[rootIndex + 1])
      : resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const drifted = [];
  for (const file of generatedFiles(root)) {
    const target = join(root, file.path);
    if (readOrEmpty(target) === file.text) continue;
    if (check) drifted.push(file.path);
    else writeFileSync(target, file.text);
  }
  if (drifted.length > 0) {
    process.stderr.write(
      `out of date (run node deploy/scripts/sync-generated.mjs): ${drifted.join(', ')}\n`,
    );
    return 1;
  }
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
