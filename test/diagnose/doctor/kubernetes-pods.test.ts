import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Ajv } from 'ajv';
import type { CapabilityFiles, CommandRunner } from '../../../src/detect/capabilities.js';
import { createHostFiles } from '../../../src/diagnose/host-files.js';
import type { DoctorKubernetesPod } from '../../../src/diagnose/doctor/kubernetes-pods.js';
import type { DoctorReport } from '../../../src/diagnose/doctor/report.js';
import { doctorReportSchema } from '../../../src/diagnose/doctor/report-schema.js';
import { runDoctor, type DoctorSystem } from '../../../src/diagnose/doctor/run-doctor.js';
import { capabilityFixtureDir, fixtureSources } from '../../fixtures/capabilities/load.js';
import { makeContainerRoot, makeProcTree } from '../../support/container-roots.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { podFrom, stored } from '../../support/k8s-fixtures.js';
import { ManualClock } from '../../support/manual-clock.js';

const CONTAINER_ID = '9a0d8c3b1f6e4a7d2c5b8e1f0a3d6c9b2e5f8a1d4c7b0e3f6a9d2c5b8e1f4a7d';
const READ_UID = '3f1c2a9e-8b7d-4c6e-a5f4-1e2d3c4b5a61';

const fixture = (path: string): string =>
  readFileSync(new URL(`../../fixtures/${path}`, import.meta.url), 'utf8');

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a report taken apart on purpose
type Broken = Record<string, any>;

const validate = new Ajv({ allErrors: true }).compile(doctorReportSchema);

/** A glibc pod asking, through dnsConfig, for NodeLocal DNSCache and single-request-reopen. */
function nodeLocalPod(): ReturnType<typeof podFrom> {
  const pod = podFrom('pod-dns-client-a', { uid: READ_UID });
  pod.spec.dnsPolicy = 'None';
  pod.spec.dnsConfig = {
    nameservers: ['169.254.20.10'],
    searches: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
    options: [{ name: 'ndots', value: '2' }, { name: 'single-request-reopen' }],
  };
  return pod;
}

/** The same settings on a pod whose processes are not on this node's /proc. */
function unreadPod(): ReturnType<typeof podFrom> {
  const pod = nodeLocalPod();
  pod.metadata.name = 'dns-client-unread';
  pod.metadata.uid = '5d6e7f80-1111-4222-8333-944455556666';
  pod.status.podIP = '10.244.0.9';
  pod.status.podIPs = [{ ip: '10.244.0.9' }];
  pod.status.containerStatuses = [];
  return pod;
}

