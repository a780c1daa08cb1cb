import type { FlowTuple } from '../src/events/types.js';
import { createLab, labAddresses6, snatRaceUntil, type Lab } from './lab/index.js';
import {
  startAgentUnderTest,
  waitFor,
  waitUntilReady,
  type AgentUnderTest,
} from './support/agent-harness.js';
import { scrape, sumOf, type Sample } from './support/prometheus-text.js';

interface LoggedRace {
  kind: string;
  race: string;
  netns: number;
  original: FlowTuple;
  reply: FlowTuple;
}

// The real agent, in tracepoint mode (standalone: no Kubernetes), watching a dual-stack lab
// node while pods race over IPv6 through the node's ip6tables MASQUERADE. The kernel's own
// counters, read with conntrack -S, are the oracle.
describe('the agent against a real kernel, IPv6 flows', () => {
  let lab: Lab;
  let agent: AgentUnderTest;

  beforeAll(async () => {
    lab = await createLab({ dualStack: true });
    agent = await startAgentUnderTest([
      '--probe-mode',
      'tracepoint',
      '--netns-pid',
      String(lab.node.pid),
      '--poll-interval',
      '0.5',
    ]);
    await waitUntilReady(agent.baseUrl);
  });

  afterAll(async () => {
    await agent?.stop();
    await lab?.destroy();
  });

  const metrics = (): Promise<Sample[]> => scrape(agent.baseUrl);
  const insertFailures = (samples: Sample[]) =>
    sumOf(samples, 'conntrack_observer_insert_failures_total');
  const kernelCounted = (samples: Sample[]) =>
    sumOf(samples, 'conntrack_observer_kernel_conntrack_insert_failed_total');
  const unexplained = (samples: Sample[]) =>
    sumOf(samples, 'conntrack_observer_unexplained_insert_failures_total');
  const podIps6 = () => lab.pods.map((pod) => pod.ip6 ?? '');

  /** Waits until the agent's figure reaches `expected`; the last one read if it never does. */
  async function settled(read: (samples: Sample[]) => number, expected: number): Promise<number> {
    let last = Number.NaN;
    try {
      return await waitFor(
        `agent count ${expected}`,
        async () => {
          last = read(await metrics());
          return last === expected ? last : undefined;
        },
        15_000,
      );
    } catch {
      return last;
    }
  }

  it('counts every IPv6 SNAT insert failure exactly, per IPv6 pod, and leaves nothing unexplained', async () => {
    const before = await metrics();
    const logsBefore = agent.logs.length;
    const race = await snatRaceUntil(lab, { needed: 20, destination: labAddresses6.upstreamHost });
    const kernelFailures = race.kernel.insert_failed ?? 0;
    expect(kernelFailures).toBeGreaterThanOrEqual(20);

    // Attributed to the IPv6 pods by their canonical address, in the node's namespace.
    const perPod = (samples: Sample[]) =>
      podIps6().reduce(
        (sum, ip) =>
          sum + sumOf(samples, 'conntrack_observer_insert_failures_total', { source_ip: ip }),
        0,
      );
    expect(await settled((s) => perPod(s) - perPod(before), kernelFailures)).toBe(kernelFailures);
    expect(await settled((s) => kernelCounted(s) - kernelCounted(before), kernelFailures)).toBe(
      kernelFailures,
    );
    const after = await metrics();
    expect(insertFailures(after) - insertFailures(before)).toBe(kernelFailures);
    expect(
      sumOf(after, 'conntrack_observer_insert_failures_total', { race: 'snat' }) -
        sumOf(before, 'conntrack_observer_insert_failures_total', { race: 'snat' }),
    ).toBe(kernelFailures);
    expect(unexplained(after) - unexplained(before)).toBe(0);

    const events = agent.logs
      .slice(logsBefore)
      .map((record) => record.event as LoggedRace | undefined)
      .filter((event) => event?.kind === 'insert_failed');
    expect(events.length).toBeGreaterThan(0);
    for (const event of events) {
      expect(podIps6()).toContain(event!.original.srcIp);
      expect(event!.original.dstIp).toBe(labAddresses6.upstreamHost);
      expect(event!.reply.srcIp).toBe(labAddresses6.upstreamHost);
      expect(event!.reply.dstIp).toBe(labAddresses6.nodeUpstream);
      expect(event!.race).toBe('snat');
      expect(event!.netns).toBe(lab.node.netnsInode);
    }
  });
});
