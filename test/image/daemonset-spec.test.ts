import { repoPath } from '../deploy/support/repo-paths.js';
import { readDaemonSetContainer, tmpfsSize } from './daemonset-spec.js';

describe('the DaemonSet as the image test reads it', () => {
  const spec = readDaemonSetContainer(repoPath('deploy', 'base', 'daemonset.yaml'));

  it('asks for a privileged, host-network, host-PID container with a read-only root', () => {
    expect(spec).toMatchObject({
      privileged: true,
      hostNetwork: true,
      hostPID: true,
      readOnlyRootFilesystem: true,
    });
  });

  it('joins each volumeMount to its volume, read-only where the manifest says', () => {
    const byPath = new Map(spec.mounts.map((mount) => [mount.mountPath, mount]));
    expect(byPath.get('/sys/kernel/tracing')).toMatchObject({
      readOnly: false,
      source: { kind: 'hostPath', path: '/sys/kernel/tracing', type: 'Directory' },
    });
    expect(byPath.get('/host/proc')).toMatchObject({
      readOnly: true,
      source: { kind: 'hostPath', path: '/proc' },
    });
    expect(byPath.get('/lib/modules')).toMatchObject({
      readOnly: true,
      source: { type: 'DirectoryOrCreate' },
    });
    expect(byPath.get('/tmp')).toMatchObject({ source: { kind: 'memory', sizeLimit: '16Mi' } });
  });

  it('passes the args and the node name from the downward API', () => {
    expect(spec.args).toContain('--probes-dir');
    expect(spec.env).toContainEqual({ name: 'NODE_NAME', fieldPath: 'spec.nodeName' });
  });

  it('turns a sizeLimit into tmpfs size= and refuses what it cannot express', () => {
    expect(tmpfsSize('16Mi')).toBe('16m');
    expect(tmpfsSize('1Gi')).toBe('1g');
    expect(() => tmpfsSize('1.5Gi')).toThrow('unsupported sizeLimit 1.5Gi');
  });
});
