import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { CommandRunner } from '../../src/detect/capabilities.js';
import { DiagnosisStage } from '../../src/diagnose/diagnosis-stage.js';
import { createHostFiles } from '../../src/diagnose/host-files.js';
import { NetnsDiscovery, type DiscoveredNamespace } from '../../src/diagnose/netns-discovery.js';
import type { PodDiagnosisRequest } from '../../src/diagnose/pod-diagnoser.js';
import { PodDiagnosisCache } from '../../src/diagnose/pod-diagnosis-cache.js';
import type { PodDiagnosis } from '../../src/events/diagnosis.js';
import { kubernetesParts, type KubernetesParts } from '../../src/kubernetes-parts.js';
import { systemClock } from '../../src/shared/clock.js';
import { unrefTimers } from '../../src/shared/timers.js';
import { LifecycleStack } from '../../src/shared/lifecycle.js';
import {
  fibTrieOf,
  makeContainerRoot,
  makeProcTree,
  type ContainerRoot,
} from '../support/container-roots.js';
import { eventually } from '../support/eventually.js';
import { startFakeApiServer, type FakeApiServer } from '../support/fake-apiserver.js';
import { stored } from '../support/k8s-fixtures.js';
import { ManualClock } from '../support/manual-clock.js';
import { ManualDelay } from '../support/manual-delay.js';

const files = createHostFiles();
const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((remove) => remove()));

const RESOLV = 'nameserver 10.96.0.10\noptions ndots:5\n';
const POD_UID = '3f1c2a9e-8b7d-4c6e-a5f4-1e2d3c4b5a61';
const CONTAINER_ID = '9a0d8c3b1f6e4a7d2c5b8e1f0a3d6c9b2e5f8a1d4c7b0e3f6a9d2c5b8e1f4a7d';

function root(kind: 'musl' | 'glibc'): ContainerRoot {
  const made = makeContainerRoot(kind, RESOLV);
  cleanup.push(made.remove);
  return made;
}

function procTree(...args: Parameters<typeof makeProcTree>): string {
  const proc = makeProcTree(...args);
  cleanup.push(() => rmSync(proc, { recursive: true, force: true }));
  return proc;
}

/** The node's tools are absent: the node is read at once, as far as files go. */
const noTools: CommandRunner = async () => ({
  exitCode: undefined,
  stdout: '',
  stderr: '',
  timedOut: false,
  startError: 'not installed here',
  durationMs: 0,
});

function stage(proc: string, extra: Partial<ConstructorParameters<typeof DiagnosisStage>[0]>) {
  return new DiagnosisStage({
    files,
    procRoot: proc,
    netnsPid: 'self',
    run: noTools,
    commandPrefix: [],
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    nodeLocalDnsIps: [],
    ...extra,
  });
}

