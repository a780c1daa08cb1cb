import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHostFiles } from '../../src/diagnose/host-files.js';
import { diagnoseNode } from '../../src/diagnose/node-diagnoser.js';
import { createExecaCommandRunner } from '../../src/detect/capability-sources.js';
import { systemClock } from '../../src/shared/clock.js';
import { createLab, generatorPath, labAddresses, type Lab } from '../lab/index.js';
import { run } from '../lab/netns.js';
import {
  startAgentUnderTest,
  waitUntilReady,
  type AgentUnderTest,
} from '../support/agent-harness.js';
import {
  makeContainerRoot,
  type ContainerRoot,
  type RootKind,
} from '../support/container-roots.js';

const SEARCH = 'search default.svc.cluster.local svc.cluster.local cluster.local\n';
const PODS: readonly { kind: RootKind; resolvConf: string }[] = [
  { kind: 'musl', resolvConf: `${SEARCH}nameserver ${labAddresses.clusterDns}\noptions ndots:5\n` },
  {
    kind: 'glibc',
    resolvConf: `${SEARCH}nameserver ${labAddresses.clusterDns}\noptions ndots:5\n`,
  },
  {
    kind: 'glibc',
    resolvConf: `${SEARCH}nameserver ${labAddresses.clusterDns}\noptions ndots:5 single-request-reopen\n`,
  },
];

interface AdviceLine {
  event: { kind: string; sourceIp: string };
  diagnosis: {
    pod: {
      status: string;
      containers?: { libc: { kind: string }; resolvConf?: { options: Record<string, unknown> } }[];
    };
    node: { status: string };
  };
  remedies: { id: string; text: string }[];
  notes: string[];
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

// Three lab pods with real root file systems (musl, glibc, glibc with single-request-reopen),
// each a process chrooted into its root inside its pod namespace: the agent reads them through
// /proc/<pid>/root, exactly as on a node. The pods race through the node's SNAT until each
// one's insert failure is logged with its diagnosis.
describe('advice tailored to each pod, from its own root file system', () => {
  let lab: Lab;
  let agent: AgentUnderTest;
  const roots: ContainerRoot[] = [];

  beforeAll(async () => {
    lab = await createLab({ pods: 3 });
    for (const [index, spec] of PODS.entries()) {
      const root = makeContainerRoot(spec.kind, spec.resolvConf);
      roots.push(root);
      await buildWaiter(root, spec.kind);
      lab.spawn(lab.pods[index]!.netns, 'chroot', [root.path, '/bin/waiter']);
    }
    agent = await startAgentUnderTest(['--netns-pid', String(lab.node.pid)]);
    await waitUntilReady(agent.baseUrl);
  });

  afterAll(async () => {
    await agent?.stop();
    await lab?.destroy();
    for (const root of roots) root.remove();
  });

  const diagnosedLine = (ip: string): AdviceLine | undefined =>
    (agent.logs as unknown as AdviceLine[]).find(
      (line) =>
        line.event?.kind === 'insert_failed' &&
        line.event.sourceIp === ip &&
        line.diagnosis?.pod.status === 'diagnosed' &&
        line.diagnosis.node.status === 'diagnosed',
    );

  it("logs each pod's libc and only the remedies that apply to it", async () => {
    const binary = await generatorPath('snat-race', lab.buildDir);
    const [musl, glibc, reopen] = lab.pods;
    const deadline = Date.now() + 90_000;
    // Rounds until every pod has lost a race after its diagnosis was read (the pods are read
    // ahead, so this is normally the first race; first-advice.kernel.test.ts checks that).
    while (!lab.pods.every((pod) => diagnosedLine(pod.ip))) {
      if (Date.now() > deadline) {
        throw new Error(
          `no diagnosed insert failure within 90 s for ${lab.pods
            .filter((p) => !diagnosedLine(p.ip))
            .map((p) => p.ip)
            .join(', ')}`,
        );
      }
      for (const [a, b] of [
        [musl!, glibc!],
        [reopen!, glibc!],
      ]) {
        const ports = lab.reserveSourcePorts(200);
        // From the node namespace: the generator's threads enter the pods' namespaces, so no
        // process with the host's root joins a pod and blurs its diagnosis.
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
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }

    const muslLine = diagnosedLine(musl!.ip)!;
    expect(muslLine.diagnosis.pod.containers?.map((c) => c.libc.kind)).toEqual(['musl']);
    expect(muslLine.remedies.map((r) => r.id)).not.toContain('single-request-reopen');
    expect(muslLine.remedies.map((r) => r.id)).toEqual(
      expect.arrayContaining(['random-fully', 'tcp-resolver', 'nodelocal-dns']),
    );
    expect(muslLine.notes.join(' ')).toContain('musl always sends A and AAAA in parallel');

    const glibcLine = diagnosedLine(glibc!.ip)!;
    expect(glibcLine.diagnosis.pod.containers?.map((c) => c.libc.kind)).toEqual(['glibc']);
    const suggested = glibcLine.remedies.find((r) => r.id === 'single-request-reopen');
    expect(suggested?.text).toContain('dnsConfig: {options: [{name: single-request-reopen}]}');

    const reopenLine = diagnosedLine(reopen!.ip)!;
    expect(reopenLine.diagnosis.pod.containers?.[0]?.resolvConf?.options.singleRequestReopen).toBe(
      true,
    );
    expect(reopenLine.remedies.map((r) => r.id)).not.toContain('single-request-reopen');
    expect(reopenLine.notes.join(' ')).toContain('single-request-reopen is already set');
  });

  it('sees --random-fully on an iptables-nft rule and on a native nftables rule of the lab node', async () => {
    const node = lab.node.netns;
    const read = () =>
      diagnoseNode({
        files: createHostFiles(),
        procRoot: '/proc',
        netnsPid: lab.node.pid,
        run: createExecaCommandRunner(),
        commandPrefix: ['ip', 'netns', 'exec', node],
        nodeLocalDnsIps: [],
        clock: systemClock,
      });
    const before = await read();
    expect(before.natRules.map((r) => [r.backend, r.randomFully])).toEqual([
      ['iptables-nft', false],
    ]);

    await lab.exec(node, 'iptables', [
      '-t',
      'nat',
      '-I',
      'POSTROUTING',
      '-s',
      '10.244.0.0/24',
      '-o',
      'up0',
      '-j',
      'MASQUERADE',
      '--random-fully',
    ]);
    await lab.exec(node, 'nft', ['add', 'table', 'ip', 'lab-snat']);
    await lab.exec(node, 'nft', [
      'add chain ip lab-snat post { type nat hook postrouting priority 110; }',
    ]);
    await lab.exec(node, 'nft', [
      'add',
      'rule',
      'ip',
      'lab-snat',
      'post',
      'ip',
      'saddr',
      '10.244.0.0/24',
      'masquerade',
      'fully-random',
    ]);
    const after = await read();
    expect(after.natRules.map((r) => [r.backend, r.target, r.randomFully])).toEqual([
      ['iptables-nft', 'MASQUERADE', true],
      ['iptables-nft', 'MASQUERADE', false],
      ['nftables', 'MASQUERADE', true],
    ]);
    expect(after.natSources.find((s) => s.backend === 'nftables')?.read).toBe(true);
  });
});
