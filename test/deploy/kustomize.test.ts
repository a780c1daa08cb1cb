import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { runCliOk } from './support/run-cli.js';
import { repoPath } from './support/repo-paths.js';
import { dig, parseDocuments, type YamlObject } from './support/yaml.js';

const OVERLAYS = readdirSync(repoPath('deploy', 'overlays')).sort();

function render(overlay: string): YamlObject[] {
  return parseDocuments(
    runCliOk('kubectl', ['kustomize', repoPath('deploy', 'overlays', overlay)]),
  );
}

function find(objects: YamlObject[], kind: string): YamlObject {
  const found = objects.filter((object) => object['kind'] === kind);
  expect(found).toHaveLength(1);
  return found[0]!;
}

function agentContainer(daemonSet: YamlObject): YamlObject {
  const containers = dig(daemonSet, 'spec', 'template', 'spec', 'containers') as YamlObject[];
  expect(containers).toHaveLength(1);
  return containers[0]!;
}

describe('kustomize overlays', () => {
  it('has the overlays the documentation names', () => {
    expect(OVERLAYS).toEqual(['capabilities', 'default', 'prometheus-operator', 'secure-metrics']);
  });

  describe.each(OVERLAYS)('overlay %s', (overlay) => {
    const objects = render(overlay);

    it('renders the namespace, RBAC, DaemonSet and metrics Service', () => {
      const kinds = objects.map((object) => object['kind']);
      for (const kind of [
        'Namespace',
        'ServiceAccount',
        'ClusterRole',
        'ClusterRoleBinding',
        'DaemonSet',
        'Service',
      ]) {
        expect(kinds).toContain(kind);
      }
      expect(dig(find(objects, 'Namespace'), 'metadata', 'name')).toBe('conntrack-race-observer');
    });

    it('puts every namespaced object in the agent namespace', () => {
      const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);
      for (const object of objects.filter((o) => !clusterScoped.has(o['kind'] as string))) {
        expect(dig(object, 'metadata', 'namespace')).toBe('conntrack-race-observer');
      }
    });

    it('grants exactly read access to pods, services, nodes, endpointslices, writes to events and token and access reviews', () => {
      expect(dig(find(objects, 'ClusterRole'), 'rules')).toEqual([
        {
          apiGroups: [''],
          resources: ['pods', 'services', 'nodes'],
          verbs: ['get', 'list', 'watch'],
        },
        {
          apiGroups: ['discovery.k8s.io'],
          resources: ['endpointslices'],
          verbs: ['get', 'list', 'watch'],
        },
        { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        {
          apiGroups: ['authorization.k8s.io'],
          resources: ['subjectaccessreviews'],
          verbs: ['create'],
        },
      ]);
    });

    it('binds the ClusterRole to the agent service account', () => {
      const binding = find(objects, 'ClusterRoleBinding');
      expect(dig(binding, 'roleRef', 'name')).toBe(
        dig(find(objects, 'ClusterRole'), 'metadata', 'name'),
      );
      expect(dig(binding, 'subjects')).toEqual([
        {
          kind: 'ServiceAccount',
          name: dig(find(objects, 'ServiceAccount'), 'metadata', 'name'),
          namespace: 'conntrack-race-observer',
        },
      ]);
    });

    it('runs the agent in the node network and PID namespaces on every node', () => {
      const daemonSet = find(objects, 'DaemonSet');
      const pod = dig(daemonSet, 'spec', 'template', 'spec') as YamlObject;
      expect(pod['hostNetwork']).toBe(true);
      expect(pod['hostPID']).toBe(true);
      expect(pod['dnsPolicy']).toBe('ClusterFirstWithHostNet');
      expect(pod['priorityClassName']).toBe('system-node-critical');
      expect(pod['tolerations']).toEqual([{ operator: 'Exists' }]);
      expect(pod['serviceAccountName']).toBe(
        dig(find(objects, 'ServiceAccount'), 'metadata', 'name'),
      );
      expect(dig(daemonSet, 'spec', 'updateStrategy', 'type')).toBe('RollingUpdate');
      expect(
        dig(daemonSet, 'spec', 'updateStrategy', 'rollingUpdate', 'maxUnavailable'),
      ).toBeDefined();
    });

    it('takes NODE_NAME from the downward API and probes /healthz and /readyz on the metrics port', () => {
      const container = agentContainer(find(objects, 'DaemonSet'));
      expect(container['env']).toContainEqual({
        name: 'NODE_NAME',
        valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } },
      });
      expect(container['ports']).toContainEqual({
        name: 'metrics',
        containerPort: 9474,
        protocol: 'TCP',
      });
      // With /metrics locked down the server speaks only TLS, the probes too.
      const scheme = overlay === 'secure-metrics' ? { scheme: 'HTTPS' } : {};
      expect(dig(container, 'livenessProbe', 'httpGet')).toEqual({
        path: '/healthz',
        port: 'metrics',
        ...scheme,
      });
      expect(dig(container, 'readinessProbe', 'httpGet')).toEqual({
        path: '/readyz',
        port: 'metrics',
        ...scheme,
      });
      expect(container['args']).toEqual(expect.arrayContaining(['--listen', '0.0.0.0:9474']));
    });

    it('sets requests and limits', () => {
      const resources = agentContainer(find(objects, 'DaemonSet'))['resources'];
      for (const bound of ['requests', 'limits']) {
        expect(dig(resources, bound, 'cpu')).toEqual(expect.any(String));
        expect(dig(resources, bound, 'memory')).toEqual(expect.any(String));
      }
    });

    it('mounts tracefs, debugfs, bpffs and the host /proc, the latter read-only', () => {
      const daemonSet = find(objects, 'DaemonSet');
      const volumes = dig(daemonSet, 'spec', 'template', 'spec', 'volumes') as YamlObject[];
      const mounts = agentContainer(daemonSet)['volumeMounts'] as YamlObject[];
      const hostPathOf = (mountPath: string): unknown => {
        const mount = mounts.find((m) => m['mountPath'] === mountPath);
        expect(mount).toBeDefined();
        return dig(
          volumes.find((v) => v['name'] === mount!['name']),
          'hostPath',
          'path',
        );
      };
      expect(hostPathOf('/sys/kernel/tracing')).toBe('/sys/kernel/tracing');
      expect(hostPathOf('/sys/kernel/debug')).toBe('/sys/kernel/debug');
      expect(hostPathOf('/sys/fs/bpf')).toBe('/sys/fs/bpf');
      expect(hostPathOf('/host/proc')).toBe('/proc');
      expect(mounts.find((m) => m['mountPath'] === '/host/proc')!['readOnly']).toBe(true);
    });

    it('exposes the metrics port through a headless Service selecting the agent pods', () => {
      const service = find(objects, 'Service');
      const podLabels = dig(find(objects, 'DaemonSet'), 'spec', 'template', 'metadata', 'labels');
      expect(dig(service, 'spec', 'clusterIP')).toBe('None');
      expect(dig(service, 'spec', 'ports')).toEqual([
        { name: 'metrics', port: 9474, targetPort: 'metrics', protocol: 'TCP' },
      ]);
      expect(podLabels).toMatchObject(dig(service, 'spec', 'selector') as YamlObject);
    });
  });

  it('runs the default overlay privileged', () => {
    const securityContext = agentContainer(find(render('default'), 'DaemonSet'))['securityContext'];
    expect(dig(securityContext, 'privileged')).toBe(true);
  });

  it('runs the capabilities overlay unprivileged with exactly the eBPF capabilities', () => {
    const securityContext = agentContainer(find(render('capabilities'), 'DaemonSet'))[
      'securityContext'
    ];
    expect(dig(securityContext, 'privileged')).toBe(false);
    expect(dig(securityContext, 'capabilities')).toEqual({
      drop: ['ALL'],
      add: ['BPF', 'PERFMON', 'SYS_ADMIN', 'NET_ADMIN', 'SYS_RESOURCE', 'SYS_PTRACE'],
    });
  });

  it('adds a PodMonitor and a PrometheusRule in the prometheus-operator overlay', () => {
    const objects = render('prometheus-operator');
    const podMonitor = find(objects, 'PodMonitor');
    expect(dig(podMonitor, 'spec', 'podMetricsEndpoints', 0, 'port')).toBe('metrics');
    expect(dig(podMonitor, 'spec', 'selector', 'matchLabels')).toEqual(
      dig(find(objects, 'DaemonSet'), 'spec', 'selector', 'matchLabels'),
    );
    const ruleNames = (
      dig(find(objects, 'PrometheusRule'), 'spec', 'groups') as YamlObject[]
    ).flatMap((group) => (group['rules'] as YamlObject[]).map((rule) => rule['alert']));
    expect(ruleNames).toContain('ConntrackInsertFailuresOnPod');
  });

  it.each(['default', 'capabilities', 'prometheus-operator'])(
    'serves /metrics unauthenticated in plain HTTP in the %s overlay',
    (overlay) => {
      const objects = render(overlay);
      const args = agentContainer(find(objects, 'DaemonSet'))['args'] as string[];
      expect(args.filter((arg) => arg.startsWith('--metrics-auth'))).toEqual([]);
      const monitor = objects.find((o) => o['kind'] === 'PodMonitor');
      if (monitor) expect(dig(monitor, 'spec', 'podMetricsEndpoints', 0, 'scheme')).toBeUndefined();
    },
  );

  it('locks /metrics down in the secure-metrics overlay, scraped over HTTPS with a token', () => {
    const objects = render('secure-metrics');
    const container = agentContainer(find(objects, 'DaemonSet'));
    expect(container['args']).toContain('--metrics-auth=kubernetes');
    expect(dig(container, 'livenessProbe', 'httpGet', 'scheme')).toBe('HTTPS');
    expect(dig(container, 'readinessProbe', 'httpGet', 'scheme')).toBe('HTTPS');
    const endpoint = dig(find(objects, 'ServiceMonitor'), 'spec', 'endpoints', 0) as YamlObject;
    expect(endpoint).toMatchObject({
      port: 'metrics',
      path: '/metrics',
      scheme: 'https',
      bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      // The agent's certificate is self-signed.
      tlsConfig: { insecureSkipVerify: true },
    });
    expect(objects.filter((o) => o['kind'] === 'PodMonitor')).toEqual([]);
    expect(objects.map((o) => o['kind'])).toContain('PrometheusRule');
  });

  it('leaves DNS query tracking off in every overlay', () => {
    for (const overlay of OVERLAYS) {
      const args = agentContainer(find(render(overlay), 'DaemonSet'))['args'] as string[];
      expect({ overlay, args: args.filter((arg) => arg.includes('dns-query')) }).toEqual({
        overlay,
        args: [],
      });
    }
  });

  it('turns DNS query tracking on with the dns-query-tracking component, nothing else changed', () => {
    // A component has no objects of its own: an overlay of the base with it renders it.
    const dir = mkdtempSync(join(tmpdir(), 'kustomize-'));
    try {
      writeFileSync(
        join(dir, 'kustomization.yaml'),
        [
          'resources:',
          `  - ${relative(dir, repoPath('deploy', 'base'))}`,
          'components:',
          `  - ${relative(dir, repoPath('deploy', 'components', 'dns-query-tracking'))}`,
          '',
        ].join('\n'),
      );
      const objects = parseDocuments(runCliOk('kubectl', ['kustomize', dir]));
      const args = agentContainer(find(objects, 'DaemonSet'))['args'] as string[];
      const baseArgs = agentContainer(find(render('default'), 'DaemonSet'))['args'] as string[];
      expect(args).toEqual([...baseArgs, '--dns-query-tracking=on']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders the ServiceMonitor component against the metrics Service', () => {
    const objects = parseDocuments(
      runCliOk('kubectl', ['kustomize', repoPath('deploy', 'components', 'servicemonitor')], {}),
    );
    expect(objects.map((o) => o['kind'])).toEqual(['ServiceMonitor']);
    expect(dig(objects[0], 'spec', 'endpoints', 0, 'port')).toBe('metrics');
  });
});
