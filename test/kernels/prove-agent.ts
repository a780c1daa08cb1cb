/**
 * Proves, on the kernel it runs on, what the agent counts against what the kernel counted:
 * run inside a kernel-matrix guest (`npm run test:kernels -- KERNEL -- node --import tsx
 * test/kernels/prove-agent.ts`), as root, with nothing else racing in the machine.
 *
 * One lab for the whole run and one agent per probe mode, all started together (each start
 * costs 30–50 s under emulation: their detections and compiles overlap), each the agent's own
 * startAgent with real bpftrace, as the kernel tests run it, at its default --poll-interval
 * (what a node runs; the unexplained count's tolerance for late events depends on it). Then
 * the scenarios back to back, each one window compared for every agent at once:
 *   1. snat-race until the node namespace's insert_failed rose by --snat-needed: the agent's
 *      insert failures (all SNAT races of the lab's pods, also seen as NETFILTER_DROP DNS
 *      query drops) must equal the kernel's delta;
 *   1b. the same race over IPv6 (the lab is dual-stack: the node masquerades the pods' IPv6
 *      traffic with ip6tables) until insert_failed rose by --snat6-needed: the agent's insert
 *      failures must equal the kernel's delta, each one a SNAT race of a pod's IPv6 address;
 *   2. kprobe mode: the one-socket DNAT race until clash_resolve rose by --clash-needed: the
 *      agent's clash_resolved must equal the kernel's delta, each one logged as its flow;
 *      insert failures in that window must equal the kernel's in every mode;
 *   2b. the same race from the pod's IPv6 address to the IPv6 ClusterIP (ip6tables DNAT);
 *   3. DNS queries the node's firewall drops, and queries to an address nothing listens on:
 *      the agent's query drops by reason must equal what the lab counted dropped;
 *   3b. the same over IPv6 (ip6tables DROP rule; Udp6NoPorts upstream): counted by reason as
 *      the lab counted them, and each one labelled with the client's IPv6 address;
 *   4. no unexplained insert failure from readiness to the end, and the agent's copy of the
 *      kernel's insert_failed moved as conntrack -S did;
 *   5. (run before 4's last reading; on the kernels of QUERY_TRACKING_KERNELS, whose agents run
 *      with --dns-query-tracking on, so that the largest counting program is loaded by their
 *      verifiers) DNS queries from a lab pod to the ClusterIP, which the node DNATs to the
 *      lab's two dnsmasq backends, counted by the DNS query probe: a burst all answered must grow the pod's
 *      dns_queries_total by exactly the answers the client received, and its unanswered
 *      queries not at all; then bursts with one backend firewalled (the lab's DROP rule after
 *      DNAT) must grow its dns_unanswered_queries_total by exactly the rule's packet count,
 *      each with the firewall as cause, once the probe's timeout has passed.
 * Writes prove-<mode>.json per mode into KERNEL_MATRIX_RESULTS (or --out) and exits 1 when a
 * check failed, naming it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { execa } from 'execa';
import type { FlowTuple } from '../../src/events/types.js';
import {
  createLab,
  counterDelta,
  labAddresses,
  labAddresses6,
  runDnsBlocked,
  runNoListener,
  snatRaceUntil,
  dnatClashUntil,
  RaceShortfallError,
  type Lab,
  type RaceUntilResult,
} from '../lab/index.js';
import { dnsBackendDropRule, withRules } from '../lab/rule-counters.js';
import { queryFrom } from '../probes/query-tally.js';
import { DNS_QUERY_TIMEOUT_SECONDS } from '../../src/probes/catalogue.js';
import { startAgentUnderTest, type AgentUnderTest } from '../support/agent-harness.js';
import { scrape, sumOf, type Sample } from '../support/prometheus-text.js';
import { kernelById, kernels } from './catalogue.js';
import {
  proofFileName,
  type AttributedFigure,
  type CountFigure,
  type ProofCheck,
  type ProofFigures,
  type ProofResult,
} from './proof-result.js';

const PROBE_MODES = ['auto', 'kprobe', 'tracepoint'] as const;
type ProvedMode = (typeof PROBE_MODES)[number];

interface ProveOptions {
  kernel: string;
  out: string;
  modes: ProvedMode[];
  expectAuto?: string;
  readyTimeout: number;
  snatNeeded: number;
  snat6Needed: number;
  clashNeeded: number;
  raceMaxSeconds: number;
  dnsQueries: number;
  settleSeconds: number;
  /** The bpftrace the agents run (`--bpftrace`): the guest's own unless given. */
  bpftrace?: string;
  /** What that bpftrace's `--version` prints, for the results. */
  bpftraceVersion?: string;
}

/** The agent's default --poll-interval, what a node runs: the unexplained count depends on it. */
const DEFAULT_POLL_SECONDS = 5;

function say(line: string): void {
  process.stderr.write(`prove: ${line}\n`);
}

const seconds = (fromMs: number): number => Math.round((Date.now() - fromMs) / 100) / 10;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until the agent's count reaches `expected` (probe events trail the kernel's counter by
 * a little), then looks once more after a short grace, so a late extra event still shows.
 */
