import type { FlowTuple } from '../src/events/types.js';
import { canonicalIp } from '../src/shared/canonical-ip.js';
import {
  createLab,
  labAddresses6,
  runDnsBlocked,
  runNoListener,
  seed004,
  sendQueries,
  snatRaceUntil,
  startSeed004,
  type Lab,
  type Seed004Run,
} from './lab/index.js';
import {
  startAgentUnderTest,
  waitFor,
  waitUntilReady,
  type AgentUnderTest,
} from './support/agent-harness.js';
import {
  startFakeApiServer,
  type FakeApiServer,
  type K8sObject,
} from './support/fake-apiserver.js';
import { dnsBackendDropRule, withRules } from './lab/rule-counters.js';
import { startAgentOn } from './support/lab-agent.js';
import { labCluster, type LabCluster } from './support/lab-cluster.js';
import { scrape, sumOf, type Sample } from './support/prometheus-text.js';

interface LoggedRace {
  kind: string;
  race: string;
  netns: number;
  original: FlowTuple;
  reply: FlowTuple;
}

interface LoggedDnsDrop {
  kind: string;
  reason: string;
  direction: string;
  netns: number;
  sourceIp: string;
  tuple: FlowTuple;
}

// The real agent, in tracepoint mode (standalone: no Kubernetes), watching a dual-stack lab
// node while pods race over IPv6 through the node's ip6tables MASQUERADE. The kernel's own
// counters, read with conntrack -S, are the oracle; for DNS drops, the node's ip6tables rule
// counter and the receiving namespace's Udp6NoPorts.
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

  const dnsDrops = (samples: Sample[], where: Record<string, string> = {}) =>
    sumOf(samples, 'conntrack_observer_dns_drops_total', where);

  /**
   * DNS drops are counted in the kernel and read once a second: waits (bounded) until the
   * agent's total has not moved for three readings, so that a test's deltas hold only its own.
   */
  async function dnsDropsQuiet(): Promise<void> {
    let last = dnsDrops(await metrics());
    let still = 0;
    await waitFor(
      'DNS drop counts to stop moving',
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        const next = dnsDrops(await metrics());
        still = next === last ? still + 1 : 0;
        last = next;
        return still >= 3 ? true : undefined;
      },
      30_000,
    );
  }

  beforeEach(dnsDropsQuiet);

  const loggedDnsDrops = (from: number) =>
    agent.logs
      .slice(from)
      .map((record) => record.event as LoggedDnsDrop | undefined)
      .filter((event): event is LoggedDnsDrop => event?.kind === 'dns_drop');

  it('counts each IPv6 query the node firewall drops as NETFILTER_DROP, exactly as the ip6tables rule, on the IPv6 pod', async () => {
    const pod6 = lab.pods[0]!.ip6!;
    expect(canonicalIp(pod6)).toBe(pod6);
    const byPod = { reason: 'NETFILTER_DROP', direction: 'query', source_ip: pod6 };
    const before = await metrics();
    const logsBefore = agent.logs.length;
    const blocked = await runDnsBlocked(lab, { queries: 17, from: 'pod', family: 'ipv6' });
    // The oracle: what the rule's own packet counter saw.
    expect(blocked.firewallDrops).toBe(17);
    expect(blocked.answered).toBe(0);

    const delta = (s: Sample[]) => dnsDrops(s, byPod) - dnsDrops(before, byPod);
    expect(await settled(delta, blocked.firewallDrops)).toBe(blocked.firewallDrops);
    // Once every count has arrived, none more: nothing counted twice or under another cause.
    await dnsDropsQuiet();
    const after = await metrics();
    expect(delta(after)).toBe(blocked.firewallDrops);
    expect(dnsDrops(after) - dnsDrops(before)).toBe(blocked.firewallDrops);
    // Standalone: blamed on the address alone, no pod or namespace to name.
    expect(dnsDrops(after, { ...byPod, namespace: '', pod: '' })).toBe(dnsDrops(after, byPod));
    expect(insertFailures(after) - insertFailures(before)).toBe(0);

    // The probe's examples, logged with the same attribution, in the node's namespace.
    const examples = loggedDnsDrops(logsBefore);
    expect(examples.length).toBeGreaterThan(0);
    for (const example of examples) {
      expect(example).toMatchObject({
        reason: 'NETFILTER_DROP',
        direction: 'query',
        netns: lab.node.netnsInode,
        sourceIp: pod6,
      });
      expect(example.tuple).toMatchObject({ srcIp: pod6, dstIp: labAddresses6.blockedDns });
    }
  });

  it('counts each IPv6 query to an address with no listener as NO_SOCKET, exactly as Udp6NoPorts, on the address that reached it', async () => {
    // Dropped in the upstream namespace, after the node masqueraded the query: the client
    // there is the node's upstream address, not the pod.
    const client = labAddresses6.nodeUpstream;
    expect(canonicalIp(client)).toBe(client);
    const byClient = { reason: 'NO_SOCKET', direction: 'query', source_ip: client };
    const before = await metrics();
    const logsBefore = agent.logs.length;
    const silent = await runNoListener(lab, { queries: 11, family: 'ipv6' });
    expect(silent.upstreamUdpNoPorts).toBe(11);
    expect(silent.answered).toBe(0);

    const delta = (s: Sample[]) => dnsDrops(s, byClient) - dnsDrops(before, byClient);
    expect(await settled(delta, silent.upstreamUdpNoPorts)).toBe(silent.upstreamUdpNoPorts);
    await dnsDropsQuiet();
    const after = await metrics();
    expect(delta(after)).toBe(silent.upstreamUdpNoPorts);
    expect(dnsDrops(after) - dnsDrops(before)).toBe(silent.upstreamUdpNoPorts);
    expect(insertFailures(after) - insertFailures(before)).toBe(0);

    const examples = loggedDnsDrops(logsBefore);
    expect(examples.length).toBeGreaterThan(0);
    for (const example of examples) {
      expect(example).toMatchObject({
        reason: 'NO_SOCKET',
        direction: 'query',
        netns: lab.upstream.netnsInode,
        sourceIp: client,
      });
      expect(example.tuple).toMatchObject({ srcIp: client, dstIp: labAddresses6.silentDns });
    }
  });

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

