import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mayHaveKubernetesConfig } from '../../../src/attribute/kubernetes/connection-hint.js';

describe('whether Kubernetes may be configured', () => {
  const empty = mkdtempSync(join(tmpdir(), 'cro-sa-'));
  afterAll(() => rmSync(empty, { recursive: true, force: true }));

  it('says no with no flag, no KUBECONFIG and no service-account token', () => {
    expect(mayHaveKubernetesConfig({ serviceAccountDir: empty })).toBe(false);
    expect(mayHaveKubernetesConfig({ kubeconfigEnv: '', serviceAccountDir: empty })).toBe(false);
  });

  it('says yes for a flag, for KUBECONFIG, and for a mounted token', () => {
    expect(mayHaveKubernetesConfig({ kubeconfigFlag: '/k', serviceAccountDir: empty })).toBe(true);
    expect(mayHaveKubernetesConfig({ kubeconfigEnv: '/k', serviceAccountDir: empty })).toBe(true);
    const mounted = mkdtempSync(join(tmpdir(), 'cro-sa-'));
    try {
      writeFileSync(join(mounted, 'token'), 'x');
      expect(mayHaveKubernetesConfig({ serviceAccountDir: mounted })).toBe(true);
    } finally {
      rmSync(mounted, { recursive: true, force: true });
    }
  });
});
