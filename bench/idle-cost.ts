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

export interface IdleCost {
  readonly seconds: number;
  readonly agent: ProcessCost;
  readonly bpftrace: ProcessCost;
}

function costOf(pids: number[], seconds: number, before: number[], after: number[], rss: number) {
  const cpu = after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0);
  return { pids, commands: pids.map(commandOf), cpuPercent: (cpu / seconds) * 100, rssBytes: rss };
}

/** The built agent with its probes attached and no traffic: CPU and RSS, agent and children apart. */
export async function measureIdleCost(seconds = 40, settleSeconds = 5): Promise<IdleCost> {
  const agent = await startBuiltAgent();
  try {
    // Start-up work (compiling probes, first scrapes) is not idle cost.
    await new Promise((resolve) => setTimeout(resolve, settleSeconds * 1000));
    const children = agent.children();
    if (children.length === 0) throw new Error('the agent has no probe processes');
    const agentBefore = readProcessTimes(agent.pid).cpuSeconds;
    const childrenBefore = children.map((pid) => readProcessTimes(pid).cpuSeconds);
    const started = process.hrtime.bigint();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    const agentAfter = readProcessTimes(agent.pid);
    const childrenAfter = children.map((pid) => readProcessTimes(pid));
    return {
      seconds: elapsed,
      agent: costOf(
        [agent.pid],
        elapsed,
        [agentBefore],
        [agentAfter.cpuSeconds],
        agentAfter.rssBytes,
      ),
      bpftrace: costOf(
        children,
        elapsed,
        childrenBefore,
        childrenAfter.map((t) => t.cpuSeconds),
        childrenAfter.reduce((sum, t) => sum + t.rssBytes, 0),
      ),
    };
  } finally {
    await agent.stop();
  }
}
