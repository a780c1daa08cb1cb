import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  resolveKubernetesConnection,
  type KubernetesConnection,
} from '../../src/attribute/kubernetes/connection.js';
import { createLab, generatorPath, labAddresses, type Lab } from '../lab/index.js';
import { run } from '../lab/netns.js';
import {
  startAgentUnderTest,
  waitFor,
  waitUntilReady,
  type AgentUnderTest,
} from '../support/agent-harness.js';
import {
  makeContainerRoot,
  type ContainerRoot,
  type RootKind,
} from '../support/container-roots.js';
import { startFakeApiServer, type FakeApiServer } from '../support/fake-apiserver.js';
import { LAB_NODE_NAME, labCluster } from '../support/lab-cluster.js';

const RESOLV = `search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${labAddresses.clusterDns}\noptions ndots:5\n`;
const KINDS: readonly RootKind[] = ['musl', 'glibc'];

interface AdviceLine {
  event?: { kind: string; sourceIp: string };
  diagnosis?: { pod: { status: string; containers?: { libc: { kind: string } }[] } };
  remedies?: { id: string }[];
}

/** A process that only waits, linked against the root's own C library. */
async function buildWaiter(root: ContainerRoot, kind: RootKind): Promise<void> {
  const source = join(root.path, 'waiter.c');
  writeFileSync(source, '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n');
  await run(kind === 'musl' ? 'musl-gcc' : 'gcc', [
    '-O2',
    '-o',
    join(root.path, 'bin/waiter'),
    source,
  ]);
}

// A musl pod and a glibc pod racing through the node's SNAT from the first packet after the
// agent is ready: the first log line and the first Event of each already carry its own advice,
// because each pod was diagnosed when it was found (a new network namespace standalone, the
// informer's list with Kubernetes), not at its first race.
describe('the first advice of each pod is tailored to it', () => {
  let lab: Lab;
  const roots: ContainerRoot[] = [];

  beforeAll(async () => {
    lab = await createLab({ pods: 2 });
    for (const [index, kind] of KINDS.entries()) {
      const root = makeContainerRoot(kind, RESOLV);
      roots.push(root);
      await buildWaiter(root, kind);
      lab.spawn(lab.pods[index]!.netns, 'chroot', [root.path, '/bin/waiter']);
    }
  });

  afterAll(async () => {
    await lab?.destroy();
    for (const root of roots) root.remove();
  });

  const insertLines = (agent: AgentUnderTest, ip: string): AdviceLine[] =>
    (agent.logs as AdviceLine[]).filter(
      (line) => line.event?.kind === 'insert_failed' && line.event.sourceIp === ip,
    );

  /** Races the two pods until each has lost at least once, by the agent's log. */
  async function raceUntilEachLost(agent: AgentUnderTest): Promise<void> {
    const binary = await generatorPath('snat-race', lab.buildDir);
    const [a, b] = lab.pods;
    const deadline = Date.now() + 90_000;
    while (!lab.pods.every((pod) => insertLines(agent, pod.ip).length > 0)) {
      if (Date.now() > deadline) throw new Error('a pod lost no race within 90 s');
      const ports = lab.reserveSourcePorts(200);
      await lab.exec(lab.node.netns, binary, [
        a!.netns,
        b!.netns,
        labAddresses.dnsBackends[0],
        '53',
        String(ports.base),
        String(ports.span),
        '200',
        '0',
      ]);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  function expectFirstLinesTailored(agent: AgentUnderTest): void {
    const [musl, glibc] = lab.pods.map((pod) => insertLines(agent, pod.ip)[0]!);
    expect(musl!.diagnosis?.pod.status).toBe('diagnosed');
    expect(musl!.diagnosis?.pod.containers?.map((c) => c.libc.kind)).toEqual(['musl']);
    expect(musl!.remedies?.map((r) => r.id)).not.toContain('single-request-reopen');
    expect(glibc!.diagnosis?.pod.status).toBe('diagnosed');
    expect(glibc!.diagnosis?.pod.containers?.map((c) => c.libc.kind)).toEqual(['glibc']);
    expect(glibc!.remedies?.map((r) => r.id)).toContain('single-request-reopen');
  }

  it('standalone: the first log line of each pod', async () => {
    const agent = await startAgentUnderTest(['--netns-pid', String(lab.node.pid)]);
    try {
      await waitUntilReady(agent.baseUrl);
      await raceUntilEachLost(agent);
      expectFirstLinesTailored(agent);
    } finally {
      await agent.stop();
    }
  });

  describe('with Kubernetes', () => {
    let fake: FakeApiServer;
    let agent: AgentUnderTest;

    beforeAll(async () => {
      fake = await startFakeApiServer(labCluster(lab).objects);
      const connection = resolveKubernetesConnection({
        kubeconfigFlag: await fake.kubeConfigFile(),
      });
      if (!connection || connection instanceof Error) throw new Error(`kubeconfig: ${connection}`);
      agent = await startAgentUnderTest(
        ['--netns-pid', String(lab.node.pid), '--node-name', LAB_NODE_NAME],
        connection satisfies KubernetesConnection,
      );
      await waitUntilReady(agent.baseUrl);
    });

    afterAll(async () => {
      await agent?.stop();
      await fake?.close();
    });

    it('the first log line and the first Event of each pod', async () => {
      await raceUntilEachLost(agent);
      expectFirstLinesTailored(agent);
      const pods = labCluster(lab).pods;
      const firstEvent = async (uid: string) =>
        waitFor(`the first Event of pod ${uid}`, () =>
          fake
            .eventWrites()
            .filter((write) => write.method === 'POST')
            .map((write) => write.body as { involvedObject?: { uid?: string }; message?: string })
            .find((body) => body.involvedObject?.uid === uid),
        );
      const muslEvent = await firstEvent(pods[0]!.uid);
      expect(muslEvent.message).toContain('musl always sends A and AAAA in parallel');
      expect(muslEvent.message).not.toContain('dnsConfig option single-request-reopen');
      const glibcEvent = await firstEvent(pods[1]!.uid);
      expect(glibcEvent.message).toContain('single-request-reopen for');
      expect(glibcEvent.message).not.toContain('musl');
    });
  });
});