// The same firewall drop with the Kubernetes API faked at the HTTP level: the lab's pods have
// both addresses in status.podIPs, so the agent must find the pod by its IPv6 address.
describe('the agent with Kubernetes against a real kernel, IPv6 flows', () => {
  let lab: Lab;
  let cluster: LabCluster;
  let fake: FakeApiServer;
  let agent: AgentUnderTest;

  beforeAll(async () => {
    lab = await createLab({ dualStack: true });
    cluster = labCluster(lab);
    fake = await startFakeApiServer(cluster.objects);
    agent = await startAgentOn(lab, fake, ['--dns-query-tracking', 'on']);
  });

  afterAll(async () => {
    await agent?.stop();
    await fake?.close();
    await lab?.destroy();
  });

  it('puts a DNSQueryDropped Event naming the IPv6 address on the pod whose IPv6 query the firewall dropped, counted as the rule', async () => {
    const pod = cluster.pods[0]!;
    const pod6 = pod.ip6!;
    expect(pod6).toBe(canonicalIp(pod6));
    const firewalled = () =>
      fake
        .events()
        .filter(
          (event) =>
            event.reason === 'DNSQueryDropped' &&
            event.involvedObject.uid === pod.uid &&
            String(event.message).includes('(reason NETFILTER_DROP'),
        );
    const countOf = (events: K8sObject[]) =>
      events.reduce((sum, event) => sum + Number(event.count), 0);
    const eventsBefore = countOf(firewalled());
    const labels = {
      reason: 'NETFILTER_DROP',
      direction: 'query',
      source_ip: pod6,
      namespace: pod.namespace,
      pod: pod.name,
    };
    const drops = (samples: Sample[]) =>
      sumOf(samples, 'conntrack_observer_dns_drops_total', labels);
    const before = await scrape(agent.baseUrl);

    const blocked = await runDnsBlocked(lab, { queries: 15, from: 'pod', family: 'ipv6' });
    expect(blocked.firewallDrops).toBe(15);

    const counted = await waitFor(
      `${blocked.firewallDrops} drops on ${pod.name}`,
      async () => {
        const seen = drops(await scrape(agent.baseUrl)) - drops(before);
        return seen >= blocked.firewallDrops ? seen : undefined;
      },
      15_000,
    ).catch(async () => drops(await scrape(agent.baseUrl)) - drops(before));
    expect(counted).toBe(blocked.firewallDrops);

    // The first drop is posted at once, the rest patched onto the same Event.
    const posted = await waitFor(
      `the Event's count to reach ${blocked.firewallDrops}`,
      async () => {
        const seen = countOf(firewalled()) - eventsBefore;
        return seen >= blocked.firewallDrops ? seen : undefined;
      },
      60_000,
    ).catch(() => countOf(firewalled()) - eventsBefore);
    expect(posted).toBe(blocked.firewallDrops);
    const events = firewalled();
    expect(events).toHaveLength(1);
    const [event] = events;
    expect(event!.type).toBe('Warning');
    expect(event!.involvedObject).toMatchObject({
      kind: 'Pod',
      namespace: pod.namespace,
      name: pod.name,
    });
    // Counted in the kernel by address: the client alone, the server in brackets with its port.
    expect(String(event!.message)).toMatch(
      new RegExp(`^UDP query ${pod6} → \\[${labAddresses6.blockedDns}\\]:53`),
    );
    // Nothing of this on the other pod, which sent nothing.
    expect(
      fake
        .events()
        .filter(
          (other) =>
            other.reason === 'DNSQueryDropped' && other.involvedObject.uid === cluster.pods[1]!.uid,
        ),
    ).toEqual([]);
  });
  it('counts the IPv6 queries to the IPv6 ClusterIP that an ip6tables rule dropped at one backend as unanswered on the pod, with the firewall as their cause, to the kube-dns Service, and the rest as answered', async () => {
    const pod = cluster.pods[0]!;
    const labPod = lab.pods[0]!;
    const pod6 = pod.ip6!;
    const rule = dnsBackendDropRule(lab, {
      client: pod6,
      backend: labAddresses6.dnsBackends[0],
      family: 'ipv6',
      comment: 'cro-lab: firewalled IPv6 DNS backend',
    });
    // Asked of the ClusterIP: the earlier test's queries to the blocked address, reported
    // unanswered up to two periods later, are not the Service's.
    const ofPod = { namespace: pod.namespace, pod: pod.name, service: 'kube-system/kube-dns' };
    const unanswered = (samples: Sample[], labels: Record<string, string> = {}) =>
      sumOf(samples, 'conntrack_observer_dns_unanswered_queries_total', { ...ofPod, ...labels });
    const answered = (samples: Sample[]) =>
      sumOf(samples, 'conntrack_observer_dns_queries_total', {
        namespace: pod.namespace,
        pod: pod.name,
        source_ip: pod6,
      });
    // The lab waits for its IPv4 backends only: until the IPv6 ones answer too, bounded.
    await waitFor('the IPv6 DNS backends to answer', async () => {
      const burst = await sendQueries(lab, labPod.netns, labAddresses6.clusterDns, 8, 1000);
      return burst.answered === 8 ? true : undefined;
    });
    // Two periods: the warm-up's answers are in before the baseline.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const before = await scrape(agent.baseUrl);
    let sent = 0;
    let answeredByClient = 0;
    let drops = 0;
    await withRules([rule], async () => {
      // The ClusterIP picks a backend at random per flow (the rule matches one backend's share,
      // after DNAT): rounds until the rule dropped a few, bounded.
      for (let round = 0; round < 10 && drops < 6; round += 1) {
        const burst = await sendQueries(lab, labPod.netns, labAddresses6.clusterDns, 8, 300);
        sent += burst.sent;
        answeredByClient += burst.answered;
        drops = await rule.packets();
      }
    });
    expect(drops).toBeGreaterThanOrEqual(6);
    expect(answeredByClient).toBe(sent - drops);
    // Reported one to two periods (5 s) after sending.
    const seen = await waitFor(
      `${drops} unanswered on ${pod.name}`,
      async () => {
        const grown = unanswered(await scrape(agent.baseUrl)) - unanswered(before);
        return grown >= drops ? grown : undefined;
      },
      40_000,
    ).catch(async () => unanswered(await scrape(agent.baseUrl)) - unanswered(before));
    expect(seen).toBe(drops);
    // One more period: a query counted late, or twice, would show.
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    const after = await scrape(agent.baseUrl);
    const linked = { source_ip: pod6, cause: 'firewall' };
    expect(unanswered(after) - unanswered(before)).toBe(drops);
    expect(unanswered(after, linked) - unanswered(before, linked)).toBe(drops);
    expect(answered(after) - answered(before)).toBe(answeredByClient);
  }, 120_000);
});

