import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knownMetrics, metricNamesIn } from './support/metric-names.js';
import { readRepoFile, repoPath } from './support/repo-paths.js';
import { runCli, runCliOk } from './support/run-cli.js';
import { dig, parseDocument, type YamlObject } from './support/yaml.js';

const RULES = repoPath('deploy', 'prometheus', 'rules.yaml');
const RULE_TESTS = repoPath('deploy', 'prometheus', 'rules.test.yaml');

interface AlertRule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const alerts: AlertRule[] = (
  dig(parseDocument(readFileSync(RULES, 'utf8')), 'groups') as YamlObject[]
)
  .flatMap((group) => group['rules'] as YamlObject[])
  .filter((rule) => typeof rule['alert'] === 'string') as unknown as AlertRule[];

const unitTests = dig(parseDocument(readFileSync(RULE_TESTS, 'utf8')), 'tests') as YamlObject[];

/** Per alert: whether some unit test expects it to fire, and whether one expects silence. */
function coverage(alert: string): { firing: boolean; silent: boolean } {
  const cases = unitTests
    .flatMap((test) => (test['alert_rule_test'] as YamlObject[] | undefined) ?? [])
    .filter((testCase) => testCase['alertname'] === alert);
  return {
    firing: cases.some((c) => ((c['exp_alerts'] as unknown[] | undefined) ?? []).length > 0),
    silent: cases.some((c) => ((c['exp_alerts'] as unknown[] | undefined) ?? []).length === 0),
  };
}

describe('Prometheus alerting rules', () => {
  it('holds the alerts the runbooks describe', () => {
    expect(alerts.map((rule) => rule.alert).sort()).toEqual([
      'ConntrackInsertFailuresOnNode',
      'ConntrackInsertFailuresOnPod',
      'ConntrackObserverDnsQueriesUnanswered',
      'ConntrackRaceObserverAbsent',
      'ConntrackRaceObserverBlind',
      'ConntrackRaceObserverDown',
      'ConntrackRaceObserverEventsLost',
      'ConntrackRaceObserverLinesRejected',
      'ConntrackRaceObserverProbeDown',
      'ConntrackRaceObserverProbeUnavailable',
      'ConntrackTableNearlyFull',
      'DNSQueriesDropped',
    ]);
  });

  it('passes promtool check rules', () => {
    const output = runCliOk('promtool', ['check', 'rules', RULES]);
    expect(output).toContain(`SUCCESS: ${alerts.length} rules found`);
  });

  it('passes every promtool unit test', () => {
    const output = runCliOk('promtool', ['test', 'rules', RULE_TESTS]);
    expect(output).toContain('SUCCESS');
  });

  it('fails promtool unit tests when an alert stops firing (the unit tests can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rules-'));
    try {
      const broken = readFileSync(RULES, 'utf8').replace(
        'rate(conntrack_observer_insert_failures_total{pod!=""}[5m])',
        'rate(conntrack_observer_insert_failures_total{pod="nobody"}[5m])',
      );
      writeFileSync(join(dir, 'rules.yaml'), broken);
      writeFileSync(join(dir, 'rules.test.yaml'), readFileSync(RULE_TESTS, 'utf8'));
      const result = runCli('promtool', ['test', 'rules', join(dir, 'rules.test.yaml')]);
      expect(result.status).not.toBe(0);
      expect(result.stdout + result.stderr).toContain('ConntrackInsertFailuresOnPod');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('passes promtool check config for the loopback Prometheus configuration', () => {
    runCliOk('promtool', [
      'check',
      'config',
      repoPath('deploy', 'prometheus', 'prometheus-local.yml'),
    ]);
  });

  describe.each(alerts.map((rule) => [rule.alert, rule] as const))('alert %s', (name, rule) => {
    it('has a severity, a summary and a description', () => {
      expect(rule.labels?.['severity']).toMatch(/^(info|warning|critical)$/);
      expect(rule.annotations?.['summary']).toEqual(expect.any(String));
      expect(rule.annotations?.['description']).toEqual(expect.any(String));
    });

    it('links a runbook that exists and names the alert', () => {
      const runbook = `docs/runbooks/${name}.md`;
      expect(rule.annotations?.['runbook_url']).toBe(runbook);
      expect(existsSync(repoPath(runbook))).toBe(true);
      expect(readRepoFile(runbook)).toContain(`# ${name}`);
    });

    it('has a unit test where it fires and one where it stays silent', () => {
      expect(coverage(name)).toEqual({ firing: true, silent: true });
    });

    it('uses only metrics the agent exports', () => {
      const known = knownMetrics();
      for (const metric of metricNamesIn(rule.expr)) {
        expect({ metric, known: known.names.has(metric), source: known.source }).toEqual({
          metric,
          known: true,
          source: known.source,
        });
      }
    });
  });
});