async function settledCount(
  read: () => Promise<number>,
  expected: number,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (last < expected && Date.now() < deadline) {
    await sleep(500);
    last = await read();
  }
  await sleep(1_500);
  return read();
}

/**
 * Waits (at most 30 s) until the agent's counts `names` have not moved for three reads
 * `everyMs` apart.
 */
async function countsQuiet(
  proof: { metrics(): Promise<Sample[]> },
  names: readonly string[],
  everyMs: number,
): Promise<void> {
  const read = async () => {
    const samples = await proof.metrics();
    return names.reduce((sum, name) => sum + sumOf(samples, name), 0);
  };
  const deadline = Date.now() + 30_000;
  let last = await read();
  for (let still = 0; still < 3 && Date.now() < deadline;) {
    await sleep(everyMs);
    const next = await read();
    still = next === last ? still + 1 : 0;
    last = next;
  }
}

/** DNS drops are printed once a second: still for three reads 0.7 s apart. */
const dnsCountsQuiet = (proof: { metrics(): Promise<Sample[]> }): Promise<void> =>
  countsQuiet(proof, ['conntrack_observer_dns_drops_total'], 700);

/**
 * The DNS query probe's counts are printed once a period: still for three reads 2.5 s apart
 * (longer than a period), so the outcomes of the queries before the window are all in.
 */
const queryCountsQuiet = (proof: { metrics(): Promise<Sample[]> }): Promise<void> =>
  countsQuiet(
    proof,
    ['conntrack_observer_dns_queries_total', 'conntrack_observer_dns_unanswered_queries_total'],
    2_500,
  );

/**
 * Kernels whose agents run with --dns-query-tracking on and prove scenario 5: every kernel of
 * the matrix. Under software emulation the combined program with the DNS query probe, the
 * largest, takes minutes to compile and attach: on 6.1, with two agents compiling at once,
 * neither attached within the agent's default 120 s attach timeout (bpftrace was killed and
 * started again, and lost its compile); alone each was ready after 113 s. Hence the agents'
 * --probe-attach-timeout (PROBE_ATTACH_TIMEOUT_SECONDS) and the longer readiness bound.
 */
const QUERY_TRACKING_KERNELS: ReadonlySet<string> = new Set(['5.10', '6.1', '6.12']);

/**
 * The agents' --probe-attach-timeout, and their readiness bound: long enough for two agents
 * compiling the program with the DNS query probe at once on an emulated guest, so that
 * bpftrace is never killed halfway through a compile it would have finished. With it both
 * agents were ready after 130 s on 6.1 and 193 s on 6.12 (a busy host), guests 313 s and 372 s.
 */
const PROBE_ATTACH_TIMEOUT_SECONDS = 360;

const tracksQueries = (kernel: string): boolean => QUERY_TRACKING_KERNELS.has(kernel);

/** Queries per burst while one backend is firewalled, and how many it must drop in all. */
const FIREWALLED_BURST = 8;
const FIREWALLED_NEEDED = 6;

function equalCheck(name: string, agent: number, expected: number, what: string): ProofCheck {
  const passed = agent === expected;
  return {
    name,
    passed,
    agent,
    expected,
    detail: passed
      ? `agent ${agent} = ${what} ${expected}`
      : `agent ${agent} ≠ ${what} ${expected} (${agent > expected ? 'over' : 'under'}-counted by ${Math.abs(agent - expected)})`,
  };
}

interface LoggedFlowEvent {
  kind?: string;
  netns?: number;
  race?: string;
  original?: FlowTuple;
}

/** One agent in one requested probe mode: what it reported, checked, window by window. */
class AgentProof {
  readonly checks: ProofCheck[] = [];
  readonly figures: Record<string, unknown> = {};
  readonly phaseSeconds: Record<string, number> = {};
  agent: AgentUnderTest | undefined;
  readyz: ProofResult['readyz'] = { code: null, body: '', afterSeconds: null };
  /** When start() began: the readiness bound and the times are this agent's own. */
  private started = Date.now();

  constructor(
    readonly requested: ProvedMode,
    private readonly options: ProveOptions,
  ) {}

  get mode(): string | undefined {
    return this.agent?.agent.mode.mode;
  }

  get ready(): boolean {
    return this.readyz.afterSeconds !== null;
  }

  metrics(): Promise<Sample[]> {
    return scrape(this.agent!.baseUrl);
  }

  fail(name: string, detail: string): void {
    say(`${this.requested}: FAIL ${name}: ${detail}`);
    this.checks.push({ name, passed: false, detail });
  }

  push(...checks: ProofCheck[]): void {
    this.checks.push(...checks);
  }

