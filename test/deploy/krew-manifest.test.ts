import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execa } from 'execa';
import { load } from 'js-yaml';
import { repoPath, repoRoot } from './support/repo-paths.js';

interface KrewPlatform {
  selector?: { matchLabels?: Record<string, string> };
  uri?: string;
  sha256?: string;
  bin?: string;
}
interface KrewManifest {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string };
  spec?: {
    version?: string;
    shortDescription?: string;
    description?: string;
    platforms?: KrewPlatform[];
  };
}

const TEMPLATE = repoPath('deploy', 'krew', 'conntrack-race.yaml');
const SCRIPT = repoPath('scripts', 'plugin-archive.sh');
const PLACEHOLDER = '0'.repeat(64);
const version = (JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string })
  .version;

const sha256Of = (file: string): string =>
  createHash('sha256').update(readFileSync(file)).digest('hex');

/** What krew itself requires of a manifest (pkg/index/validation in krew). */
function krewProblems(manifest: KrewManifest): string[] {
  const problems: string[] = [];
  if (manifest.apiVersion !== 'krew.googlecontainertools.github.com/v1alpha2')
    problems.push(`apiVersion ${manifest.apiVersion}`);
  if (manifest.kind !== 'Plugin') problems.push(`kind ${manifest.kind}`);
  if (!/^[a-z0-9][a-z0-9-]*$/.test(manifest.metadata?.name ?? ''))
    problems.push(`metadata.name ${manifest.metadata?.name}`);
  if (!/^v\d+\.\d+\.\d+/.test(manifest.spec?.version ?? ''))
    problems.push(`spec.version ${manifest.spec?.version}`);
  if (!manifest.spec?.shortDescription) problems.push('no spec.shortDescription');
  const platforms = manifest.spec?.platforms ?? [];
  if (platforms.length === 0) problems.push('no spec.platforms');
  platforms.forEach((platform, index) => {
    if (!platform.selector) problems.push(`platforms[${index}]: no selector`);
    if (!/^https:\/\//.test(platform.uri ?? ''))
      problems.push(`platforms[${index}]: uri ${platform.uri}`);
    if (!/^[0-9a-f]{64}$/.test(platform.sha256 ?? ''))
      problems.push(`platforms[${index}]: sha256 ${platform.sha256}`);
    if (!platform.bin) problems.push(`platforms[${index}]: no bin`);
  });
  return problems;
}

const readManifest = (file: string): KrewManifest =>
  load(readFileSync(file, 'utf8')) as KrewManifest;

describe('the krew manifest of kubectl conntrack-race', () => {
  it('is a krew Plugin with every field krew requires, for this version and the plugin in bin/', () => {
    const manifest = readManifest(TEMPLATE);
    expect(krewProblems(manifest)).toEqual([]);
    expect(manifest.metadata?.name).toBe('conntrack-race');
    expect(manifest.spec?.version).toBe(`v${version}`);
    for (const platform of manifest.spec?.platforms ?? []) {
      expect(platform.bin).toBe('bin/kubectl-conntrack_race');
      expect(existsSync(repoPath(platform.bin!))).toBe(true);
    }
  });

  it('is committed with a placeholder digest that the release check refuses to ship', async () => {
    const manifest = readManifest(TEMPLATE);
    for (const platform of manifest.spec?.platforms ?? [])
      expect(platform.sha256).toBe(PLACEHOLDER);
    const checked = await execa(SCRIPT, ['--check', TEMPLATE, SCRIPT], { reject: false });
    expect(checked.exitCode).toBe(1);
    expect(checked.stderr).toMatch(/placeholder sha256: not shippable/);
  });

  describe('scripts/plugin-archive.sh', () => {
    let out: string;
    let again: string;
    let archive: string;
    beforeAll(async () => {
      out = mkdtempSync(join(tmpdir(), 'plugin-archive-'));
      again = mkdtempSync(join(tmpdir(), 'plugin-archive-again-'));
      await execa(SCRIPT, ['--out', out, '--base-url', 'https://releases.example/v1/'], {
        cwd: repoRoot,
      });
      await execa(SCRIPT, ['--out', again], { cwd: repoRoot });
      archive = join(out, `kubectl-conntrack_race-v${version}.tar.gz`);
    }, 300_000);
    afterAll(() => {
      rmSync(out, { recursive: true, force: true });
      rmSync(again, { recursive: true, force: true });
    });

    it("writes a manifest with the archive's real sha256 and URL, which the check accepts", async () => {
      const manifest = readManifest(join(out, 'conntrack-race.yaml'));
      expect(krewProblems(manifest)).toEqual([]);
      for (const platform of manifest.spec?.platforms ?? []) {
        expect(platform.sha256).toBe(sha256Of(archive));
        expect(platform.uri).toBe(
          `https://releases.example/v1/kubectl-conntrack_race-v${version}.tar.gz`,
        );
      }
      const checked = await execa(SCRIPT, ['--check', join(out, 'conntrack-race.yaml'), archive]);
      expect(checked.stdout).toMatch(/ships/);
    });

    it('makes the same archive twice (reproducible), and a changed one fails the check', async () => {
      expect(sha256Of(join(again, `kubectl-conntrack_race-v${version}.tar.gz`))).toBe(
        sha256Of(archive),
      );
      const changed = join(again, 'changed.tar.gz');
      writeFileSync(changed, Buffer.concat([readFileSync(archive), Buffer.from([0])]));
      const checked = await execa(SCRIPT, ['--check', join(out, 'conntrack-race.yaml'), changed], {
        reject: false,
      });
      expect(checked.exitCode).toBe(1);
      expect(checked.stderr).toMatch(/says sha256 [0-9a-f]{64}; .* is [0-9a-f]{64}/);
    });

    it('without --base-url: a manifest for a local install (--archive), refused for shipping', async () => {
      const checked = await execa(
        SCRIPT,
        [
          '--check',
          join(again, 'conntrack-race.yaml'),
          join(again, `kubectl-conntrack_race-v${version}.tar.gz`),
        ],
        { reject: false },
      );
      expect(checked.exitCode).toBe(1);
      expect(checked.stderr).toMatch(/no release URL/);
    });

    it('holds a plugin that runs from where krew unpacks it', async () => {
      const unpacked = join(again, 'unpacked');
      await execa('mkdir', ['-p', unpacked]);
      await execa('tar', ['-xzf', archive, '-C', unpacked]);
      const help = await execa(join(unpacked, 'bin', 'kubectl-conntrack_race'), ['--help'], {
        reject: false,
        env: { KUBECONFIG: '/dev/null' },
      });
      expect(help.stderr).toBe('');
      expect(help.exitCode).toBe(0);
      expect(help.stdout).toMatch(/^Usage: kubectl conntrack-race why POD/);
    }, 30_000);
  });
});
