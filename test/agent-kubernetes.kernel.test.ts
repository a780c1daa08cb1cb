import type { FlowTuple } from '../src/events/types.js';
import {
  createLab,
  generatorPath,
  labAddresses,
  labZone,
  lookUpIn,
  podSearchPath,
  runDnsBackendStopped,
  runResolversFirewalled,
  seed004,
  sendQueries,
  snatRaceUntil,
  startSeed004,
  type Lab,
  type LoopingResolver,
  type Seed004Run,
} from './lab/index.js';
import { waitFor, type AgentUnderTest } from './support/agent-harness.js';
import { startAgentProcess, type AgentProcess } from './support/agent-process.js';
import {
  startFakeApiServer,
  type FakeApiServer,
  type K8sObject,
} from './support/fake-apiserver.js';
import { startAgentOn } from './support/lab-agent.js';
import { LAB_NODE_NAME, labCluster, type LabCluster } from './support/lab-cluster.js';
import { scrape, sumOf, type Sample } from './support/prometheus-text.js';

interface LoggedEvent {
  kind: string;
  original?: FlowTuple;
}

const INSERT_FAILED = 'ConntrackInsertFailed';
const DNS_DROPPED = 'DNSQueryDropped';
const DNS_UNANSWERED = 'DNSQueryUnanswered';
const STOPPED_ON_NODATA = 'DNSLookupStoppedOnNoData';
const FAN_OUT = 'DNSSearchListFanOut';

const eventsOf = (server: FakeApiServer, reason: string) =>
  server.events().filter((event) => event.reason === reason);

/** Each Event's count by name: what an earlier test left is subtracted, not assumed absent. */
const countsByName = (events: K8sObject[]) =>
  new Map(events.map((event) => [String(event.metadata.name), Number(event.count)]));
const countSince = (event: K8sObject, before: Map<string, number>) =>
  Number(event.count) - (before.get(String(event.metadata.name)) ?? 0);

/** Polls until `read` reaches `expected` (or passes it), and returns the last value read. */
async function settled(
  read: () => Promise<number>,
  expected: number,
  timeoutMs = 15_000,
): Promise<number> {
  let last = Number.NaN;
  try {
    return await waitFor(
      `${expected}`,
      async () => {
        last = await read();
        return last >= expected ? last : undefined;
      },
      timeoutMs,
    );
  } catch {
    return last;
  }
}