describe('standalone: pods found as network namespaces', () => {
  it('reports each new namespace once, with its addresses, and one that appears later at the next scan', async () => {
    const proc = procTree([
      { pid: 100, root: '/', netnsInode: 501, addresses: ['10.244.0.2'] },
      { pid: 101, root: '/', netnsInode: 501, addresses: ['10.244.0.2'] },
      { pid: 200, root: '/', netnsInode: 502, addresses: ['10.244.0.3'] },
      // A namespace with no address: nothing it sends is attributable.
      { pid: 300, root: '/', netnsInode: 503, addresses: [] },
    ]);
    const found: DiscoveredNamespace[] = [];
    const delay = new ManualDelay();
    const discovery = new NetnsDiscovery({
      files,
      procRoot: proc,
      delay: delay.delay,
      intervalMs: 30_000,
      maxNamespaces: 100,
      onNamespace: (namespace) => found.push(namespace),
    });
    discovery.start();
    await discovery.scanned();
    expect(found).toEqual([
      { inode: 501, pid: 100, addresses: ['10.244.0.2'] },
      { inode: 502, pid: 200, addresses: ['10.244.0.3'] },
    ]);
    expect(discovery.waitingFor()).toBeUndefined();

    // A new pod between two scans.
    const dir = join(proc, '400');
    mkdirSync(join(dir, 'ns'), { recursive: true });
    mkdirSync(join(dir, 'net'), { recursive: true });
    symlinkSync('net:[504]', join(dir, 'ns/net'));
    writeFileSync(join(dir, 'net/fib_trie'), fibTrieOf(['10.244.0.4']));
    await delay.elapse(30_000);
    await eventually('the second scan', () => found.length === 3);
    await delay.elapse(30_000);
    await eventually('the third scan', () => delay.requested.length === 3);
    expect(found.map((namespace) => namespace.inode)).toEqual([501, 502, 504]);
    await discovery.stop();
  });

  it('diagnoses every pod at start, before any event: the first lookup is tailored, one read per namespace', async () => {
    const musl = root('musl');
    const glibc = root('glibc');
    const proc = procTree([
      { pid: 100, root: musl.path, netnsInode: 501, comm: 'app', addresses: ['10.244.0.2'] },
      { pid: 200, root: glibc.path, netnsInode: 502, comm: 'app', addresses: ['10.244.0.3'] },
      { pid: 201, root: glibc.path, netnsInode: 502, comm: 'app', addresses: ['10.244.0.3'] },
    ]);
    const diagnoses = stage(proc, { discoverNamespaces: { delay: new ManualDelay().delay } });
    await diagnoses.start();
    expect(diagnoses.waitingFor()).toMatch(/^diagnosis: reading /);
    await eventually('the first scan and reads', () => diagnoses.waitingFor() === undefined);
    await diagnoses.idle();

    const lookup = (sourceIp: string) =>
      diagnoses.diagnose({ attribution: { sourceIp, netnsInode: 0 } }).pod;
    const first = lookup('10.244.0.2');
    expect(first).toMatchObject({ status: 'diagnosed', foundBy: 'netns', netnsInode: 501 });
    expect((first as PodDiagnosis).containers.map((c) => c.libc.kind)).toEqual(['musl']);
    expect((lookup('10.244.0.3') as PodDiagnosis).containers.map((c) => c.libc.kind)).toEqual([
      'glibc',
    ]);
    expect(
      diagnoses.whenDiagnosed({ attribution: { sourceIp: '10.244.0.2', netnsInode: 0 } }),
    ).toBeUndefined();
    await diagnoses.stop();
  });

  it('reads a namespace found ahead once, and an event that finds it still in the queue goes first', async () => {
    const reads: string[] = [];
    const release: (() => void)[] = [];
    const cache = new PodDiagnosisCache({
      clock: new ManualClock(),
      diagnose: (request: PodDiagnosisRequest) => {
        reads.push(request.target.by === 'netns' ? `netns:${request.target.inode}` : 'uid');
        return new Promise((resolve) =>
          release.push(() =>
            resolve({ status: 'diagnosed', foundBy: 'netns', containers: [], diagnosedAtMs: 0 }),
          ),
        );
      },
      namespaceOfIp: async () => {
        throw new Error('a namespace found ahead needs no search by address');
      },
      maxEntries: 100,
      refreshMs: 60_000,
      retryMs: 1_000,
      maxPending: 100,
      concurrency: 1,
    });
    cache.ahead({ sourceIp: '10.244.0.2', netnsInode: 501 }, 501);
    cache.ahead({ sourceIp: '10.244.0.3', netnsInode: 502 }, 502);
    cache.ahead({ sourceIp: '10.244.0.4', netnsInode: 503 }, 503);
    // An event of the last pod while the first is being read: it is read next.
    expect(cache.lookup({ sourceIp: '10.244.0.4', netnsInode: 0 })).toMatchObject({
      status: 'unknown',
    });
    const settled = cache.settled({ sourceIp: '10.244.0.4', netnsInode: 0 });
    expect(settled).toBeDefined();
    await eventually('the first read', () => release.length === 1);
    release.shift()?.();
    await eventually('the second read', () => release.length === 1);
    expect(reads).toEqual(['netns:501', 'netns:503']);
    release.shift()?.();
    await settled;
    expect(cache.lookup({ sourceIp: '10.244.0.4', netnsInode: 0 })).toMatchObject({
      status: 'diagnosed',
    });
    await eventually('the third read', () => release.length === 1);
    release.shift()?.();
    await cache.idle();
    // Found again by the next scan: nothing to read twice.
    cache.ahead({ sourceIp: '10.244.0.2', netnsInode: 501 }, 501);
    await cache.idle();
    expect(reads).toEqual(['netns:501', 'netns:503', 'netns:502']);
  });
});