  /** Starts the agent (detection included) and waits, bounded, for /readyz 200. */
  async start(lab: Lab): Promise<void> {
    this.started = Date.now();
    const args = [
      '--probe-mode',
      this.requested,
      '--netns-pid',
      String(lab.node.pid),
      '--probe-attach-timeout',
      String(PROBE_ATTACH_TIMEOUT_SECONDS),
      ...(tracksQueries(this.options.kernel) ? ['--dns-query-tracking', 'on'] : []),
      ...(this.options.bpftrace === undefined ? [] : ['--bpftrace', this.options.bpftrace]),
    ];
    say(`${this.requested}: starting the agent (${args.join(' ')})`);
    try {
      this.agent = await startAgentUnderTest(args);
    } catch (error) {
      const message = (error as Error).message;
      this.readyz = { code: null, body: message, afterSeconds: null };
      this.fail('agent starts', `the agent did not start: ${message}`);
      return;
    }
    const mode = this.agent.agent.mode;
    say(`${this.requested}: probe mode ${mode.mode}: ${mode.reason}`);
    if (this.requested === 'auto' && this.options.expectAuto !== undefined) {
      this.push({
        name: 'auto picks the mode this kernel allows',
        passed: mode.mode === this.options.expectAuto,
        detail: `auto chose ${mode.mode}, expected ${this.options.expectAuto}: ${mode.reason}`,
      });
    } else if (this.requested !== 'auto') {
      this.push({
        name: `--probe-mode ${this.requested} runs`,
        passed: mode.mode === this.requested,
        detail: `running in ${mode.mode}`,
      });
    }
    const deadline = this.started + this.options.readyTimeout * 1000;
    while (Date.now() < deadline) {
      try {
        const response = await fetch(`${this.agent.baseUrl}/readyz`);
        const body = (await response.text()).trim();
        this.readyz = { code: response.status, body, afterSeconds: null };
        if (response.status === 200) {
          this.readyz = { ...this.readyz, afterSeconds: seconds(this.started) };
          say(`${this.requested}: ready after ${this.readyz.afterSeconds} s: ${body}`);
          return;
        }
      } catch (error) {
        this.readyz = {
          code: null,
          body: `no answer: ${(error as Error).message}`,
          afterSeconds: null,
        };
      }
      await sleep(1_000);
    }
    this.fail('/readyz 200', `not ready after ${this.options.readyTimeout} s: ${this.readyz.body}`);
  }

  async stop(): Promise<void> {
    if (this.agent === undefined) return;
    await this.agent.stop();
    writeFileSync(
      join(this.options.out, `agent-${this.requested}.jsonl`),
      this.agent.logs.map((record) => JSON.stringify(record)).join('\n') + '\n',
    );
  }

  result(): ProofResult {
    const mode = this.agent?.agent.mode;
    // Probes found unusable at run time (exits before attaching) say so in the log.
    const unavailableAtRun = (this.agent?.logs ?? [])
      .filter((record) => /unavailable/.test(String(record['msg'] ?? '')))
      .map((record) => String(record['msg']));
    return {
      schema: 1,
      kernel: this.options.kernel,
      release: release(),
      requestedMode: this.requested,
      mode: mode?.mode ?? null,
      reason: mode?.reason ?? null,
      readyz: this.readyz,
      probes: mode?.runs.map((run) => `${run.spec.name} (${run.variant.script})`) ?? [],
      unavailable: [
        ...(mode?.unavailable.map((probe) => `${probe.name} (${probe.reason}: ${probe.detail})`) ??
          []),
        ...unavailableAtRun,
      ],
      unobservable: mode?.unobservable ?? [],
      figures: this.figures as ProofFigures,
      checks: this.checks,
      passed: this.checks.length > 0 && this.checks.every((check) => check.passed),
      seconds: {
        ...(this.readyz.afterSeconds === null ? {} : { toReady: this.readyz.afterSeconds }),
        ...this.phaseSeconds,
        total: seconds(this.started),
      },
      ...(this.options.bpftraceVersion === undefined
        ? {}
        : { bpftrace: this.options.bpftraceVersion }),
    };
  }
}

/**
 * The scenarios, back to back, each one window for every ready agent at once: the agents
 * (one per mode) watch the same kernel, so one race proves them all.
 */
class Scenarios {
  constructor(
    private readonly lab: Lab,
    private readonly agents: readonly AgentProof[],
    private readonly options: ProveOptions,
  ) {}

  async run(): Promise<void> {
    const atReady = await Promise.all(this.agents.map((a) => a.metrics()));
    const kernelAtReady = await this.lab.nodeConntrackStats();

    await this.snatRace('ipv4');
    await this.snatRace('ipv6');
    await this.dnatClash('ipv4');
    await this.dnatClash('ipv6');
    await this.dnsDrops();
    if (tracksQueries(this.options.kernel)) await this.dnsQueries();

    // A shortfall counts as unexplained once it has lasted two polls: give it two and a second.
    await sleep(2 * DEFAULT_POLL_SECONDS * 1000 + 1_000);
    const kernelSinceReady = counterDelta(kernelAtReady, await this.lab.nodeConntrackStats());
    for (const [index, proof] of this.agents.entries()) {
      const atEnd = await proof.metrics();
      const delta = (name: string): number => sumOf(atEnd, name) - sumOf(atReady[index]!, name);
      const unexplained = delta('conntrack_observer_unexplained_insert_failures_total');
      proof.figures['unexplained'] = unexplained;
      proof.push(
        equalCheck('no unexplained insert failures after ready', unexplained, 0, 'expected'),
        equalCheck(
          "the agent's kernel counter follows the node's insert_failed",
          delta('conntrack_observer_kernel_conntrack_insert_failed_total'),
          kernelSinceReady['insert_failed'] ?? 0,
          'conntrack -S',
        ),
      );
    }
  }

