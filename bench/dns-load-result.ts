/*
 * The pure side of the DNS query load benchmark: the generator's arguments and its JSON line,
 * read with clear errors, and the figures drawn from a set of runs.
 */
import { median } from './stats.js';

/** What `bench/c/dns-load.c` is asked to do. */
export interface LoadSpec {
  readonly server: string;
  readonly name: string;
  /** Queries per second; 0 = as fast as the sockets take them. */
  readonly rate: number;
  readonly seconds: number;
  readonly sockets: number;
  /** How long answers are awaited after the last query. */
  readonly waitMs: number;
}

/** The generator's own count of one run. */
export interface LoadOutput {
  readonly sent: number;
  readonly answered: number;
  readonly unanswered: number;
  /** Queries given up when their socket reused the id (more than 65,536 on one socket). */
  readonly late: number;
  /** Datagrams that matched no pending query. */
  readonly stray: number;
  readonly sendErrors: number;
  /** Sending time. */
  readonly seconds: number;
  readonly rate: number;
  readonly sockets: number;
}

export class LoadSpecError extends Error {
  override readonly name = 'LoadSpecError';
  readonly code = 'DNS_LOAD_BAD_SPEC';
}

export class LoadOutputError extends Error {
  override readonly name = 'LoadOutputError';
  readonly code = 'DNS_LOAD_BAD_OUTPUT';
}

const isWhole = (value: number, min: number, max: number) =>
  Number.isInteger(value) && value >= min && value <= max;

/** The generator's argument list, after checking the spec as the generator itself would. */
export function loadArgs(spec: LoadSpec, port = 53): string[] {
  const problems: string[] = [];
  if (!/^(\d{1,3})(\.\d{1,3}){3}$/.test(spec.server)) problems.push('server: an IPv4 address');
  if (spec.name.length < 1 || spec.name.length > 253 || /\s/.test(spec.name))
    problems.push('name: 1 to 253 characters, no blanks');
  if (!isWhole(spec.rate, 0, 10_000_000)) problems.push('rate: an integer from 0 to 10,000,000');
  if (!(spec.seconds > 0 && spec.seconds <= 3600)) problems.push('seconds: above 0, at most 3600');
  if (!isWhole(spec.sockets, 1, 64)) problems.push('sockets: an integer from 1 to 64');
  if (!isWhole(spec.waitMs, 0, 60_000)) problems.push('waitMs: an integer from 0 to 60,000');
  if (problems.length > 0) throw new LoadSpecError(`bad DNS load spec: ${problems.join('; ')}`);
  return [
    spec.server,
    String(port),
    spec.name,
    String(spec.rate),
    String(spec.seconds),
    String(spec.sockets),
    String(spec.waitMs),
  ];
}

const countFields = ['sent', 'answered', 'unanswered', 'late', 'stray', 'sendErrors'] as const;

/** Reads the generator's last stdout line; anything else is a LoadOutputError naming the field. */
export function parseLoadOutput(stdout: string): LoadOutput {
  const line = stdout.trim().split('\n').pop() ?? '';
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new LoadOutputError(`dns-load printed no JSON: ${JSON.stringify(line.slice(0, 200))}`, {
      cause: error,
    });
  }
  if (typeof value !== 'object' || value === null)
    throw new LoadOutputError('dns-load printed JSON that is not an object');
  const record = value as Record<string, unknown>;
  const field = (key: string): number => {
    const v = record[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new LoadOutputError(`dns-load output: ${key} is not a number ≥ 0 (${String(v)})`);
    return v;
  };
  for (const key of countFields) {
    if (!Number.isInteger(field(key)))
      throw new LoadOutputError(`dns-load output: ${key} is not an integer`);
  }
  const output: LoadOutput = {
    sent: field('sent'),
    answered: field('answered'),
    unanswered: field('unanswered'),
    late: field('late'),
    stray: field('stray'),
    sendErrors: field('sendErrors'),
    seconds: field('seconds'),
    rate: field('rate'),
    sockets: field('sockets'),
  };
  if (output.answered + output.unanswered !== output.sent)
    throw new LoadOutputError(
      `dns-load output: answered ${output.answered} + unanswered ${output.unanswered} ≠ sent ${output.sent}`,
    );
  return output;
}

/** One generator run of the benchmark, with or without the agent. */
export interface DnsLoadRun {
  /** `paced`: at the target rate; `max`: as fast as the sockets take them. */
  readonly mode: 'paced' | 'max';
  readonly withAgent: boolean;
  readonly load: LoadOutput;
  /** Answered queries per second of sending time. */
  readonly answeredPerSecond: number;
  /** The whole machine's busy CPU over the generator's run, % of one core (all CPUs summed). */
  readonly machineCpuPercent: number;
  /** With the agent: its node process and bpftrace children over the same window, % of one core. */
  readonly agentCpuPercent?: number;
  /** With the agent: its counters' deltas for the generator's pod. */
  readonly agent?: AgentCount;
}