// Seed 004 with the IPv6 ClusterIP as the pods' nameserver: the lookups and the NODATA answers
// arrive over IPv6, and the agent must still tell the musl pod, and count how each pod's
// lookups ended.
describe('the agent with Kubernetes and DNS query tracking on seed 004 over IPv6', () => {
  let lab: Lab;
  let cluster: LabCluster;
  let run: Seed004Run | undefined;
  let fake: FakeApiServer | undefined;
  let agent: AgentUnderTest | undefined;

  beforeAll(async () => {
    lab = await createLab({ dualStack: true });
    cluster = labCluster(lab);
    // The lab waits for its IPv4 backends only: until the IPv6 ones answer too, bounded.
    for (const pod of lab.pods.slice(0, 2))
      await waitFor('the IPv6 DNS backends to answer', async () => {
        const burst = await sendQueries(lab, pod.netns, labAddresses6.clusterDns, 8, 1000);
        return burst.answered === 8 ? true : undefined;
      });
    run = await startSeed004(lab, { everyMs: 500, nameserver: labAddresses6.clusterDns });
    fake = await startFakeApiServer(cluster.objects);
    agent = await startAgentOn(lab, fake, ['--dns-query-tracking', 'on']);
  }, 120_000);

  afterAll(async () => {
    await agent?.stop();
    await fake?.close();
    await run?.stop();
    await lab?.destroy();
  });

  it('tells the musl pod that its lookup over IPv6 stopped on NODATA, naming the IPv6 ClusterIP, and counts the musl lookups as nodata and the glibc ones as answered', async () => {
    const muslPod = cluster.pods.find((pod) => pod.ip === run!.musl.pod.ip)!;
    const glibcPod = cluster.pods.find((pod) => pod.ip === run!.glibc.pod.ip)!;
    const stoppedEvents = () =>
      fake!.events().filter((event) => event.reason === 'DNSLookupStoppedOnNoData');
    const event = await waitFor(
      'a DNSLookupStoppedOnNoData Event on the musl pod',
      () => stoppedEvents().find((candidate) => candidate.involvedObject.name === muslPod.name),
      60_000,
    );
    expect(event.involvedObject).toMatchObject({
      kind: 'Pod',
      namespace: muslPod.namespace,
      name: muslPod.name,
    });
    expect(event.message).toContain(`"${seed004.name}" stopped at "${seed004.answeredName}"`);
    expect(event.message).toContain(`search domain ${seed004.domain}`);
    expect(event.message).toContain(`(asked at ${labAddresses6.clusterDns})`);

    // How the lookups ended, counted per pod from the IPv6 lookup maps: musl's on NODATA,
    // glibc's answered. Growth from a baseline taken once both pods have lookups counted: a
    // lookup in progress when the probe attached is seen only in part.
    const ended = (samples: Sample[], pod: string, outcome: string) =>
      sumOf(samples, 'conntrack_observer_dns_lookups_total', { pod, outcome });
    const lookups = (samples: Sample[], pod: string) =>
      ['answered', 'unanswered', 'nodata', 'nxdomain', 'failed'].reduce(
        (total, outcome) => total + ended(samples, pod, outcome),
        0,
      );
    const perLookup = (samples: Sample[], le: string) =>
      sumOf(samples, 'conntrack_observer_dns_queries_per_lookup_bucket', {
        pod: glibcPod.name,
        le,
      });
    const grownFrom = async (from: Sample[]): Promise<Sample[]> =>
      waitFor(
        'more lookups of both pods counted',
        async () => {
          const samples = await scrape(agent!.baseUrl);
          return lookups(samples, muslPod.name) >= lookups(from, muslPod.name) + 3 &&
            lookups(samples, glibcPod.name) >= lookups(from, glibcPod.name) + 3
            ? samples
            : undefined;
        },
        40_000,
      );
    const before = await grownFrom([]);
    const after = await grownFrom(before);
    const grown = (pod: string, outcome: string) =>
      ended(after, pod, outcome) - ended(before, pod, outcome);
    expect(grown(muslPod.name, 'nodata')).toBe(
      lookups(after, muslPod.name) - lookups(before, muslPod.name),
    );
    expect(grown(glibcPod.name, 'answered')).toBe(
      lookups(after, glibcPod.name) - lookups(before, glibcPod.name),
    );
    // glibc walks the whole search list, then the name itself: 8 queries a lookup (A and
    // AAAA of 3 search-list names and of the name).
    const glibcLookups = lookups(after, glibcPod.name) - lookups(before, glibcPod.name);
    const inBucket = (le: string) => perLookup(after, le) - perLookup(before, le);
    expect(inBucket('6')).toBe(0);
    expect(inBucket('8')).toBe(glibcLookups);
    expect(inBucket('+Inf')).toBe(glibcLookups);
    expect(stoppedEvents().map((candidate) => candidate.involvedObject.name)).toEqual([
      muslPod.name,
    ]);
  }, 180_000);
});
