import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  KubeConfigError,
  resolveKubernetesConnection,
} from '../../../src/attribute/kubernetes/connection.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';

let dir: string;
let fake: FakeApiServer;
let kubeconfig: string;
let serviceAccountDir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'k8s-connection-'));
  fake = await startFakeApiServer();
  kubeconfig = await fake.kubeConfigFile();
  serviceAccountDir = join(dir, 'sa');
  await mkdir(serviceAccountDir);
  await writeFile(join(serviceAccountDir, 'token'), 'sa-token');
  await writeFile(join(serviceAccountDir, 'ca.crt'), '');
  await writeFile(join(serviceAccountDir, 'namespace'), 'kube-system');
});

afterAll(async () => {
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

const noServiceAccount = () => join(dir, 'absent');

describe('resolveKubernetesConnection', () => {
  it('prefers --kubeconfig over KUBECONFIG and the service account', () => {
    const connection = resolveKubernetesConnection({
      kubeconfigFlag: kubeconfig,
      kubeconfigEnv: join(dir, 'other'),
      serviceAccountDir,
      inCluster: { host: '10.96.0.1', port: '443' },
    });
    expect(connection).toMatchObject({ source: 'flag', origin: kubeconfig, server: fake.url });
  });

  it('uses the first existing file of a KUBECONFIG list', () => {
    const connection = resolveKubernetesConnection({
      kubeconfigEnv: `${join(dir, 'missing')}:${kubeconfig}`,
      serviceAccountDir: noServiceAccount(),
    });
    expect(connection).toMatchObject({ source: 'env', origin: kubeconfig });
  });

  it('builds an in-cluster configuration from the service account and the service host', () => {
    const connection = resolveKubernetesConnection({
      serviceAccountDir,
      inCluster: { host: 'fd00::1', port: '443' },
    });
    expect(connection).toMatchObject({ source: 'in-cluster', server: 'https://[fd00::1]:443' });
    if (connection instanceof KubeConfigError || !connection)
      throw new Error('expected a connection');
    expect(connection.kubeConfig.getCurrentCluster()?.caFile).toBe(
      join(serviceAccountDir, 'ca.crt'),
    );
  });

  it('returns undefined without any configuration: the agent stays standalone', () => {
    expect(resolveKubernetesConnection({ serviceAccountDir: noServiceAccount() })).toBeUndefined();
  });

  it('returns an error value for an unreadable or invalid kubeconfig', async () => {
    const missing = resolveKubernetesConnection({ kubeconfigFlag: join(dir, 'nope') });
    expect(missing).toBeInstanceOf(KubeConfigError);
    expect((missing as KubeConfigError).code).toBe('ERR_KUBECONFIG');
    const garbage = join(dir, 'garbage');
    await writeFile(garbage, 'this: [is not: a kubeconfig');
    expect(resolveKubernetesConnection({ kubeconfigFlag: garbage })).toBeInstanceOf(
      KubeConfigError,
    );
    const empty = join(dir, 'empty');
    await writeFile(empty, 'apiVersion: v1\nkind: Config\n');
    expect(resolveKubernetesConnection({ kubeconfigFlag: empty })).toBeInstanceOf(KubeConfigError);
  });

  it('reports a service account without KUBERNETES_SERVICE_HOST as an error, not as standalone', () => {
    expect(resolveKubernetesConnection({ serviceAccountDir })).toBeInstanceOf(KubeConfigError);
  });

  it('reports a KUBECONFIG naming no existing file as an error', () => {
    expect(resolveKubernetesConnection({ kubeconfigEnv: join(dir, 'missing') })).toBeInstanceOf(
      KubeConfigError,
    );
  });
});
