import { readdirSync, readFileSync } from 'node:fs';
import { execa } from 'execa';
import { startBuiltAgent } from './agent-process.js';
import { commandOf, readProcessTimes } from './proc-usage.js';

export interface ProcessCost {
  readonly pids: number[];
  readonly commands: string[];
  /** CPU time over the interval as a percentage of one core. */
  readonly cpuPercent: number;
  /** Summed VmRSS at the end of the interval. */
  readonly rssBytes: number;
}

/** Exact run time of a process's threads over the window, from /proc/<pid>/task/<tid>/schedstat. */
export interface RunTime {
  /** Run time over the interval as a percentage of one core. */
  readonly cpuPercent: number;
  /** Times the process went to sleep (voluntary context switches) per second: its wake-ups. */
  readonly wakeupsPerSecond: number;
  /** Run time per wake-up, milliseconds. */
  readonly msPerWakeup: number;
}

export interface BaselineCost {
  /** What the bare Node process runs (`node -e …`). */
  readonly script: string;
  readonly tick: ProcessCost;
  readonly exact: RunTime;
}

export interface IdleCost {
  readonly seconds: number;
  /** Seconds between readiness and the start of the window: start-up work is not idle cost. */
  readonly settleSeconds: number;
  readonly agent: ProcessCost;
  /** The agent's run time by schedstat (tick-sampled utime+stime rounds to 4 ms per tick). */
  readonly agentExact: RunTime;
  readonly bpftrace: ProcessCost;
  /** Probe events the agent decoded during the window: 0 makes it an idle window. */
  readonly decodedEvents: number;
  /** Bare Node processes measured over the same window, beside the agent. */
  readonly baselines: BaselineCost[];
}

/**
 * A Node process with a one-second timer, and one with no timer (kept alive by a listening
 * socket): what a process costs on this machine for each wake-up, whatever it does then.
 */
export const BARE_NODE_BASELINES: readonly string[] = [
  'setInterval(() => {}, 1000)',
  'require("node:net").createServer().listen(0, "127.0.0.1")',
];

function costOf(pids: number[], seconds: number, before: number[], after: number[], rss: number) {
  const cpu = after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0);
  return { pids, commands: pids.map(commandOf), cpuPercent: (cpu / seconds) * 100, rssBytes: rss };
}

interface RunSample {
  readonly runNs: number;
  readonly sleeps: number;
}

/** Run time summed over the threads alive now, and the times the process went to sleep. */
function readRunSample(pid: number): RunSample {
  let runNs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      runNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read; an idle process starts none
    }
  }
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const sleeps = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  return { runNs, sleeps };
}

function runTimeOf(before: RunSample, after: RunSample, seconds: number): RunTime {
  const runMs = (after.runNs - before.runNs) / 1e6;
  const wakeups = after.sleeps - before.sleeps;
  return {
    cpuPercent: runMs / 10 / seconds,
    wakeupsPerSecond: wakeups / seconds,
    msPerWakeup: wakeups > 0 ? runMs / wakeups : 0,
  };
}

function decodedEventsIn(metricsText: string): number {
  let total = 0;
  for (const line of metricsText.split('\n')) {
    if (line.startsWith('conntrack_observer_probe_events_decoded_total{')) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The built agent with its probes attached and no traffic: CPU and RSS, agent and children
 * apart, and bare Node processes started with it and measured over the same window. The
 * window starts `settleSeconds` after readiness, past start-up compiling and the first GCs.
 * The metrics are read just before and just after the window, never inside it.
 */
export async function measureIdleCost(
  seconds = 60,
  settleSeconds = 30,
  agentArgs: readonly string[] = [],
): Promise<IdleCost> {
  const baselineProcesses = BARE_NODE_BASELINES.map((script) =>
    execa('node', ['-e', script], { reject: false, stdout: 'ignore', stderr: 'ignore' }),
  );
  try {
    const agent = await startBuiltAgent(agentArgs);
    try {
      await sleep(settleSeconds * 1000);
      const children = agent.children();
      if (children.length === 0) throw new Error('the agent has no probe processes');
      const decodedBefore = decodedEventsIn(await agent.metrics());
      const pids = [agent.pid, ...baselineProcesses.map((p) => p.pid ?? -1)];
      if (pids.some((pid) => pid < 0)) throw new Error('a baseline process did not start');
      const ticksBefore = pids.map((pid) => readProcessTimes(pid).cpuSeconds);
      const runBefore = pids.map(readRunSample);
      const childrenBefore = children.map((pid) => readProcessTimes(pid).cpuSeconds);
      const started = process.hrtime.bigint();
      await sleep(seconds * 1000);
      const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
      const runAfter = pids.map(readRunSample);
      const ticksAfter = pids.map((pid) => readProcessTimes(pid));
      const childrenAfter = children.map((pid) => readProcessTimes(pid));
      const decodedAfter = decodedEventsIn(await agent.metrics());
      const tickCost = (index: number): ProcessCost => {
        const after = ticksAfter[index]!;
        return costOf(
          [pids[index]!],
          elapsed,
          [ticksBefore[index]!],
          [after.cpuSeconds],
          after.rssBytes,
        );
      };
      return {
        seconds: elapsed,
        settleSeconds,
        agent: tickCost(0),
        agentExact: runTimeOf(runBefore[0]!, runAfter[0]!, elapsed),
        bpftrace: costOf(
          children,
          elapsed,
          childrenBefore,
          childrenAfter.map((t) => t.cpuSeconds),
          childrenAfter.reduce((sum, t) => sum + t.rssBytes, 0),
        ),
        decodedEvents: decodedAfter - decodedBefore,
        baselines: BARE_NODE_BASELINES.map((script, index) => ({
          script,
          tick: tickCost(index + 1),
          exact: runTimeOf(runBefore[index + 1]!, runAfter[index + 1]!, elapsed),
        })),
      };
    } finally {
      await agent.stop();
    }
  } finally {
    for (const baseline of baselineProcesses) baseline.kill('SIGKILL');
    await Promise.all(baselineProcesses);
  }
}