export interface AgentCount {
  /** conntrack_observer_dns_queries_total delta (answered, every class). */
  readonly answered: number;
  /** conntrack_observer_dns_unanswered_queries_total delta. */
  readonly unanswered: number;
  /** conntrack_observer_dns_queries_untracked_total delta (no room in the pending map). */
  readonly untracked: number;
  /** Seconds from the generator's end until the counts matched it (or the wait ran out). */
  readonly settleSeconds: number;
}

/** The run where no query is ever answered and the pending map overflows. */
export interface DnsLoadBound {
  /** Keys the pending map holds per generation (BPFTRACE_MAP_KEYS_MAX given to the probe). */
  readonly mapKeys: number;
  readonly load: LoadOutput;
  /** Packets the node's DROP rule matched over the run: every query was dropped there. */
  readonly firewallDrops: number;
  readonly agent: AgentCount;
}

export interface DnsLoadFigures {
  readonly targetRate: number;
  /** Answered/s of the calibration run (unpaced, no agent) that chose the target rate. */
  readonly ceilingAnsweredPerSecond: number;
  readonly seconds: number;
  readonly sockets: number;
  readonly runs: readonly DnsLoadRun[];
  readonly bound: DnsLoadBound;
}

/** The rate the paced runs ask for: the aim, or 90 % of what the server answered unpaced. */
export function chooseTargetRate(aim: number, ceilingAnsweredPerSecond: number): number {
  if (ceilingAnsweredPerSecond >= aim) return aim;
  return Math.max(1000, Math.floor((ceilingAnsweredPerSecond * 0.9) / 1000) * 1000);
}

/**
 * Every query counted exactly: the agent's answered and unanswered deltas equal the
 * generator's, none untracked.
 */
export function countedExactly(run: { load: LoadOutput; agent?: AgentCount }): boolean {
  return (
    run.agent !== undefined &&
    run.agent.untracked === 0 &&
    run.agent.answered === run.load.answered &&
    run.agent.unanswered === run.load.unanswered
  );
}

/**
 * Every query accounted for: answered, unanswered or untracked (the pending map was full when
 * it left), adding up to what was sent, and no more answers than the generator received.
 */
export function accountedFor(run: { load: LoadOutput; agent?: AgentCount }): boolean {
  return (
    run.agent !== undefined &&
    run.agent.answered <= run.load.answered &&
    run.agent.answered + run.agent.unanswered + run.agent.untracked === run.load.sent
  );
}

export interface ModeSummary {
  readonly without: number;
  readonly withAgent: number;
  /** withAgent / without, of the medians of answered/s. */
  readonly kept: number;
  /** Machine busy CPU over the generator's runs, % of one core (medians without and with). */
  readonly machineCpuWithout: number;
  readonly machineCpuWith: number;
  /** Machine busy CPU added by the agent per 1,000 answered q/s, % of one core (medians). */
  readonly machineCpuPer1000: number;
  /** Agent (node + bpftrace) CPU per 1,000 answered q/s, % of one core (median). */
  readonly agentCpuPer1000: number;
  readonly exactRuns: number;
  readonly accountedRuns: number;
  readonly agentRuns: number;
}

export function summarizeMode(runs: readonly DnsLoadRun[], mode: DnsLoadRun['mode']): ModeSummary {
  const of = (withAgent: boolean) =>
    runs.filter((run) => run.mode === mode && run.withAgent === withAgent);
  const without = of(false);
  const withAgent = of(true);
  const perSecond = (list: readonly DnsLoadRun[]) =>
    median(list.map((run) => run.answeredPerSecond));
  const cpuPer1000 = (list: readonly DnsLoadRun[], cpu: (run: DnsLoadRun) => number) =>
    median(list.map((run) => cpu(run) / (run.answeredPerSecond / 1000)));
  const withoutRate = perSecond(without);
  return {
    without: withoutRate,
    withAgent: perSecond(withAgent),
    kept: perSecond(withAgent) / withoutRate,
    machineCpuWithout: median(without.map((run) => run.machineCpuPercent)),
    machineCpuWith: median(withAgent.map((run) => run.machineCpuPercent)),
    machineCpuPer1000:
      cpuPer1000(withAgent, (run) => run.machineCpuPercent) -
      cpuPer1000(without, (run) => run.machineCpuPercent),
    agentCpuPer1000: cpuPer1000(withAgent, (run) => run.agentCpuPercent ?? Number.NaN),
    exactRuns: withAgent.filter(countedExactly).length,
    accountedRuns: withAgent.filter(accountedFor).length,
    agentRuns: withAgent.length,
  };
}
