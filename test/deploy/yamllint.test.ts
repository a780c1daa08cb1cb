import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoPath } from './support/repo-paths.js';
import { runCli } from './support/run-cli.js';

const CONFIG = repoPath('deploy', '.yamllint');

describe('yamllint', () => {
  it('finds nothing to report in deploy/', () => {
    const result = runCli('yamllint', ['-c', CONFIG, '-f', 'parsable', repoPath('deploy')]);
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('reports broken YAML with the same configuration, and skips only Helm templates', () => {
    const dir = mkdtempSync(join(tmpdir(), 'yamllint-'));
    try {
      writeFileSync(join(dir, 'broken.yaml'), 'a: 1\na: 2\nb: [1,2\n');
      mkdirSync(join(dir, 'helm', 'chart', 'templates'), { recursive: true });
      writeFileSync(join(dir, 'helm', 'chart', 'templates', 'x.yaml'), '{{- if .Values.x }}\n');
      const result = runCli('yamllint', ['-c', CONFIG, '-f', 'parsable', dir]);
      expect(result.status).not.toBe(0);
      expect(result.stdout).toContain('broken.yaml');
      expect(result.stdout).not.toContain('templates');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
