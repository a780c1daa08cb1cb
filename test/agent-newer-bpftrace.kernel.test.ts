import { createLab, labAddresses6, runNoListener, snatRaceUntil, type Lab } from './lab/index.js';
import { newerBpftrace } from './kernels/newer-bpftrace.js';
import {
  settledFigure,
  expectCompilerPagedOut,
  expectCompilerStillOut,
  startAgentUnderTest,
  waitUntilReady,
  type AgentUnderTest,
} from './support/agent-harness.js';
import { scrape, sumOf, type Sample } from './support/prometheus-text.js';

// The agent with Debian 13's bpftrace (0.23) instead of this machine's 0.17: the probes must
// compile with both (0.22 and later scope variables to their block and keep integer sizes),
// its readiness must come from where 0.23 says it attached (stdout), and its counts must
// equal the kernel's as they do with 0.17. The kernel's own counters are the oracle.
describe('the agent with a newer bpftrace (Debian 13) against a real kernel', () => {
  let lab: Lab;
  let agent: AgentUnderTest;

  beforeAll(async () => {
    const bpftrace = await newerBpftrace();
    lab = await createLab({ dualStack: true });
    agent = await startAgentUnderTest([
      '--bpftrace',
      bpftrace,
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

  const settled = (read: (samples: Sample[]) => number, expected: number): Promise<number> =>
    settledFigure(async () => read(await metrics()), expected);

  it("pages bpftrace's compiler out once it has attached", async () => {
    await expectCompilerPagedOut(agent);
  });

  it('runs every probe of the mode in one bpftrace and rejects none of its lines', async () => {
    const samples = await metrics();
    for (const probe of ['tracepoint/conntrack-insert-failed', 'tracepoint/dns-drops']) {
      expect(sumOf(samples, 'conntrack_observer_probe_up', { probe })).toBe(1);
    }
    expect(sumOf(samples, 'conntrack_observer_probe_lines_rejected_total')).toBe(0);
    expect(agent.logs.filter((record) => record['msg'] === 'probe line rejected')).toEqual([]);
  });

  it('counts every SNAT insertion failure exactly once', async () => {
    const failures = (s: Sample[]) => sumOf(s, 'conntrack_observer_insert_failures_total');
    const before = failures(await metrics());
    const race = await snatRaceUntil(lab, { needed: 20 });
    const kernelFailures = race.kernel.insert_failed ?? 0;
    expect(kernelFailures).toBeGreaterThanOrEqual(20);
    expect(await settled((s) => failures(s) - before, kernelFailures)).toBe(kernelFailures);
  });

  it('counts DNS queries to an address where nothing listens as NO_SOCKET drops', async () => {
    const drops = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_dns_drops_total', { reason: 'NO_SOCKET', direction: 'query' });
    const before = drops(await metrics());
    const silent = await runNoListener(lab, { queries: 30 });
    expect(silent.upstreamUdpNoPorts).toBe(30);
    expect(await settled((s) => drops(s) - before, 30)).toBe(30);
  });

  it('counts IPv6 queries to an address where nothing listens on the address that reached it', async () => {
    // IPv6 keys hold each address as two u64 halves, which 0.17 prints signed: whichever way
    // this bpftrace prints them, the address must come back whole.
    const byClient = {
      reason: 'NO_SOCKET',
      direction: 'query',
      source_ip: labAddresses6.nodeUpstream,
    };
    const drops = (s: Sample[]) => sumOf(s, 'conntrack_observer_dns_drops_total', byClient);
    const before = drops(await metrics());
    const silent = await runNoListener(lab, { queries: 11, family: 'ipv6' });
    expect(silent.upstreamUdpNoPorts).toBe(11);
    expect(await settled((s) => drops(s) - before, 11)).toBe(11);
  });

  it("counted all the above without bpftrace's compiler coming back into memory", async () => {
    await expectCompilerStillOut(agent);
  });
});