describe('doctor with a Kubernetes configuration', () => {
  const cleanup: (() => void)[] = [];
  let api: FakeApiServer;
  let kubeconfig: string;
  let system: DoctorSystem;

  beforeAll(async () => {
    const root = makeContainerRoot(
      'glibc',
      'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 169.254.20.10\noptions ndots:2 single-request-reopen\n',
    );
    const proc = makeProcTree([
      {
        pid: 100,
        root: root.path,
        netnsInode: 4026532001,
        comm: 'nslookup',
        cgroup: `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${READ_UID.replaceAll('-', '_')}.slice/cri-containerd-${CONTAINER_ID}.scope\n`,
      },
    ]);
    cleanup.push(root.remove, () => rmSync(proc, { recursive: true, force: true }));
    mkdirSync(join(proc, 'sys/kernel'), { recursive: true });
    copyFileSync(
      join(capabilityFixtureDir, '6.1-btf/proc/sys/kernel/osrelease'),
      join(proc, 'sys/kernel/osrelease'),
    );
    mkdirSync(join(proc, '1/net/stat'));
    writeFileSync(
      join(proc, '1/net/stat/nf_conntrack'),
      fixture('proc/nf_conntrack-6.18-idle.txt'),
    );

    const recorded = await fixtureSources('6.1-btf');
    const capabilityFiles: CapabilityFiles = {
      read: (path) => recorded.files.read(join(capabilityFixtureDir, '6.1-btf', path)),
      exists: (path) => recorded.files.exists(join(capabilityFixtureDir, '6.1-btf', path)),
    };
    const run: CommandRunner = (file, args, options) => recorded.run(file, args, options);

    api = await startFakeApiServer({
      pods: [
        nodeLocalPod(),
        unreadPod(),
        podFrom('pod-dns-client-b', { nodeName: 'other-node' }),
        stored('pod-kube-proxy-hostnetwork'),
      ],
    });
    kubeconfig = await api.kubeConfigFile();
    system = {
      files: createHostFiles(),
      capabilityFiles,
      run,
      clock: new ManualClock(),
      procRoot: proc,
      env: {},
      serviceAccountDir: join(proc, 'no-service-account'),
    };
  });
  afterAll(async () => {
    cleanup.forEach((remove) => remove());
    await api.close();
  });

  async function doctor(
    argv: readonly string[],
    env: DoctorSystem['env'] = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await runDoctor(
      ['--interval', '0.1', ...argv],
      { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) },
      { ...system, env },
    );
    return { code, stdout, stderr };
  }

  async function jsonReport(argv: readonly string[], env?: DoctorSystem['env']) {
    const { stdout, stderr } = await doctor(['--json', ...argv], env);
    expect(stderr).toBe('');
    return JSON.parse(stdout) as DoctorReport;
  }

  const podNamed = (report: DoctorReport, name: string): DoctorKubernetesPod => {
    const pod = report.kubernetes?.pods.find((p) => p.name === name);
    expect(pod).toBeDefined();
    return pod!;
  };

  it('lists only the pods of its node, by spec.nodeName', async () => {
    const report = await jsonReport(['--kubeconfig', kubeconfig, '--node-name', 'lab-node']);
    expect(report.kubernetes?.nodeName).toBe('lab-node');
    expect(report.kubernetes?.source).toBe('flag');
    expect(report.kubernetes?.pods.map((p) => p.name).sort()).toEqual(
      ['dns-client-7c9f8d6b54-4xq2m', 'dns-client-unread', 'kube-proxy-7xk2q'].sort(),
    );
    const listing = api.requests().find((r) => r.path === '/api/v1/pods');
    expect(listing?.query.get('fieldSelector')).toBe('spec.nodeName=lab-node');
  });

  it('shows a read pod its dnsConfig beside its resolv.conf, and advice that reflects both', async () => {
    const report = await jsonReport(['--kubeconfig', kubeconfig, '--node-name', 'lab-node']);
    const pod = podNamed(report, 'dns-client-7c9f8d6b54-4xq2m');
    expect(pod.read).toBe(true);
    expect(pod.foundBy).toBe('pod-uid');
    expect(pod.spec.dnsPolicy).toBe('None');
    expect(pod.spec.dnsConfig?.options).toEqual([
      { name: 'ndots', value: '2' },
      { name: 'single-request-reopen' },
    ]);
    expect(pod.containers).toHaveLength(1);
    expect(pod.containers[0]?.name).toBe('client');
    expect(pod.containers[0]?.libc.kind).toBe('glibc');
    expect(pod.containers[0]?.nameservers).toEqual([
      { address: '169.254.20.10', kind: 'nodelocal' },
    ]);
    const ids = pod.remedies.map((r) => r.id);
    expect(ids).not.toContain('single-request-reopen');
    expect(ids).not.toContain('nodelocal-dns');
    expect(ids).toContain('nodelocal-upstream-tcp');
    expect(pod.notes.join('\n')).toMatch(/single-request-reopen is already set for client/);
    expect(pod.notes.join('\n')).toMatch(/already queries NodeLocal DNSCache \(169\.254\.20\.10\)/);
  });

  it('advises a pod whose processes it cannot see from its spec alone, saying so', async () => {
    const report = await jsonReport(['--kubeconfig', kubeconfig, '--node-name', 'lab-node']);
    const pod = podNamed(report, 'dns-client-unread');
    expect(pod.read).toBe(false);
    expect(pod.notRead).toMatch(/no process of pod default\/dns-client-unread/);
    expect(pod.containers).toEqual([]);
    const ids = pod.remedies.map((r) => r.id);
    expect(ids).not.toContain('single-request-reopen');
    expect(ids).not.toContain('nodelocal-dns');
    expect(pod.notes.join('\n')).toMatch(/dnsConfig already sets single-request-reopen/);
    expect(pod.notes.join('\n')).toMatch(
      /points the pod at NodeLocal DNSCache \(169\.254\.20\.10\)/,
    );
    const hostNetwork = podNamed(report, 'kube-proxy-7xk2q');
    expect(hostNetwork.read).toBe(false);
    expect(hostNetwork.notRead).toMatch(/hostNetwork/);
  });

  it('tells a dnsPolicy None pod without ndots that the resolver default applies', async () => {
    const pod = unreadPod();
    pod.metadata.name = 'no-ndots';
    pod.metadata.uid = '77777777-1111-4222-8333-944455556666';
    pod.spec.dnsConfig.options = [];
    api.apply('pods', pod);
    try {
      const report = await jsonReport(['--kubeconfig', kubeconfig, '--node-name', 'lab-node']);
      const advised = podNamed(report, 'no-ndots');
      expect(advised.notes.join('\n')).toMatch(/dnsPolicy None without an ndots option/);
      expect(advised.remedies.map((r) => r.id)).not.toContain('fewer-search-lookups');
      const reopen = advised.remedies.find((r) => r.id === 'single-request-reopen');
      expect(reopen?.yaml).toBe(
        'spec:\n  dnsConfig:\n    options:\n      - name: single-request-reopen\n',
      );
    } finally {
      api.remove('pods', 'default', 'no-ndots');
    }
  });

  it('resolves KUBECONFIG and NODE_NAME from the environment as the agent does', async () => {
    const report = await jsonReport([], { KUBECONFIG: kubeconfig, NODE_NAME: 'lab-node' });
    expect(report.kubernetes?.source).toBe('env');
    expect(report.kubernetes?.pods.length).toBe(3);
  });

  it('prints each pod: spec, what it uses (or not read) and the remedies', async () => {
    const { code, stdout } = await doctor(['--kubeconfig', kubeconfig, '--node-name', 'lab-node']);
    expect(code).toBeLessThanOrEqual(1);
    expect(stdout).toMatch(/Kubernetes {4}3 pod\(s\) on node lab-node/);
    expect(stdout).toMatch(
      /spec: {5}dnsPolicy None; nameservers 169\.254\.20\.10; searches .*; options ndots:2, single-request-reopen/,
    );
    expect(stdout).toMatch(
      /uses: {5}client: glibc.*169\.254\.20\.10 \(nodelocal\).*single-request-reopen/,
    );
    expect(stdout).toMatch(/uses: {5}not read \(no process of pod default\/dns-client-unread/);
  });

  it.each<[string, readonly string[], DoctorSystem['env'], RegExp]>([
    ['a kubeconfig without a node name', ['--kubeconfig', 'KUBECONFIG'], {}, /no node name/],
    [
      'a kubeconfig that does not exist',
      ['--kubeconfig', '/nonexistent/kubeconfig', '--node-name', 'n'],
      {},
      /ERR_KUBECONFIG.*cannot read kubeconfig/,
    ],
    ['an empty node name', ['--node-name', ''], {}, /--node-name needs a name/],
  ])('refuses %s with exit 2', async (_, argv, env, message) => {
    const { code, stderr } = await doctor(
      argv.map((a) => (a === 'KUBECONFIG' ? kubeconfig : a)),
      env,
    );
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });

  it('exits 3 when the API server cannot list the pods', async () => {
    const fault = api.failRequests({ status: 403, match: 'pods' });
    try {
      const { code, stderr } = await doctor([
        '--kubeconfig',
        kubeconfig,
        '--node-name',
        'lab-node',
      ]);
      expect(code).toBe(3);
      expect(stderr).toMatch(/could not list the pods of node lab-node/);
    } finally {
      fault.clear();
    }
  });

  it('validates a report with the Kubernetes section against the schema; a broken one fails', async () => {
    const report = await jsonReport(['--kubeconfig', kubeconfig, '--node-name', 'lab-node']);
    expect(report.kubernetes).toBeDefined();
    expect(validate(report)).toBe(true);
    expect(validate.errors ?? []).toEqual([]);
    const breakers: ((r: Broken) => void)[] = [
      (r) => delete r.kubernetes.pods[0].spec,
      (r) => (r.kubernetes.pods[0].read = 'yes'),
      (r) => (r.kubernetes.source = 'guess'),
      (r) => (r.kubernetes.pods[0].extra = 1),
      (r) => (r.kubernetes.pods[0].spec.dnsConfig = { options: [{ value: '2' }] }),
    ];
    for (const breakIt of breakers) {
      const broken = JSON.parse(JSON.stringify(report)) as Broken;
      breakIt(broken);
      expect(validate(broken)).toBe(false);
    }
  });
});