  private async drive(name: string, run: () => Promise<RaceUntilResult>): Promise<RaceUntilResult> {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof RaceShortfallError)) throw error;
      for (const proof of this.agents)
        proof.fail(
          `${name} reaches its needed count`,
          `${error.message}: emulation did not hit the race window often enough`,
        );
      return error.result;
    }
  }

  /** Each agent's count, once it has caught up with `expected` (bounded). */
  private settle(
    read: (proof: AgentProof, samples: Sample[]) => number,
    expected: number,
    agents: readonly AgentProof[] = this.agents,
  ): Promise<number[]> {
    return Promise.all(
      agents.map((proof) =>
        settledCount(
          async () => read(proof, await proof.metrics()),
          expected,
          this.options.settleSeconds * 1000,
        ),
      ),
    );
  }

  /**
   * snat-race in one family. IPv4 losers are also DNS query drops (NETFILTER_DROP); IPv6 ones
   * are compared as insert failures only, each named by the racing pod's IPv6 address.
   */
  private async snatRace(family: 'ipv4' | 'ipv6'): Promise<void> {
    const ipv6 = family === 'ipv6';
    const scenario = ipv6 ? 'snat-race over IPv6' : 'snat-race';
    const started = Date.now();
    const before = await Promise.all(this.agents.map((a) => a.metrics()));
    const race = await this.drive(scenario, () =>
      snatRaceUntil(this.lab, {
        needed: ipv6 ? this.options.snat6Needed : this.options.snatNeeded,
        maxMs: this.options.raceMaxSeconds * 1000,
        label: `${this.agents.map((a) => a.requested).join(' + ')}${ipv6 ? ', IPv6' : ''}`,
        report: say,
        ...(ipv6 && { destination: labAddresses6.upstreamHost }),
      }),
    );
    const kernel = race.kernel['insert_failed'] ?? 0;
    const index = (proof: AgentProof): number => this.agents.indexOf(proof);
    const counted = await this.settle(
      (proof, samples) =>
        sumOf(samples, 'conntrack_observer_insert_failures_total') -
        sumOf(before[index(proof)]!, 'conntrack_observer_insert_failures_total'),
      kernel,
    );
    const windowSeconds = seconds(started);
    const podIps = this.lab.pods.map((pod) => (ipv6 ? pod.ip6 : pod.ip));
    if (podIps.some((ip) => ip === undefined)) throw new Error('the lab has no IPv6 pods');
    const what = ipv6 ? ' (IPv6)' : '';
    for (const [i, proof] of this.agents.entries()) {
      const after = await proof.metrics();
      const delta = (name: string, where: Record<string, string>): number =>
        sumOf(after, name, where) - sumOf(before[i]!, name, where);
      const snatFromPods = podIps.reduce(
        (sum, ip) =>
          sum + delta('conntrack_observer_insert_failures_total', { race: 'snat', source_ip: ip! }),
        0,
      );
      const figure = {
        agent: counted[i]!,
        kernel,
        sent: race.rounds,
        seconds: windowSeconds,
      } satisfies CountFigure;
      if (ipv6) {
        proof.phaseSeconds['snatRace6'] = windowSeconds;
        proof.figures['insertFailures6'] = { ...figure, snatOfPods: snatFromPods };
      } else {
        proof.phaseSeconds['snatRace'] = windowSeconds;
        proof.figures['insertFailures'] = figure;
      }
      proof.push(
        equalCheck(`insert failures${what} = kernel insert_failed`, counted[i]!, kernel, 'kernel'),
        equalCheck(
          ipv6
            ? "each one a SNAT race of a lab pod's IPv6 address"
            : 'each one a SNAT race of a lab pod',
          snatFromPods,
          kernel,
          'kernel',
        ),
      );
      if (!ipv6)
        proof.push(
          equalCheck(
            'race losers seen as DNS query drops (NETFILTER_DROP)',
            delta('conntrack_observer_dns_drops_total', {
              reason: 'NETFILTER_DROP',
              direction: 'query',
            }),
            kernel,
            'kernel insert_failed',
          ),
        );
      say(
        `${proof.requested}: ${scenario} ${race.rounds} rounds: insert failures agent ${counted[i]}, kernel ${kernel}${ipv6 ? `, of the pods' IPv6 addresses ${snatFromPods}` : ''}`,
      );
    }
  }

  /**
   * dnat-clash in one family: resolved clashes per flow (kprobe mode), insert failures in
   * every mode. Over IPv6 the pod sends from its IPv6 address to the IPv6 ClusterIP, which the
   * node DNATs with ip6tables.
   */
  private async dnatClash(family: 'ipv4' | 'ipv6'): Promise<void> {
    const ipv6 = family === 'ipv6';
    const what = ipv6 ? ' (IPv6)' : '';
    // Run in every mode: the insert failures of the window are compared in each.
    const kprobe = this.agents.filter((proof) => proof.mode === 'kprobe');
    const started = Date.now();
    if ((await this.lab.nodeConntrackStats())['clash_resolve'] === undefined) {
      // Kernels before 5.10 count resolved clashes nowhere: nothing to compare with.
      for (const proof of kprobe)
        proof.figures[ipv6 ? 'clashResolved6' : 'clashResolved'] = {
          agent: 0,
          kernel: null,
          sent: 0,
          seconds: 0,
          flows: 0,
        };
      say('no clash_resolve counter on this kernel: resolved clashes not compared');
      return;
    }
    const before = await Promise.all(this.agents.map((a) => a.metrics()));
    const logsBefore = this.agents.map((a) => a.agent!.logs.length);
    const race = await this.drive(`dnat-clash${ipv6 ? ' over IPv6' : ''}`, () =>
      dnatClashUntil(this.lab, {
        needed: this.options.clashNeeded,
        firstBatch: 200,
        family,
        maxMs: this.options.raceMaxSeconds * 1000,
        label: `${this.agents.map((a) => a.requested).join(' + ')}${ipv6 ? ', IPv6' : ''}`,
        report: say,
      }),
    );
    const kernel = race.kernel['clash_resolve'] ?? 0;
    const index = (proof: AgentProof): number => this.agents.indexOf(proof);
    const resolved = await this.settle(
      (proof, samples) =>
        sumOf(samples, 'conntrack_observer_clash_resolved_total') -
        sumOf(before[index(proof)]!, 'conntrack_observer_clash_resolved_total'),
      kernel,
      kprobe,
    );
    const windowSeconds = seconds(started);
    const source = ipv6 ? this.lab.pods[0]?.ip6 : this.lab.pods[0]?.ip;
    if (source === undefined) throw new Error('the lab has no IPv6 pods');
    const clusterIp = ipv6 ? labAddresses6.clusterDns : labAddresses.clusterDns;
    for (const [i, proof] of this.agents.entries()) {
      const after = await proof.metrics();
      proof.push(
        equalCheck(
          `insert failures during dnat-clash${what} = kernel insert_failed`,
          sumOf(after, 'conntrack_observer_insert_failures_total') -
            sumOf(before[i]!, 'conntrack_observer_insert_failures_total'),
          race.kernel['insert_failed'] ?? 0,
          'kernel',
        ),
      );
      if (proof.mode !== 'kprobe') continue;
      const ofTheClash = proof
        .agent!.logs.slice(logsBefore[i])
        .map((record) => record['event'] as LoggedFlowEvent | undefined)
        .filter(
          (event): event is LoggedFlowEvent =>
            event?.kind === 'clash_resolved' &&
            event.netns === this.lab.node.netnsInode &&
            event.original?.srcIp === source &&
            event.original.dstIp === clusterIp &&
            event.original.dstPort === 53,
        );
      const flows = new Set(ofTheClash.map((event) => event.original!.srcPort)).size;
      proof.phaseSeconds[ipv6 ? 'dnatClash6' : 'dnatClash'] = windowSeconds;
      proof.figures[ipv6 ? 'clashResolved6' : 'clashResolved'] = {
        agent: resolved[kprobe.indexOf(proof)]!,
        kernel,
        sent: race.rounds,
        seconds: windowSeconds,
        flows,
      };
      proof.push(
        equalCheck(
          `clash_resolved${what} = kernel clash_resolve`,
          resolved[kprobe.indexOf(proof)]!,
          kernel,
          'kernel',
        ),
        equalCheck(
          `each resolved clash logged with its flow (pod → ${ipv6 ? 'IPv6 ' : ''}ClusterIP:53, node namespace)`,
          ofTheClash.length,
          kernel,
          'kernel clash_resolve',
        ),
      );
      say(
        `${proof.requested}: dnat-clash${what} ${race.rounds} rounds: clash_resolved agent ${resolved[kprobe.indexOf(proof)]}, kernel ${kernel}, ${flows} flows logged`,
      );
    }
  }

  /**
   * Each DNS scenario in both families. Over IPv6 the drops must also carry the client's
   * address: the pod's for the firewall (dropped in the node, before masquerading), the node's
   * upstream address for the silent server (dropped in the upstream namespace, after it).
   */
  private async dnsDrops(): Promise<void> {
    const queries = this.options.dnsQueries;
    for (const family of ['ipv4', 'ipv6'] as const) {
      const ipv6 = family === 'ipv6';
      await this.dnsWindow({
        key: ipv6 ? 'dnsFirewall6' : 'dnsFirewall',
        reason: 'NETFILTER_DROP',
        family,
        ...(ipv6 && { source: this.lab.pods[0]!.ip6 }),
        scenario: async () => {
          const blocked = await runDnsBlocked(this.lab, { queries, family });
          return {
            dropped: blocked.firewallDrops,
            sent: blocked.queriesSent,
            labCount: ipv6 ? 'ip6tables rule matches' : 'firewall rule matches',
          };
        },
      });
      await this.dnsWindow({
        key: ipv6 ? 'dnsNoListener6' : 'dnsNoListener',
        reason: 'NO_SOCKET',
        family,
        ...(ipv6 && { source: labAddresses6.nodeUpstream }),
        scenario: async () => {
          const silent = await runNoListener(this.lab, { queries, family });
          return {
            dropped: silent.upstreamUdpNoPorts,
            sent: silent.queriesSent,
            labCount: ipv6 ? 'upstream Udp6NoPorts' : 'upstream Udp NoPorts',
          };
        },
      });
    }
  }

  /** One DNS scenario: the agents' query drops by reason against what the lab dropped. */
  private async dnsWindow(window: DnsWindow): Promise<void> {
    const { key, reason, family, source, scenario } = window;
    if (family === 'ipv6' && source === undefined) throw new Error('the lab has no IPv6 pods');
    const what = family === 'ipv6' ? ' (IPv6)' : '';
    const started = Date.now();
    // DNS drops are counted in the kernel and printed once a second: the window starts once
    // the counts of the phase before it (a race drops DNS queries too) have all arrived.
    await Promise.all(this.agents.map((a) => dnsCountsQuiet(a)));
    const before = await Promise.all(this.agents.map((a) => a.metrics()));
    const { dropped, sent, labCount } = await scenario();
    const index = (proof: AgentProof): number => this.agents.indexOf(proof);
    const counted = await this.settle(
      (proof, samples) => queryDropsByReason(before[index(proof)]!, samples)[reason] ?? 0,
      dropped,
    );
    const windowSeconds = seconds(started);
    for (const [i, proof] of this.agents.entries()) {
      const after = await proof.metrics();
      const others = Object.entries(queryDropsByReason(before[i]!, after)).filter(
        ([name]) => name !== reason,
      );
      const figure = {
        agent: counted[i]!,
        kernel: dropped,
        sent,
        seconds: windowSeconds,
      } satisfies CountFigure;
      proof.phaseSeconds[key] = windowSeconds;
      proof.push(
        equalCheck(
          `DNS query drops${what} ${reason} = ${labCount}`,
          counted[i]!,
          dropped,
          labCount,
        ),
        {
          name: `no other cause reported for the${what} ${reason} queries`,
          passed: others.length === 0,
          detail:
            others.length === 0
              ? 'none'
              : `also reported: ${others.map(([name, count]) => `${name} ${count}`).join(', ')}`,
        },
      );
      let attributedSay = '';
      if (source === undefined) {
        proof.figures[key] = figure;
      } else {
        const where = { reason, direction: 'query', source_ip: source };
        const attributed =
          sumOf(after, 'conntrack_observer_dns_drops_total', where) -
          sumOf(before[i]!, 'conntrack_observer_dns_drops_total', where);
        proof.figures[key] = { ...figure, attributed, source } satisfies AttributedFigure;
        proof.push(
          equalCheck(
            `each${what} ${reason} query drop on ${source}`,
            attributed,
            dropped,
            labCount,
          ),
        );
        attributedSay = `, on ${source} ${attributed}`;
      }
      if (dropped !== sent)
        proof.fail(`the lab dropped every${what} ${reason} query`, `${dropped} of ${sent} dropped`);
      say(
        `${proof.requested}: ${key}: ${sent} queries, ${labCount} ${dropped}, agent ${counted[i]}${attributedSay}`,
      );
    }
  }
  /**
   * Scenario 5: queries from a pod to the ClusterIP, counted by the DNS query probe on the
   * pod's address (the proof runs without Kubernetes: no pod labels). First a burst all
   * answered, then bursts with one backend firewalled until its DROP rule dropped a few.
   */
  private async dnsQueries(): Promise<void> {
    // Not the pod of the DNS drop scenarios: its queries to the blocked address go unanswered.
    const pod = this.lab.pods[1]!;
    const ofPod = { source_ip: pod.ip };
    const answered = (samples: Sample[]): number =>
      sumOf(samples, 'conntrack_observer_dns_queries_total', ofPod);
    const unanswered = (samples: Sample[], labels: Record<string, string> = {}): number =>
      sumOf(samples, 'conntrack_observer_dns_unanswered_queries_total', { ...ofPod, ...labels });
    const query = (count: number) =>
      queryFrom(this.lab, pod.netns, labAddresses.clusterDns, 'www.example.test', count);
    const index = (proof: AgentProof): number => this.agents.indexOf(proof);
    // A query counted late, or twice, shows within one more period.
    const onePeriodMore = (): Promise<void> => sleep((DNS_QUERY_TIMEOUT_SECONDS + 1) * 1000);

    // All answered.
    let started = Date.now();
    await Promise.all(this.agents.map((a) => queryCountsQuiet(a)));
    let before = await Promise.all(this.agents.map((a) => a.metrics()));
    const burst = await query(this.options.dnsQueries);
    await this.settle(
      (proof, samples) => answered(samples) - answered(before[index(proof)]!),
      burst.answered,
    );
    await onePeriodMore();
    let windowSeconds = seconds(started);
    for (const [i, proof] of this.agents.entries()) {
      const after = await proof.metrics();
      const agent = answered(after) - answered(before[i]!);
      proof.phaseSeconds['dnsAnswered'] = windowSeconds;
      proof.figures['dnsAnswered'] = {
        agent,
        kernel: burst.answered,
        sent: burst.sent,
        seconds: windowSeconds,
      } satisfies CountFigure;
      proof.push(
        equalCheck(
          'DNS queries answered through the ClusterIP = answers the client received',
          agent,
          burst.answered,
          'client',
        ),
        equalCheck(
          'no unanswered query among the answered ones',
          unanswered(after) - unanswered(before[i]!),
          0,
          'expected',
        ),
      );
      if (burst.answered !== burst.sent || burst.sendErrors !== 0)
        proof.fail(
          'the lab answered every query',
          `${burst.answered} of ${burst.sent} answered, ${burst.sendErrors} send errors`,
        );
      say(
        `${proof.requested}: dnsAnswered: ${burst.sent} queries, client answered ${burst.answered}, agent ${agent}`,
      );
    }

    // One backend firewalled: the ClusterIP picks a backend per flow, the rule (in FORWARD,
    // after DNAT) drops that backend's share; bursts until it dropped enough, bounded.
    const rule = dnsBackendDropRule(this.lab, {
      client: pod.ip,
      backend: labAddresses.dnsBackends[0],
      comment: 'cro-prove: firewalled DNS backend',
    });
    started = Date.now();
    await Promise.all(this.agents.map((a) => queryCountsQuiet(a)));
    before = await Promise.all(this.agents.map((a) => a.metrics()));
    let sent = 0;
    let answeredByClient = 0;
    let drops = 0;
    await withRules([rule], async () => {
      for (let round = 0; round < 10 && drops < FIREWALLED_NEEDED; round += 1) {
        const firewalled = await query(FIREWALLED_BURST);
        sent += firewalled.sent;
        answeredByClient += firewalled.answered;
        drops = await rule.packets();
      }
    });
    // Reported unanswered one to two periods after sending: bounded by --settle-seconds.
    await this.settle(
      (proof, samples) => unanswered(samples) - unanswered(before[index(proof)]!),
      drops,
    );
    await onePeriodMore();
    windowSeconds = seconds(started);
    for (const [i, proof] of this.agents.entries()) {
      const after = await proof.metrics();
      const agent = unanswered(after) - unanswered(before[i]!);
      const firewall =
        unanswered(after, { cause: 'firewall' }) - unanswered(before[i]!, { cause: 'firewall' });
      proof.phaseSeconds['dnsUnanswered'] = windowSeconds;
      proof.figures['dnsUnanswered'] = {
        agent,
        kernel: drops,
        sent,
        seconds: windowSeconds,
        firewall,
      };
      proof.push(
        equalCheck(
          'DNS queries unanswered (one backend firewalled) = DROP rule matches',
          agent,
          drops,
          'DROP rule matches',
        ),
        equalCheck(
          'each unanswered query with the firewall as cause',
          firewall,
          drops,
          'DROP rule matches',
        ),
        equalCheck(
          'DNS queries answered (one backend firewalled) = answers the client received',
          answered(after) - answered(before[i]!),
          answeredByClient,
          'client',
        ),
      );
      if (drops < FIREWALLED_NEEDED)
        proof.fail(
          'the firewalled backend dropped enough queries',
          `${drops} of ${FIREWALLED_NEEDED} needed in ${sent} queries`,
        );
      if (answeredByClient !== sent - drops)
        proof.fail(
          'the lab answered every query the rule let through',
          `${answeredByClient} answered of ${sent} sent, ${drops} dropped`,
        );
      say(
        `${proof.requested}: dnsUnanswered: ${sent} queries, rule dropped ${drops}, agent ${agent} (firewall ${firewall}), client answered ${answeredByClient}`,
      );
    }
  }
}