describe('Kubernetes: pods diagnosed from the informer', () => {
  let fake: FakeApiServer | undefined;
  let stack: LifecycleStack | undefined;
  afterEach(async () => {
    await stack?.stop();
    await fake?.close();
  });

  it('diagnoses a pod the informer lists before any event of it, and again when it changes', async () => {
    const musl = root('musl');
    const proc = procTree([
      {
        pid: 100,
        root: musl.path,
        netnsInode: 501,
        comm: 'app',
        cgroup: `0::/kubepods.slice/kubepods-pod${POD_UID.replaceAll('-', '_')}.slice/cri-containerd-${CONTAINER_ID}.scope\n`,
      },
    ]);
    fake = await startFakeApiServer({
      pods: [stored('pod-dns-client-a')],
      services: [stored('service-kube-dns')],
      endpointSlices: [stored('endpointslice-kube-dns')],
      nodes: [stored('node-lab-node')],
    });
    const reads: number[] = [];
    // eslint-disable-next-line prefer-const -- bound after the parts that call it
    let diagnoses: DiagnosisStage;
    const parts: KubernetesParts = kubernetesParts({
      kubeConfig: fake.kubeConfig(),
      nodeName: 'lab-node',
      registry: new Registry(),
      logger: pino({ level: 'silent' }),
      clock: systemClock,
      delay: unrefTimers.delay,
      forgetPod: () => undefined,
      onPodFacts: (facts) => {
        reads.push(reads.length);
        diagnoses.podSeen(facts);
      },
    });
    diagnoses = stage(proc, {
      podFacts: (uid) => parts.podFacts.get(uid),
      clusterDnsIps: () => parts.cluster.kubeDnsIps(),
    });
    stack = new LifecycleStack();
    await stack.push(diagnoses);
    await stack.push(parts.cluster);
    await parts.cluster.whenSynced();
    await diagnoses.idle();

    const attribution = {
      sourceIp: '10.244.0.2',
      netnsInode: 501,
      pod: {
        namespace: 'default',
        name: 'dns-client-7c9f8d6b54-4xq2m',
        uid: POD_UID,
        hostNetwork: false,
      },
    };
    const diagnosis = diagnoses.diagnose({ attribution });
    const first = diagnosis.pod as PodDiagnosis;
    expect(first).toMatchObject({ status: 'diagnosed', foundBy: 'pod-uid' });
    expect(first.containers).toMatchObject([{ name: 'client', libc: { kind: 'musl' } }]);
    expect(diagnoses.whenDiagnosed({ attribution, diagnosis })).toBeUndefined();

    // The pod changes (a new resourceVersion): read again without waiting for an event.
    const pod = fake.get('pods', 'default', 'dns-client-7c9f8d6b54-4xq2m')!;
    pod.metadata.labels = { ...pod.metadata.labels, changed: 'yes' };
    fake.apply('pods', pod);
    await eventually('the change seen', () => reads.length === 2);
    await diagnoses.idle();
    const second = diagnoses.diagnose({ attribution }).pod as PodDiagnosis;
    expect(second.diagnosedAtMs).toBeGreaterThanOrEqual(first.diagnosedAtMs);
    expect(second).not.toBe(first);
  });
});
