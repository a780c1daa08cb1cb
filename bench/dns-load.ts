import { readdirSync, readFileSync } from 'node:fs';
import { DNS_QUERY_MAP_KEYS } from '../src/probes/catalogue.js';
import { createLab, labAddresses, type Lab } from '../test/lab/index.js';
import { rulePackets } from '../test/lab/rule-counters.js';
import { startBuiltAgent, type AgentProcess } from './agent-process.js';
import type { BenchPrograms } from './build-c.js';
import {
  accountedFor,
  chooseTargetRate,
  loadArgs,
  parseLoadOutput,
  type AgentCount,
  type DnsLoadBound,
  type DnsLoadFigures,
  type DnsLoadRun,
  type LoadOutput,
  type LoadSpec,
} from './dns-load-result.js';
import { sumSamples } from './metrics-text.js';
import { descendantsOf } from './proc-usage.js';

/*
 * DNS query load from a lab pod: `bench/c/dns-load.c` in pod1 asks the kube-dns ClusterIP
 * (DNATed at random to the lab's two dnsmasq backends) for one name, from a few sockets, and
 * matches each answer to its query. The backends are the lab's dnsmasq started without query
 * logging (a log line per query would measure the log file), answering the load name from
 * their configuration. Runs without the agent, then with the built agent and
 * `--dns-query-tracking on`, whose counters for the pod must equal the generator's counts.
 */

/** The name the load asks for; the backends answer it from `--address`. */
export const LOAD_NAME = 'load.test';
const LOAD_ANSWER = '192.0.2.1';
export const DNS_LOAD_AIM = 20_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The lab's backends again, without query logging, answering LOAD_NAME. */
async function startLoadBackends(lab: Lab, programs: BenchPrograms): Promise<void> {
  for (const backend of lab.dnsBackends) {
    backend.process.kill('SIGTERM');
    await backend.process.catch(() => undefined);
  }
  for (const backend of lab.dnsBackends) {
    lab.spawn(lab.upstream.netns, 'dnsmasq', [
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      `--listen-address=${backend.address}`,
      '--port=53',
      `--address=/${LOAD_NAME}/${LOAD_ANSWER}`,
      // The stopped backend's pid file: the machine's default path would be shared by both.
      `--pid-file=${backend.pidFile}`,
      '--log-facility=-',
      '--user=root',
    ]);
  }
  for (const backend of lab.dnsBackends) {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const probe = await runLoad(lab, programs, lab.upstream.netns, {
        server: backend.address,
        name: LOAD_NAME,
        rate: 100,
        seconds: 0.1,
        sockets: 1,
        waitMs: 200,
      }).catch(() => undefined);
      if (probe && probe.answered > 0) break;
      if (Date.now() > deadline)
        throw new Error(`dnsmasq on ${backend.address} did not answer ${LOAD_NAME} within 10 s`);
      await sleep(100);
    }
  }
}

async function runLoad(
  lab: Lab,
  programs: BenchPrograms,
  netns: string,
  spec: LoadSpec,
): Promise<LoadOutput> {
  const { stdout } = await lab.exec(netns, programs.path('dns-load'), loadArgs(spec), {
    timeoutMs: (spec.seconds + spec.waitMs / 1000 + 30) * 1000,
  });
  return parseLoadOutput(stdout);
}

/** Busy jiffies of the whole machine (all CPUs), from the first line of /proc/stat. */
function machineBusyTicks(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1);
  const values = fields.map(Number);
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
  return total - (values[3] ?? 0) - (values[4] ?? 0); // minus idle and iowait
}

const ticksPerSecond = 100; // USER_HZ on Linux

/** Run time in ns of a process and its descendants, summed over their threads (schedstat). */
function runNsOf(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try {
          total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        } catch {
          // the thread ended between the listing and the read
        }
      }
    } catch {
      // the process ended
    }
  }
  return total;
}

interface AgentCounters {
  answered: number;
  unanswered: number;
  untracked: number;
}

function agentCounters(text: string, clientIp: string): AgentCounters {
  return {
    answered: sumSamples(text, 'conntrack_observer_dns_queries_total', { source_ip: clientIp }),
    unanswered: sumSamples(text, 'conntrack_observer_dns_unanswered_queries_total', {
      source_ip: clientIp,
    }),
    untracked: sumSamples(text, 'conntrack_observer_dns_queries_untracked_total'),
  };
}

/**
 * Waits until the agent accounts for every query sent (answered, unanswered or untracked):
 * answers are printed once a second, unanswered queries one to two periods (5 s) later. Bounded: a count that never
 * matches is reported as it stands after `boundMs`.
 */
async function agentCountAfter(
  agent: AgentProcess,
  before: AgentCounters,
  load: LoadOutput,
  clientIp: string,
  boundMs: number,
): Promise<AgentCount> {
  const ended = Date.now();
  for (;;) {
    const now = agentCounters(await agent.metrics(), clientIp);
    const count = {
      answered: now.answered - before.answered,
      unanswered: now.unanswered - before.unanswered,
      untracked: now.untracked - before.untracked,
    };
    const matched = accountedFor({ load, agent: { ...count, settleSeconds: 0 } });
    if (matched || Date.now() - ended > boundMs) {
      if (matched) {
        // One more print of the maps: a query counted twice would show here.
        await sleep(1_200);
        const again = agentCounters(await agent.metrics(), clientIp);
        count.answered = again.answered - before.answered;
        count.unanswered = again.unanswered - before.unanswered;
        count.untracked = again.untracked - before.untracked;
      }
      return { ...count, settleSeconds: (Date.now() - ended) / 1000 };
    }
    await sleep(500);
  }
}