interface DnsWindow {
  readonly key: 'dnsFirewall' | 'dnsNoListener' | 'dnsFirewall6' | 'dnsNoListener6';
  readonly reason: string;
  readonly family: 'ipv4' | 'ipv6';
  /** The client address the drops must be labelled with (IPv6 windows). */
  readonly source?: string | undefined;
  readonly scenario: () => Promise<{ dropped: number; sent: number; labCount: string }>;
}

/** Query-direction DNS drops by reason between two scrapes, every reason the agent reported. */
function queryDropsByReason(before: Sample[], after: Sample[]): Record<string, number> {
  const reasons = new Set(
    after
      .filter((s) => s.name === 'conntrack_observer_dns_drops_total')
      .map((s) => s.labels['reason'] ?? ''),
  );
  const counts: Record<string, number> = {};
  for (const reason of reasons) {
    const where = { reason, direction: 'query' };
    const count =
      sumOf(after, 'conntrack_observer_dns_drops_total', where) -
      sumOf(before, 'conntrack_observer_dns_drops_total', where);
    if (count !== 0) counts[reason] = count;
  }
  return counts;
}

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1)
    throw new InvalidArgumentError('must be a positive integer');
  return parsed;
}

function modeList(value: string): ProvedMode[] {
  const modes = value.split(',').filter((mode) => mode !== '');
  for (const mode of modes) {
    if (!(PROBE_MODES as readonly string[]).includes(mode))
      throw new InvalidArgumentError(`"${mode}" is not one of ${PROBE_MODES.join(', ')}`);
  }
  if (modes.length === 0) throw new InvalidArgumentError('no mode given');
  return modes as ProvedMode[];
}