// The real agent over a real lab, with the Kubernetes API faked at the HTTP level: the fake
// holds the lab's pods, the kube-dns Service on the lab's ClusterIP and its dnsmasq backends.
// The kernel's own counters (conntrack -S) and iptables' rule counters are the oracles.
describe('the agent with Kubernetes against a real kernel', () => {
  let lab: Lab;
  let cluster: LabCluster;

  // One lab for this block; each describe below runs its own agent on it, one at a time (the
  // probes see the whole machine), and every check is a delta, so no test needs another first.
  beforeAll(async () => {
    lab = await createLab();
    cluster = labCluster(lab);
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  const podAt = (ip: string) => cluster.pods.find((pod) => pod.ip === ip);
  const countOf = (events: K8sObject[]) =>
    events.reduce((sum, event) => sum + Number(event.count), 0);
  const podFailures = (samples: Sample[]) =>
    cluster.pods.reduce(
      (sum, pod) =>
        sum +
        sumOf(samples, 'conntrack_observer_insert_failures_total', {
          race: 'snat',
          namespace: pod.namespace,
          pod: pod.name,
        }),
      0,
    );

  function expectInsertFailedEvent(event: K8sObject): void {
    expect(event.type).toBe('Warning');
    expect(event.reason).toBe(INSERT_FAILED);
    expect(event.involvedObject.kind).toBe('Pod');
    const pod = cluster.pods.find((candidate) => candidate.uid === event.involvedObject.uid);
    expect(pod).toBeDefined();
    expect(event.involvedObject).toMatchObject({ namespace: pod!.namespace, name: pod!.name });
    expect(event.metadata.namespace).toBe(pod!.namespace);
    // Counted in the kernel by address, not client port: the message names the client alone.
    expect(event.message).toContain(`${pod!.ip} → `);
    expect(event.message).toContain('SNAT port-allocation race');
    expect(event.message).toContain(`SNAT to ${labAddresses.nodeUpstream} `);
    expect(event.message).toContain('--random-fully');
    expect(event.message).toContain('NodeLocal DNSCache');
    expect(event.reportingComponent).toBe('conntrack-race-observer');
    expect(event.reportingInstance).toBe(LAB_NODE_NAME);
  }

  /** Insert failures by losing pod IP, from the probe's own tuples in the agent's log. */
  /** Insert failures counted per client address (the probe's original source) between two scrapes. */
  function lossesByIp(before: Sample[], after: Sample[]): Map<string, number> {
    const losses = new Map<string, number>();
    for (const pod of cluster.pods) {
      const where = { source_ip: pod.ip };
      const lost =
        sumOf(after, 'conntrack_observer_insert_failures_total', where) -
        sumOf(before, 'conntrack_observer_insert_failures_total', where);
      if (lost > 0) losses.set(pod.ip, lost);
    }
    return losses;
  }

  /** The client addresses of the insert failures the agent logged, one line per example. */
  function lossesByIpIn(records: readonly Record<string, unknown>[]): Map<string, number> {
    const losses = new Map<string, number>();
    for (const record of records) {
      const event = record.event as LoggedEvent | undefined;
      if (event?.kind !== 'insert_failed' || !event.original) continue;
      losses.set(event.original.srcIp, (losses.get(event.original.srcIp) ?? 0) + 1);
    }
    return losses;
  }

  describe('in process', () => {
    let fake: FakeApiServer;
    let agent: AgentUnderTest;

    beforeAll(async () => {
      fake = await startFakeApiServer(cluster.objects);
      agent = await startAgentOn(lab, fake);
    });

    afterAll(async () => {
      await agent?.stop();
      await fake?.close();
    });

    it('puts one ConntrackInsertFailed Event on each racing pod, their counts summing to the kernel insert_failed', async () => {
      const before = await scrape(agent.baseUrl);
      const eventsBefore = countsByName(eventsOf(fake, INSERT_FAILED));
      const writesBefore = fake.eventWrites().length;
      const logsBefore = agent.logs.length;
      // Every pod loses at least twice: its Event is then both created and patched.
      const lossesPerPod = 2;
      const race = await snatRaceUntil(lab, {
        needed: lossesPerPod * cluster.pods.length,
        stillMissing: async () => {
          const losses = lossesByIp(before, await scrape(agent.baseUrl));
          const short = cluster.pods.filter((pod) => (losses.get(pod.ip) ?? 0) < lossesPerPod);
          if (short.length === 0) return undefined;
          const lost = short.map((pod) => `${pod.name} lost ${losses.get(pod.ip) ?? 0}`);
          return `${lost.join(', ')} of ${lossesPerPod} each, by the agent's counts`;
        },
      });
      const kernelFailures = race.kernel.insert_failed ?? 0;
      expect(kernelFailures).toBeGreaterThanOrEqual(lossesPerPod * cluster.pods.length);

      const labelled = await settled(
        async () => podFailures(await scrape(agent.baseUrl)) - podFailures(before),
        kernelFailures,
      );
      expect(labelled).toBe(kernelFailures);

      // Which pod lost each race, from the probe's own tuple (source_ip) rather than the resolver.
      const losses = lossesByIp(before, await scrape(agent.baseUrl));
      expect([...losses.values()].reduce((a, b) => a + b, 0)).toBe(kernelFailures);
      expect([...losses.keys()].every((ip) => podAt(ip) !== undefined)).toBe(true);
      // The log has examples of them, with both tuples, each from a racing pod.
      const examples = lossesByIpIn(agent.logs.slice(logsBefore));
      expect(examples.size).toBeGreaterThan(0);
      expect([...examples.keys()].every((ip) => podAt(ip) !== undefined)).toBe(true);

      // The first occurrence is posted at once; the rest follow in one patch per patch interval.
      const countedSince = () =>
        eventsOf(fake, INSERT_FAILED).reduce(
          (sum, event) => sum + countSince(event, eventsBefore),
          0,
        );
      const counted = await settled(async () => countedSince(), kernelFailures, 60_000);
      expect(counted).toBe(kernelFailures);

      const events = eventsOf(fake, INSERT_FAILED);
      events.forEach(expectInsertFailedEvent);
      const after = await scrape(agent.baseUrl);
      for (const pod of cluster.pods) {
        const podLosses = losses.get(pod.ip) ?? 0;
        expect(podLosses).toBeGreaterThanOrEqual(lossesPerPod);
        // One aggregated Event per losing pod, not one per drop.
        const onPod = events.filter((event) => event.involvedObject.uid === pod.uid);
        expect(onPod).toHaveLength(1);
        expect(countSince(onPod[0]!, eventsBefore)).toBe(podLosses);
        const labels = { race: 'snat', namespace: pod.namespace, pod: pod.name };
        expect(
          sumOf(after, 'conntrack_observer_insert_failures_total', labels) -
            sumOf(before, 'conntrack_observer_insert_failures_total', labels),
        ).toBe(podLosses);
      }
      expect(
        fake
          .eventWrites()
          .slice(writesBefore)
          .every((write) => write.status < 300),
      ).toBe(true);
    });

    it('names the kube-dns Service for a query to the ClusterIP dropped after DNAT', async () => {
      const [podA] = cluster.pods;
      // Dropped in FORWARD: after PREROUTING's DNAT, so the packet is addressed to a backend.
      const rules = labAddresses.dnsBackends.map((backend) => [
        'FORWARD',
        '-p',
        'udp',
        '-d',
        backend,
        '--dport',
        '53',
        '-j',
        'DROP',
      ]);
      // The race's own drops (late answers to closed sockets, the losers seen as DNS drops after
      // SNAT) have Events of their own.
      const firewalled = () =>
        eventsOf(fake, DNS_DROPPED).filter(
          (candidate) =>
            candidate.involvedObject.kind === 'Pod' &&
            String(candidate.message).includes('(reason NETFILTER_DROP'),
        );
      const firewalledBefore = countsByName(firewalled());
      const grown = () => firewalled().filter((event) => countSince(event, firewalledBefore) > 0);
      for (const rule of rules) await lab.exec(lab.node.netns, 'iptables', ['-I', ...rule]);
      try {
        const before = await scrape(agent.baseUrl);
        const burst = await sendQueries(lab, lab.pods[0]!.netns, labAddresses.clusterDns, 20, 100);
        expect(burst.sent).toBe(20);
        expect(burst.answered).toBe(0);
        const firewallDrops = await backendDropPackets(lab);
        expect(firewallDrops).toBe(20);

        const labels = {
          reason: 'NETFILTER_DROP',
          direction: 'query',
          service: 'kube-system/kube-dns',
          namespace: podA!.namespace,
          pod: podA!.name,
        };
        const drops = (samples: Sample[]) =>
          sumOf(samples, 'conntrack_observer_dns_drops_total', labels);
        const seen = await settled(
          async () => drops(await scrape(agent.baseUrl)) - drops(before),
          firewallDrops,
        );
        expect(seen).toBe(firewallDrops);

        const event = await waitFor('a DNSQueryDropped Event', async () => grown()[0]);
        expect(event.type).toBe('Warning');
        expect(event.involvedObject).toMatchObject({
          kind: 'Pod',
          namespace: podA!.namespace,
          name: podA!.name,
        });
        // Counted in the kernel by address, not port: the message names the client alone.
        expect(event.message).toMatch(
          new RegExp(
            `^UDP query ${podA!.ip.replace(/\./g, '\\.')} → kube-dns 192\\.0\\.2\\.5[34]:53`,
          ),
        );
        expect(event.message).toContain('NETFILTER_DROP');
        expect(countSince(event, firewalledBefore)).toBeGreaterThanOrEqual(1);
        expect(countSince(event, firewalledBefore)).toBeLessThanOrEqual(firewallDrops);
        // Only pod A sent queries.
        expect(grown()).toHaveLength(1);
      } finally {
        for (const rule of rules) await lab.exec(lab.node.netns, 'iptables', ['-D', ...rule]);
      }
    });
  });

  describe('with DNS query tracking', () => {
    let fake: FakeApiServer;
    let agent: AgentUnderTest;

    beforeAll(async () => {
      fake = await startFakeApiServer(cluster.objects);
      agent = await startAgentOn(lab, fake, ['--dns-query-tracking', 'on']);
    });

    afterAll(async () => {
      await agent?.stop();
      await fake?.close();
    });

    it('counts the queries a backend received but never answered (SIGSTOP) as unanswered, with no drop on this node, to the kube-dns Service, and names that backend pod', async () => {
      const [podA] = cluster.pods;
      const unanswered = (samples: Sample[], cause?: string) =>
        sumOf(samples, 'conntrack_observer_dns_unanswered_queries_total', {
          namespace: podA!.namespace,
          pod: podA!.name,
          service: 'kube-system/kube-dns',
          ...(cause === undefined ? {} : { cause }),
        });
      const before = await scrape(agent.baseUrl);
      const eventsBefore = countsByName(eventsOf(fake, DNS_UNANSWERED));
      const logsBefore = agent.logs.length;
      const stopped = await runDnsBackendStopped(lab, { queriesPerRound: 10, atLeast: 6 });
      try {
        // The pod the fake API server's EndpointSlice puts behind the stopped address.
        const backendPods = cluster.objects.endpointSlices!.flatMap((slice) =>
          (slice.endpoints as K8sObject[])
            .filter((endpoint) => (endpoint.addresses as string[]).includes(stopped.backend))
            .map((endpoint) => String(endpoint.targetRef.name)),
        );
        expect(backendPods).toHaveLength(1);
        const stoppedPod = `kube-system/${backendPods[0]}`;
        expect(stopped.receivedByStopped).toBeGreaterThanOrEqual(6);
        // Every query went to one backend or the other: the live one answered the rest.
        expect(stopped.answered + stopped.receivedByStopped).toBe(stopped.queriesSent);
        expect(stopped.kernel.insert_failed ?? 0).toBe(0);
        const seen = await settled(
          async () => unanswered(await scrape(agent.baseUrl)) - unanswered(before),
          stopped.receivedByStopped,
          // Reported 5 to 11 s after sending; the bound leaves room for a loaded machine.
          40_000,
        );
        expect(seen).toBe(stopped.receivedByStopped);
        // One more period (5 s): a count past what the backend received would show.
        await new Promise((resolve) => setTimeout(resolve, 6_500));
        const after = await scrape(agent.baseUrl);
        expect(unanswered(after) - unanswered(before)).toBe(stopped.receivedByStopped);
        expect(unanswered(after, 'none') - unanswered(before, 'none')).toBe(
          stopped.receivedByStopped,
        );

        const grown = () =>
          eventsOf(fake, DNS_UNANSWERED).filter(
            (event) => Number(event.count) > (eventsBefore.get(String(event.metadata.name)) ?? 0),
          );
        const event = await waitFor('a DNSQueryUnanswered Event', async () => grown()[0]);
        expect(event.type).toBe('Warning');
        expect(event.involvedObject).toMatchObject({
          kind: 'Pod',
          namespace: podA!.namespace,
          name: podA!.name,
        });
        expect(event.message).toContain(`${podA!.ip} → kube-dns`);
        expect(event.message).toContain('no answer came within 5 s');
        expect(event.message).toContain('No drop on this node explains it');
        // The node's conntrack table names the backend that never answered, and only that one.
        expect(event.message).toContain(
          `sent to backend ${stopped.backend} (pod ${stoppedPod}) after DNAT and never answered`,
        );
        expect(grown()).toHaveLength(1);
        const logged = agent.logs
          .slice(logsBefore)
          .map((record) => record.event as { kind?: string; pod?: string; backends?: unknown })
          .filter((logEvent) => logEvent?.kind === 'dns_query');
        expect(logged.length).toBeGreaterThan(0);
        for (const logEvent of logged) {
          expect(logEvent.pod).toBe(`${podA!.namespace}/${podA!.name}`);
          expect(logEvent.backends).toEqual([{ ip: stopped.backend, pod: stoppedPod }]);
        }
      } finally {
        await stopped.resume();
      }
    });

    it('counts the queries the firewall dropped of real glibc and musl lookups as unanswered for each pod, with the firewall as their cause, and a clean run as none', async () => {
      const [glibcLabPod, muslLabPod] = lab.pods;
      const resolvers = [
        { library: 'glibc', pod: glibcLabPod! },
        { library: 'musl', pod: muslLabPod! },
      ] as const;
      const podOf = (ip: string) => {
        const pod = podAt(ip);
        if (!pod) throw new Error(`no pod in the fake API at ${ip}`);
        return pod;
      };
      const unanswered = (samples: Sample[], ip: string, cause?: string) =>
        sumOf(samples, 'conntrack_observer_dns_unanswered_queries_total', {
          namespace: podOf(ip).namespace,
          pod: podOf(ip).name,
          service: 'kube-system/kube-dns',
          ...(cause === undefined ? {} : { cause }),
        });
      const allUnanswered = (samples: Sample[]) =>
        sumOf(samples, 'conntrack_observer_dns_unanswered_queries_total');
      const before = await scrape(agent.baseUrl);
      const eventsBefore = countsByName(eventsOf(fake, DNS_UNANSWERED));
      const dropsPerPod = 3;
      const run = await runResolversFirewalled(lab, { resolvers, dropsPerPod });
      const drops = run.runs.reduce((sum, pod) => sum + pod.firewallDrops, 0);
      for (const pod of run.runs) expect(pod.firewallDrops).toBeGreaterThanOrEqual(dropsPerPod);

      // Reported one to two periods (5 s) after sending; the bound leaves room for a loaded machine.
      const seen = await settled(
        async () => allUnanswered(await scrape(agent.baseUrl)) - allUnanswered(before),
        drops,
        40_000,
      );
      expect(seen).toBe(drops);
      const firewalled = await scrape(agent.baseUrl);

      // A clean run: the rules are gone, every lookup is answered at once.
      const clean = await Promise.all(
        resolvers.map((resolver) => lookUpIn(lab, resolver, 'www.example.test.')),
      );
      for (const results of clean)
        for (const result of results)
          expect(result.addresses).toContain(labZone['www.example.test']);
      // Two more periods: a query of either run counted late, or past the drops, would show.
      await new Promise((resolve) => setTimeout(resolve, 12_000));
      const after = await scrape(agent.baseUrl);
      expect(allUnanswered(after) - allUnanswered(firewalled)).toBe(0);

      for (const pod of run.runs) {
        const ip = pod.pod.ip;
        // Each pod's unanswered queries are the ones its rule dropped, all linked to the firewall.
        expect(unanswered(after, ip) - unanswered(before, ip)).toBe(pod.firewallDrops);
        expect(unanswered(after, ip, 'firewall') - unanswered(before, ip, 'firewall')).toBe(
          pod.firewallDrops,
        );

        // What the resolver felt: a stall of its timeout per lost query (glibc waits the whole
        // timeout, 5 s, before it resends; musl resends every timeout / attempts, 2.5 s), as the
        // program measured it (musl's own millisecond clock reads 2,499 for its 2.5 s).
        const stallMs = pod.library === 'glibc' ? 5_000 : 2_500;
        const stalls = pod.results.reduce(
          (sum, result) => sum + Math.round(result.ms / stallMs),
          0,
        );
        expect(stalls).toBeGreaterThanOrEqual(1);
        // Every stall waited for a query the firewall dropped.
        expect(stalls).toBeLessThanOrEqual(pod.firewallDrops);

        const grown = () =>
          eventsOf(fake, DNS_UNANSWERED).filter(
            (event) =>
              event.involvedObject.name === podOf(ip).name &&
              Number(event.count) > (eventsBefore.get(String(event.metadata.name)) ?? 0),
          );
        const event = await waitFor(
          `a DNSQueryUnanswered Event on ${podOf(ip).name}`,
          async () => grown()[0],
        );
        expect(event.type).toBe('Warning');
        expect(event.involvedObject).toMatchObject({
          kind: 'Pod',
          namespace: podOf(ip).namespace,
          name: podOf(ip).name,
        });
        expect(event.message).toContain(`${ip} → kube-dns`);
        expect(event.message).toContain('dropped DNS datagrams of this client in netfilter');
        expect(countSince(event, eventsBefore)).toBeLessThanOrEqual(pod.firewallDrops);
        // One Event per pod: every unanswered query of it had the firewall as its cause.
        expect(grown()).toHaveLength(1);
      }
    }, 120_000);
    it('shows the queries per lookup and how lookups ended on each pod, and tells the pod whose glibc and musl lookups walk the search list (ndots:5, 3 domains) of its fan-out, and the pod looking up an FQDN with a trailing dot nothing', async () => {
      // The lab's pods: 3 search domains, ndots:5; the short name resolves in none of them.
      expect(podSearchPath).toHaveLength(3);
      const [shortPod, fqdnPod] = cluster.pods;
      const binaries = [
        await generatorPath('resolve', lab.buildDir),
        await generatorPath('resolve-musl', lab.buildDir),
      ];
      const bucket = (samples: Sample[], pod: typeof shortPod, le: string) =>
        sumOf(samples, 'conntrack_observer_dns_queries_per_lookup_bucket', {
          namespace: pod!.namespace,
          pod: pod!.name,
          le,
        });
      const ended = (samples: Sample[], pod: typeof shortPod, outcome?: string) =>
        sumOf(samples, 'conntrack_observer_dns_lookups_total', {
          namespace: pod!.namespace,
          pod: pod!.name,
          ...(outcome === undefined ? {} : { outcome }),
        });
      const fanOutOn = (pod: typeof shortPod) =>
        eventsOf(fake, FAN_OUT).filter((event) => event.involvedObject.name === pod!.name);
      const lookups = (samples: Sample[], pod: typeof shortPod) => bucket(samples, pod, '+Inf');
      const before = await scrape(agent.baseUrl);
      const fanOutBefore = countsByName(eventsOf(fake, FAN_OUT));
      // Alternating glibc and musl lookups in each pod. The agent judges a pod's lookups in
      // windows of 5, and the first may hold up to 4 lookups of earlier tests: 10 fill at least
      // one window with these alone.
      const driven = 10;
      for (let i = 0; i < driven; i += 1) {
        const binary = binaries[i % 2]!;
        await lab.exec(lab.pods[0]!.netns, binary, ['missing.example.test']);
        await lab.exec(lab.pods[1]!.netns, binary, ['www.example.test.']);
      }
      // Each lookup ends after a quiet period (5 s) and is read at the next print.
      const seen = await settled(
        async () => {
          const samples = await scrape(agent.baseUrl);
          return Math.min(
            lookups(samples, shortPod) - lookups(before, shortPod),
            lookups(samples, fqdnPod) - lookups(before, fqdnPod),
            ended(samples, shortPod) - ended(before, shortPod),
            ended(samples, fqdnPod) - ended(before, fqdnPod),
          );
        },
        driven,
        30_000,
      );
      expect(seen).toBe(driven);
      const after = await scrape(agent.baseUrl);
      const grown = (pod: typeof shortPod, le: string) =>
        bucket(after, pod, le) - bucket(before, pod, le);
      expect([grown(shortPod, '6'), grown(shortPod, '8'), grown(shortPod, '+Inf')]).toEqual([
        0,
        driven,
        driven,
      ]);
      expect([grown(fqdnPod, '1'), grown(fqdnPod, '2'), grown(fqdnPod, '+Inf')]).toEqual([
        0,
        driven,
        driven,
      ]);
      // How they ended: every name the short one was tried as does not exist; the FQDN resolved.
      expect(ended(after, shortPod, 'nxdomain') - ended(before, shortPod, 'nxdomain')).toBe(driven);
      expect(ended(after, fqdnPod, 'answered') - ended(before, fqdnPod, 'answered')).toBe(driven);

      const event = await waitFor('a DNSSearchListFanOut Event on the short-name pod', async () =>
        fanOutOn(shortPod).find((e) => countSince(e, fanOutBefore) > 0),
      );
      expect(event!.type).toBe('Warning');
      expect(event!.involvedObject).toMatchObject({ kind: 'Pod', namespace: shortPod!.namespace });
      expect(event!.message).toMatch(/cost \d+(\.\d)? queries each on average/);
      // The lookups are short-lived programs: whether one was alive when the agent diagnosed
      // the pod is a matter of timing, so the Event explains with the pod's own resolv.conf
      // (ndots:5, like Kubernetes') or, when none could be read, with Kubernetes' defaults. The
      // seed-004 test below holds the pod's own settings to the Event.
      expect(event!.message).toMatch(
        /Its resolv\.conf (has ndots:5 and \d+ search domains|was not read; with Kubernetes' defaults)/,
      );
      expect(event!.message).toContain('trailing dot');
      expect(fanOutOn(fqdnPod).filter((e) => countSince(e, fanOutBefore) > 0)).toEqual([]);
    });
  });

  describe('as a process', () => {
    let processFake: FakeApiServer | undefined;
    let agentProcess: AgentProcess | undefined;

    afterAll(async () => {
      await agentProcess?.stop();
      await processFake?.close();
    });

    it('runs as a process with --kubeconfig and --node-name, ready only once synced, and posts the Events of a snat-race', async () => {
      processFake = await startFakeApiServer(cluster.objects);
      // Until released, the pod list fails: /readyz must say it waits for the API.
      const podListsFail = processFake.failRequests({
        status: 503,
        match: (request) => request.resource === 'pods' && !request.watch,
      });
      agentProcess = await startAgentProcess([
        '--kubeconfig',
        await processFake.kubeConfigFile(),
        '--node-name',
        LAB_NODE_NAME,
        '--netns-pid',
        String(lab.node.pid),
        '--probe-mode',
        'tracepoint',
        '--listen',
        '127.0.0.1:0',
        '--poll-interval',
        '0.5',
      ]);
      const { baseUrl } = agentProcess;
      const waiting = await waitFor('/readyz to wait for the API', async () => {
        const response = await fetch(`${baseUrl}/readyz`);
        const body = await response.text();
        return response.status === 503 && body.includes('Kubernetes not synced') ? body : undefined;
      });
      expect(waiting).toContain('pods');
      expect(podListsFail.failed).toBeGreaterThan(0);
      podListsFail.clear();
      await waitFor(
        'the agent to be ready',
        async () => ((await fetch(`${baseUrl}/readyz`)).status === 200 ? true : undefined),
        60_000,
      );
      expect(sumOf(await scrape(baseUrl), 'conntrack_observer_k8s_informer_synced')).toBe(4);

      const before = await scrape(baseUrl);
      // One more loss than there are pods: some pod loses twice, so its second occurrence is
      // still held (patch interval) at SIGTERM and the flush on shutdown is what delivers it.
      const race = await snatRaceUntil(lab, { needed: cluster.pods.length + 1 });
      const kernelFailures = race.kernel.insert_failed ?? 0;
      expect(kernelFailures).toBeGreaterThan(cluster.pods.length);
      const labelled = await settled(
        async () => podFailures(await scrape(baseUrl)) - podFailures(before),
        kernelFailures,
      );
      expect(labelled).toBe(kernelFailures);
      await waitFor('an Event posted while running', async () =>
        eventsOf(processFake!, INSERT_FAILED).length > 0 ? true : undefined,
      );

      // SIGTERM: the agent writes what its recorder still holds before it exits.
      expect(await agentProcess.stop()).toBe(0);
      const events = eventsOf(processFake, INSERT_FAILED);
      events.forEach(expectInsertFailedEvent);
      expect(countOf(events)).toBe(kernelFailures);
      expect(events.length).toBeLessThanOrEqual(cluster.pods.length);
      expect(processFake.eventWrites().every((write) => write.status < 300)).toBe(true);
    });
  });
});

// Seed 004 on a lab of its own, its programs running before the agent starts: the agent reads
// a pod's diagnosis (C library, resolv.conf) when the pod appears and again only minutes later,
// so the pods must already run the seed's musl and glibc programs when it first reads them.
// Another agent's tests on the same pods would leave a diagnosis of other programs.
describe('the agent with Kubernetes and DNS query tracking on seed 004 (a search domain answering NODATA)', () => {
  let lab: Lab;
  let cluster: LabCluster;
  let run: Seed004Run | undefined;
  let fake: FakeApiServer | undefined;
  let agent: AgentUnderTest | undefined;

  beforeAll(async () => {
    lab = await createLab();
    cluster = labCluster(lab);
    run = await startSeed004(lab, { everyMs: 500 });
    fake = await startFakeApiServer(cluster.objects);
    agent = await startAgentOn(lab, fake, ['--dns-query-tracking', 'on']);
  });

  afterAll(async () => {
    await agent?.stop();
    await fake?.close();
    await run?.stop();
    await lab?.destroy();
  });

  it('tells the musl pod that its lookup stopped on NODATA from the search domain, and the glibc pod resolving the same name nothing', async () => {
    const podOf = (resolver: LoopingResolver) => {
      const pod = cluster.pods.find((candidate) => candidate.ip === resolver.pod.ip);
      if (!pod) throw new Error(`no pod in the fake API at ${resolver.pod.ip}`);
      return pod;
    };
    const muslPod = podOf(run!.musl);
    const glibcPod = podOf(run!.glibc);
    const stoppedEvents = () => eventsOf(fake!, STOPPED_ON_NODATA);
    const on = (name: string) =>
      stoppedEvents().filter((event) => event.involvedObject.name === name);
    const stopped = (samples: Sample[], pod: string) =>
      sumOf(samples, 'conntrack_observer_dns_lookups_stopped_on_nodata_total', {
        domain: seed004.domain,
        pod,
      });
    const nodataAnswers = (samples: Sample[], pod: string) =>
      sumOf(samples, 'conntrack_observer_dns_queries_total', { rcode: 'NODATA', pod });

    const event = await waitFor(
      'a DNSLookupStoppedOnNoData Event on the musl pod',
      () => on(muslPod.name)[0],
      60_000,
    );
    expect(event).toMatchObject({
      type: 'Warning',
      involvedObject: { kind: 'Pod', namespace: muslPod.namespace, name: muslPod.name },
    });
    expect(event.message).toContain(`"${seed004.name}" stopped at "${seed004.answeredName}"`);
    expect(event.message).toContain(`search domain ${seed004.domain}`);
    expect(event.message).toContain('resolves with musl');
    expect(event.message).toContain('glibc would go on');
    expect(event.message).toContain(`"${seed004.name}."`);
    const muslStops = await settled(
      async () => stopped(await scrape(agent!.baseUrl), muslPod.name),
      1,
    );
    expect(muslStops).toBeGreaterThan(0);

    // After the musl pod's Event (both pods were read at once, when they appeared), the glibc
    // pod's lookups get their NODATA answers (the search domain's among them) again, and the
    // agent sees them.
    const glibcAnswers = nodataAnswers(await scrape(agent!.baseUrl), glibcPod.name);
    const glibcLookups = run!.glibc.results.length;
    await waitFor('more glibc lookups, their NODATA answers seen by the agent', async () =>
      run!.glibc.results.length >= glibcLookups + 4 &&
      nodataAnswers(await scrape(agent!.baseUrl), glibcPod.name) > glibcAnswers
        ? true
        : undefined,
    );
    // The recorder posts an Event's first occurrence at once and patches the rest every 30 s:
    // once the musl pod's Event has been patched, whatever the agent made of the glibc pod's
    // answers above has been written too.
    const muslCount = Number(on(muslPod.name)[0]?.count);
    await waitFor(
      "the musl pod's Event patched with later lookups",
      () => (Number(on(muslPod.name)[0]?.count) > muslCount ? true : undefined),
      45_000,
    );
    const after = await scrape(agent!.baseUrl);
    expect(stopped(after, glibcPod.name)).toBe(0);
    expect(on(glibcPod.name)).toEqual([]);
    // One Event for the search domain, on the musl pod and nowhere else.
    expect(stoppedEvents().map((candidate) => candidate.involvedObject.name)).toEqual([
      muslPod.name,
    ]);

    // The applications' own reports: musl fails the name, glibc resolves it.
    const musl = [...run!.musl.results];
    const glibc = [...run!.glibc.results];
    expect(musl.length).toBeGreaterThan(0);
    for (const result of musl) expect(result.error).toBe('Name does not resolve');
    expect(glibc.length).toBeGreaterThan(0);
    for (const result of glibc) expect(result.addresses).toEqual([seed004.address]);

    // How the lookups ended, counted per pod: musl's on NODATA, glibc's answered. Both
    // resolvers send A and AAAA at once from one socket through the node's DNAT, so a query can
    // be lost to the very race the agent reports, and its lookup then ends unanswered: allowed,
    // but only as far as the agent counted that pod's queries left unanswered.
    const expectLookupsEnded = (pod: string, outcome: string) => {
      const ended = new Map<string, number>();
      for (const sample of after) {
        if (sample.name !== 'conntrack_observer_dns_lookups_total' || sample.labels.pod !== pod)
          continue;
        if (sample.value > 0) ended.set(sample.labels.outcome ?? '', sample.value);
      }
      expect(ended.get(outcome) ?? 0).toBeGreaterThan(0);
      expect([...ended.keys()].filter((o) => o !== outcome && o !== 'unanswered')).toEqual([]);
      expect(ended.get('unanswered') ?? 0).toBeLessThanOrEqual(
        sumOf(after, 'conntrack_observer_dns_unanswered_queries_total', { pod }),
      );
    };
    expectLookupsEnded(muslPod.name, 'nodata');
    expectLookupsEnded(glibcPod.name, 'answered');

    // glibc walks the whole search list before the name itself: 8 queries a lookup, and the
    // fan-out Event, explained from the pod's own resolv.conf.
    const fanOut = await waitFor(
      'a DNSSearchListFanOut Event on the glibc pod',
      () => eventsOf(fake!, FAN_OUT).find((e) => e.involvedObject.name === glibcPod.name),
      60_000,
    );
    expect(fanOut.message).toContain(`ndots:5 and 3 search domains (${seed004.search.join(' ')})`);
    expect(fanOut.message).toContain(`"api.example.com."`);
  }, 180_000);
});

/** Packets the two backend DROP rules of the node's FORWARD chain matched (iptables' counters). */
async function backendDropPackets(lab: Lab): Promise<number> {
  const { stdout } = await lab.exec(lab.node.netns, 'iptables', [
    '-L',
    'FORWARD',
    '-n',
    '-v',
    '-x',
  ]);
  let packets = 0;
  for (const line of stdout.split('\n')) {
    const columns = line.trim().split(/\s+/);
    // pkts bytes target prot opt in out source destination …
    if (
      columns[2] === 'DROP' &&
      (labAddresses.dnsBackends as readonly string[]).includes(columns[8] ?? '')
    )
      packets += Number.parseInt(columns[0]!, 10);
  }
  return packets;
}