async function measuredRun(
  lab: Lab,
  programs: BenchPrograms,
  spec: LoadSpec,
  mode: DnsLoadRun['mode'],
  agent: AgentProcess | undefined,
): Promise<DnsLoadRun> {
  const pod = lab.pods[0]!;
  const agentPids = agent ? [agent.pid, ...descendantsOf(agent.pid)] : [];
  const before = agent ? agentCounters(await agent.metrics(), pod.ip) : undefined;
  const busyBefore = machineBusyTicks();
  const agentNsBefore = runNsOf(agentPids);
  const started = Date.now();
  const load = await runLoad(lab, programs, pod.netns, spec);
  const wallSeconds = (Date.now() - started) / 1000;
  const agentNs = runNsOf(agentPids) - agentNsBefore;
  const busy = machineBusyTicks() - busyBefore;
  const run: DnsLoadRun = {
    mode,
    withAgent: agent !== undefined,
    load,
    answeredPerSecond: load.answered / load.seconds,
    machineCpuPercent: (busy / ticksPerSecond / wallSeconds) * 100,
  };
  if (!agent || !before) return run;
  return {
    ...run,
    agentCpuPercent: (agentNs / 1e9 / wallSeconds) * 100,
    agent: await agentCountAfter(agent, before, load, pod.ip, 25_000),
  };
}

/**
 * Queries no one answers (the node's firewall drops every query to `blockedDns`), more of them
 * within one period than the pending map holds in both generations: the agent must count each
 * one either unanswered or untracked.
 */
/** The built agent watching the lab node, DNS query tracking on. */
function startTrackingAgent(lab: Lab): Promise<AgentProcess> {
  return startBuiltAgent(['--netns-pid', String(lab.node.pid), '--dns-query-tracking', 'on']);
}

async function measureBound(lab: Lab, programs: BenchPrograms): Promise<DnsLoadBound> {
  const pod = lab.pods[0]!;
  const dropRule = () =>
    rulePackets(lab, {
      chain: 'FORWARD',
      matches: (line) => /\bDROP\b/.test(line) && line.includes(labAddresses.blockedDns),
      what: `the DROP rule for ${labAddresses.blockedDns}`,
    });
  const agent = await startTrackingAgent(lab);
  try {
    await sleep(2_000);
    const before = agentCounters(await agent.metrics(), pod.ip);
    const dropsBefore = await dropRule();
    // 4 × the bound in 3 s: more than both generations hold, whichever tick falls inside.
    const queries = DNS_QUERY_MAP_KEYS * 4;
    const load = await runLoad(lab, programs, pod.netns, {
      server: labAddresses.blockedDns,
      name: LOAD_NAME,
      rate: Math.ceil(queries / 3),
      seconds: 3,
      sockets: 8,
      waitMs: 200,
    });
    const firewallDrops = (await dropRule()) - dropsBefore;
    const count = await agentCountAfter(agent, before, load, pod.ip, 25_000);
    return { mapKeys: DNS_QUERY_MAP_KEYS, load, firewallDrops, agent: count };
  } finally {
    await agent.stop();
  }
}

export interface DnsLoadOptions {
  readonly rounds?: number;
  readonly seconds?: number;
  readonly sockets?: number;
  readonly log?: (line: string) => void;
}

/**
 * A calibration run (unpaced, no agent) picks the target rate: DNS_LOAD_AIM, or 90 % of what
 * the backends answered if they answer less. Then `rounds` times: paced and unpaced without
 * the agent, the agent started, the same two with it, the agent stopped. Then the bound run.
 */
export async function measureDnsLoad(
  programs: BenchPrograms,
  options: DnsLoadOptions = {},
): Promise<DnsLoadFigures> {
  const rounds = options.rounds ?? 3;
  const seconds = options.seconds ?? 4;
  const sockets = options.sockets ?? 8;
  const log = options.log ?? (() => {});
  const lab = await createLab();
  try {
    await startLoadBackends(lab, programs);
    const spec = (rate: number): LoadSpec => ({
      server: labAddresses.clusterDns,
      name: LOAD_NAME,
      rate,
      seconds,
      sockets,
      waitMs: 1_000,
    });
    const calibration = await measuredRun(lab, programs, spec(0), 'max', undefined);
    log(`calibration ${JSON.stringify(calibration)}`);
    const targetRate = chooseTargetRate(DNS_LOAD_AIM, calibration.answeredPerSecond);
    const runs: DnsLoadRun[] = [];
    const record = (run: DnsLoadRun) => {
      log(JSON.stringify(run));
      runs.push(run);
    };
    for (let round = 0; round < rounds; round += 1) {
      record(await measuredRun(lab, programs, spec(targetRate), 'paced', undefined));
      record(await measuredRun(lab, programs, spec(0), 'max', undefined));
      const agent = await startTrackingAgent(lab);
      try {
        await sleep(2_000); // start-up work is not the load's cost
        record(await measuredRun(lab, programs, spec(targetRate), 'paced', agent));
        record(await measuredRun(lab, programs, spec(0), 'max', agent));
      } finally {
        await agent.stop();
      }
    }
    const bound = await measureBound(lab, programs);
    log(`bound ${JSON.stringify(bound)}`);
    return {
      targetRate,
      ceilingAnsweredPerSecond: calibration.answeredPerSecond,
      seconds,
      sockets,
      runs,
      bound,
    };
  } finally {
    await lab.destroy();
  }
}
