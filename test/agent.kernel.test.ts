import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { FlowTuple } from '../src/events/types.js';
import {
  createLab,
  dnatClashUntil,
  labAddresses,
  runDnsBlocked,
  runNoListener,
  snatRaceUntil,
  type Lab,
} from './lab/index.js';
import {
  expectCompilerPagedOut,
  expectCompilerStillOut,
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

// The real agent, in tracepoint mode, watching a real lab node namespace while real races
// and drops happen in it. The kernel's own counters, read independently with conntrack -S,
// are the oracle.
describe('the agent against a real kernel', () => {
  let lab: Lab;
  let agent: AgentUnderTest;

  beforeAll(async () => {
    lab = await createLab();
    agent = await startAgentUnderTest([
      '--probe-mode',
      'tracepoint',
      '--netns-pid',
      String(lab.node.pid),
      '--poll-interval',
      '0.5',
      '--dns-query-tracking',
      'on',
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
  const labPodIps = () => lab.pods.map((pod) => pod.ip);

  /** Waits until the agent's figure stops moving: probe events trail the kernel by a little. */
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

  // DNS drops are counted in the kernel and printed once a second: a test's deltas start once
  // the counts of the one before it have all arrived.
  beforeEach(async () => {
    const dnsDrops = async () => sumOf(await metrics(), 'conntrack_observer_dns_drops_total');
    let last = await dnsDrops();
    for (let still = 0; still < 3;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const next = await dnsDrops();
      still = next === last ? still + 1 : 0;
      last = next;
    }
  });

  it("pages bpftrace's compiler out once it has attached", async () => {
    await expectCompilerPagedOut(agent);
  });

  it('counts every SNAT insertion failure exactly once, per pod, with both tuples', async () => {
    const before = await metrics();
    const logsBefore = agent.logs.length;
    // Enough losses for "exactly once" to mean something; each one is checked below.
    const race = await snatRaceUntil(lab, { needed: 20 });
    const kernelFailures = race.kernel.insert_failed ?? 0;
    expect(kernelFailures).toBeGreaterThanOrEqual(20);

    const perPod = (samples: Sample[]) =>
      labPodIps().reduce(
        (sum, ip) =>
          sum + sumOf(samples, 'conntrack_observer_insert_failures_total', { source_ip: ip }),
        0,
      );
    const seen = await settled((s) => perPod(s) - perPod(before), kernelFailures);
    expect(seen).toBe(kernelFailures);

    const after = await metrics();
    expect(insertFailures(after) - insertFailures(before)).toBe(kernelFailures);
    expect(
      sumOf(after, 'conntrack_observer_insert_failures_total', { race: 'snat' }) -
        sumOf(before, 'conntrack_observer_insert_failures_total', { race: 'snat' }),
    ).toBe(kernelFailures);

    const events = agent.logs
      .slice(logsBefore)
      .map((record) => record.event as LoggedRace | undefined)
      .filter((event) => event?.kind === 'insert_failed');
    expect(events.length).toBeGreaterThan(0);
    for (const event of events) {
      expect(labPodIps()).toContain(event!.original.srcIp);
      expect(event!.original.dstIp).toBe(labAddresses.dnsBackends[0]);
      expect(event!.reply.dstIp).toBe(labAddresses.nodeUpstream);
      expect(event!.reply.srcIp).toBe(labAddresses.dnsBackends[0]);
      expect(event!.race).toBe('snat');
      expect(event!.netns).toBe(lab.node.netnsInode);
    }
  });

  it('shows resolved DNAT clashes in the kernel counters and reports no failure the kernel did not count', async () => {
    const before = await metrics();
    const clash = await dnatClashUntil(lab, { needed: 20 });
    expect(clash.kernel.clash_resolve ?? 0).toBeGreaterThanOrEqual(20);
    const resolvedDelta = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_kernel_conntrack_clash_resolve_total') -
      sumOf(before, 'conntrack_observer_kernel_conntrack_clash_resolve_total');
    expect(await settled(resolvedDelta, clash.kernel.clash_resolve ?? 0)).toBe(
      clash.kernel.clash_resolve,
    );
    const after = await metrics();
    // On this kernel the clash is resolved; a rare real drop (the reply tuple already taken
    // by an older flow) is the kernel's to count, and then the agent must count it too.
    expect(insertFailures(after) - insertFailures(before)).toBe(clash.kernel.insert_failed ?? 0);
    expect(
      sumOf(after, 'conntrack_observer_dns_drops_total', { reason: 'NETFILTER_DROP' }) -
        sumOf(before, 'conntrack_observer_dns_drops_total', { reason: 'NETFILTER_DROP' }),
    ).toBe(clash.kernel.insert_failed ?? 0);
  });

  it('counts firewall-dropped DNS queries by reason and direction, never as races', async () => {
    const before = await metrics();
    const blocked = await runDnsBlocked(lab, { queries: 40 });
    expect(blocked.firewallDrops).toBe(40);
    const drops = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_dns_drops_total', {
        reason: 'NETFILTER_DROP',
        direction: 'query',
      });
    expect(await settled((s) => drops(s) - drops(before), 40)).toBe(40);
    expect(insertFailures(await metrics())).toBe(insertFailures(before));
  });

  it('counts the queries the firewall dropped as unanswered for the pod, with the firewall as their cause', async () => {
    const pod = lab.pods[0]!.ip;
    const unanswered = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_dns_unanswered_queries_total', { source_ip: pod });
    // Queries of the tests before are reported up to 11 s after they were sent.
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    const before = await metrics();
    const blocked = await runDnsBlocked(lab, { queries: 12 });
    expect(blocked.firewallDrops).toBe(12);
    expect(await settled((s) => unanswered(s) - unanswered(before), 12)).toBe(12);
    // One more period: a count past the firewall's would show.
    await new Promise((resolve) => setTimeout(resolve, 6_500));
    const after = await metrics();
    expect(unanswered(after) - unanswered(before)).toBe(12);
    const firewall = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_dns_unanswered_queries_total', {
        source_ip: pod,
        cause: 'firewall',
      });
    expect(firewall(after) - firewall(before)).toBe(12);
  });

  it('counts DNS queries to an address where nothing listens as NO_SOCKET drops', async () => {
    const before = await metrics();
    const silent = await runNoListener(lab, { queries: 30 });
    expect(silent.upstreamUdpNoPorts).toBe(30);
    const drops = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_dns_drops_total', { reason: 'NO_SOCKET', direction: 'query' });
    expect(await settled((s) => drops(s) - drops(before), 30)).toBe(30);
  });

  it('restarts a killed bpftrace, counts the restart and serves /metrics throughout', async () => {
    const probe = 'tracepoint/dns-drops';
    const restarts = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_probe_restarts_total', { probe });
    const before = restarts(await metrics());
    // This agent's own probe (it runs in this process): not another one on the machine. The
    // probes of the mode share one bpftrace, whose program names each probe in a comment
    // (`probe tracepoint/dns-drops`); after a fallback, the script's path names it.
    const pid = execFileSync('pgrep', [
      '-P',
      String(process.pid),
      '-f',
      'probes?.tracepoint/dns-drops',
    ])
      .toString()
      .trim()
      .split('\n')[0]!;
    let scrapes = 0;
    let failedScrapes = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        scrapes += 1;
        const status = await fetch(`${agent.baseUrl}/metrics`).then(
          (r) => r.status,
          () => 0,
        );
        if (status !== 200) failedScrapes += 1;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    process.kill(Number(pid), 'SIGKILL');
    await waitFor(
      'the probe to restart',
      async () => (restarts(await metrics()) > before ? true : undefined),
      60_000,
    );
    await waitUntilReady(agent.baseUrl);
    polling = false;
    await poller;
    expect(restarts(await metrics())).toBe(before + 1);
    expect(sumOf(await metrics(), 'conntrack_observer_probe_up', { probe })).toBe(1);
    expect(scrapes).toBeGreaterThan(5);
    expect(failedScrapes).toBe(0);

    // And it still sees drops after the restart.
    const dropsBefore = sumOf(await metrics(), 'conntrack_observer_dns_drops_total', {
      reason: 'NO_SOCKET',
    });
    await runNoListener(lab, { queries: 5 });
    const drops = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_dns_drops_total', { reason: 'NO_SOCKET' }) - dropsBefore;
    expect(await settled(drops, 5)).toBe(5);
  });

  it('documents every metric it serves in docs/metrics.md', async () => {
    const reference = readFileSync(new URL('../docs/metrics.md', import.meta.url), 'utf8');
    const families = new Set(
      (await metrics())
        .map((sample) => sample.name.replace(/_(bucket|sum|count)$/, ''))
        .filter((name) => !/^conntrack_observer_(process|nodejs)_/.test(name)),
    );
    const undocumented = [...families].filter((name) => !reference.includes(`\`${name}\``));
    expect(families.size).toBeGreaterThan(20);
    expect(undocumented).toEqual([]);
  });

  it('has seen every kernel insert failure: nothing unexplained', async () => {
    const kernelCounted = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_kernel_conntrack_insert_failed_total');
    const unexplained = (s: Sample[]) =>
      sumOf(s, 'conntrack_observer_unexplained_insert_failures_total');
    const before = await metrics();
    const race = await snatRaceUntil(lab, { needed: 5 });
    const kernelFailures = race.kernel.insert_failed ?? 0;

    // Once the agent has polled the kernel after the race and its probe has caught up, a
    // shortfall can no longer be counted: what is unexplained by then stays so.
    expect(await settled((s) => kernelCounted(s) - kernelCounted(before), kernelFailures)).toBe(
      kernelFailures,
    );
    expect(await settled((s) => insertFailures(s) - insertFailures(before), kernelFailures)).toBe(
      kernelFailures,
    );
    expect(unexplained(await metrics()) - unexplained(before)).toBe(0);
  });

  it("counted all the above without bpftrace's compiler coming back into memory", async () => {
    // Two bpftraces: the first, and the one restarted above.
    await expectCompilerStillOut(agent, 2);
  });
});