function parseArguments(argv: readonly string[]): ProveOptions {
  const program = new Command()
    .name('prove-agent')
    .description('Proves the agent against the kernel it runs on, with the lab.')
    .addOption(
      new Option(
        '--kernel <id>',
        `matrix kernel (${kernels.map((k) => k.id).join(', ')}): its modes and expected auto mode`,
      ).default(process.env['KERNEL_MATRIX_KERNEL']),
    )
    .addOption(
      new Option('--out <dir>', 'where the results go').default(
        process.env['KERNEL_MATRIX_RESULTS'],
      ),
    )
    .option(
      '--modes <list>',
      'probe modes to prove, comma-separated (default: the kernel’s)',
      modeList,
    )
    .option('--expect-auto <mode>', 'the mode auto must pick (default: the kernel’s)')
    .option(
      '--ready-timeout <seconds>',
      'bound on the agent becoming ready',
      positiveInteger,
      PROBE_ATTACH_TIMEOUT_SECONDS,
    )
    .option('--snat-needed <n>', 'insert failures to race for', positiveInteger, 10)
    .option('--snat6-needed <n>', 'insert failures to race for over IPv6', positiveInteger, 10)
    .option('--clash-needed <n>', 'resolved clashes to race for', positiveInteger, 20)
    .option('--race-max-seconds <s>', 'bound on each race drive', positiveInteger, 150)
    .option('--dns-queries <n>', 'queries per DNS drop scenario', positiveInteger, 20)
    .option('--settle-seconds <s>', 'bound on the agent catching up', positiveInteger, 30)
    .option('--bpftrace <path>', 'the bpftrace the agents run (default: the one on PATH)')
    .exitOverride()
    .parse([...argv], { from: 'user' });
  const parsed = program.opts<Partial<ProveOptions>>();
  if (parsed.out === undefined) throw new Error('no --out and no KERNEL_MATRIX_RESULTS');
  const spec = parsed.kernel === undefined ? undefined : kernelById(parsed.kernel);
  const modes = parsed.modes ?? (spec ? ['auto', ...spec.proof.explicitModes] : undefined);
  if (modes === undefined) throw new Error('outside the matrix (no --kernel): give --modes');
  return {
    ...(parsed as ProveOptions),
    kernel: parsed.kernel ?? release(),
    modes,
    expectAuto: parsed.expectAuto ?? spec?.proof.autoMode,
  };
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('must run as root (namespaces, bpftrace)');
  const parsed = parseArguments(process.argv.slice(2));
  const version = await execa(parsed.bpftrace ?? 'bpftrace', ['--version'], { reject: false });
  const options: ProveOptions = {
    ...parsed,
    ...(version.exitCode === 0 ? { bpftraceVersion: version.stdout.trim() } : {}),
  };
  mkdirSync(options.out, { recursive: true });
  const started = Date.now();
  say(
    `kernel ${options.kernel} (${release()}): proving ${options.modes.join(', ')} with ${options.bpftraceVersion ?? 'a bpftrace that did not say its version'}`,
  );
  // Dual-stack: the IPv4 scenarios run as before, the IPv6 SNAT race beside them.
  const lab = await createLab({ dualStack: true });
  const onSignal = (): void => {
    void lab.destroy().finally(() => process.exit(143));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  say(`lab up after ${seconds(started)} s`);
  const proofs = options.modes.map((mode) => new AgentProof(mode, options));
  let results: ProofResult[] = [];
  try {
    // Started together: their detections and probe compiles overlap, and one window of
    // each scenario then proves every mode.
    await Promise.all(proofs.map((proof) => proof.start(lab)));
    const ready = proofs.filter((proof) => proof.ready);
    if (ready.length > 0) {
      try {
        await new Scenarios(lab, ready, options).run();
      } catch (error) {
        for (const proof of ready)
          proof.fail('proof runs to the end', `stopped by an error: ${(error as Error).stack}`);
      }
    }
  } finally {
    await Promise.allSettled(proofs.map((proof) => proof.stop()));
    results = proofs.map((proof) => proof.result());
    for (const result of results)
      writeFileSync(
        join(options.out, proofFileName(result.requestedMode)),
        `${JSON.stringify(result, null, 2)}\n`,
      );
    await lab.destroy();
  }
  for (const result of results) {
    const failed = result.checks.filter((check) => !check.passed);
    say(
      `${result.requestedMode}: mode ${result.mode ?? 'none'}, ${result.passed ? 'PASS' : 'FAIL'} (${result.checks.length - failed.length}/${result.checks.length} checks) in ${result.seconds['total']} s`,
    );
    for (const check of failed) say(`  FAILED ${check.name}: ${check.detail}`);
  }
  say(`done in ${seconds(started)} s`);
  return results.every((result) => result.passed) ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof Error && 'code' in error && String(error.code).startsWith('commander.')) {
      process.exitCode = 2;
      return;
    }
    say(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 2;
  },
);
