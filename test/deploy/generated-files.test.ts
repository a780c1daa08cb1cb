import { cpSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRepoFile, repoPath } from './support/repo-paths.js';
import { runCli } from './support/run-cli.js';
import { parseDocument } from './support/yaml.js';

const SCRIPT = repoPath('deploy', 'scripts', 'sync-generated.mjs');

describe('files generated from the rules and the dashboard', () => {
  it('are up to date with their sources', () => {
    const result = runCli('node', [SCRIPT, '--check']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('are reported as out of date when a source changes', () => {
    const root = mkdtempSync(join(tmpdir(), 'deploy-'));
    try {
      cpSync(repoPath('deploy'), join(root, 'deploy'), { recursive: true });
      const rules = join(root, 'deploy', 'prometheus', 'rules.yaml');
      writeFileSync(rules, readFileSync(rules, 'utf8').replace('for: 2m', 'for: 3m'));
      const result = runCli('node', [SCRIPT, '--check', '--root', root]);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain('deploy/components/prometheusrule/prometheusrule.yaml');
      expect(result.stderr).toContain('deploy/helm/conntrack-race-observer/files/rules.yaml');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('make the PrometheusRule spec the rules file itself', () => {
    const prometheusRule = parseDocument(
      readRepoFile('deploy', 'components', 'prometheusrule', 'prometheusrule.yaml'),
    );
    expect(prometheusRule['kind']).toBe('PrometheusRule');
    expect(prometheusRule['spec']).toEqual(
      parseDocument(readRepoFile('deploy', 'prometheus', 'rules.yaml')),
    );
  });
});
