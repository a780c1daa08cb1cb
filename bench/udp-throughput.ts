import { availableParallelism } from 'node:os';
import { execa } from 'execa';
import { createLab, labAddresses, readSnmpCounter, type Lab } from '../test/lab/index.js';
import { ATTACHED_NOTICE, NOTIFY_ATTACHED_ENV } from '../src/sources/bpftrace/probe-stderr.js';
import { startLabAgent, type AgentProcess } from './agent-process.js';
import type { BenchPrograms } from './build-c.js';
import type { NewerBpftrace } from './newer-bpftrace.js';
import { softirqThreadOf, watchRunTime } from './sender-cpu.js';
import { sumSamples } from './metrics-text.js';
import type { PairedRun } from './paired-runs.js';

/*
 * Traffic: pod1 → 192.0.2.99 (the lab's upstream address nothing normally listens on), through
 * the node namespace's bridge, forwarding and MASQUERADE, the path a pod's DNS query takes.
 * - dns: a sink listens on 192.0.2.99:53; every datagram has port 53, so the DNS-drop probe
 *   parses each freed skb's headers on the way.
 * - other: a sink on 192.0.2.99:9000; the probe's port test rejects them.
 * - dns-dropped: nothing listens on 192.0.2.99:53; the upstream frees every datagram with
 *   NO_SOCKET, so the probe prints one line per packet: the storm case.
 */
export type UdpVariant = 'dns' | 'other' | 'dns-dropped';
export const udpVariants: readonly UdpVariant[] = ['dns', 'other', 'dns-dropped'];

export interface UdpRun extends PairedRun {
  readonly variant: UdpVariant;
  readonly withAgent: boolean;
  /**
   * dns-dropped only: an empty bpftrace program on `tracepoint:skb:kfree_skb` was attached
   * instead of the agent — the floor of any design on that tracepoint.
   */
  readonly withEmptyProbe?: boolean;
  /**
   * Set on the agent's runs with the newer bpftrace (bench/newer-bpftrace.ts, `--bpftrace`):
   * what its `--version` prints. Absent on every other run: with the agent, the machine's
   * bpftrace, the one every figure of section 4 is computed from.
   */
  readonly bpftrace?: string;
  readonly sent: number;
  readonly seconds: number;
  /** Datagrams the sink received, or (dns-dropped) the upstream's Udp NoPorts delta. */
  readonly arrived: number;
  readonly pps: number;
  /**
   * CPU seconds the sender's work ran during the send: its thread and its CPU's ksoftirqd
   * (bench/sender-cpu.ts); at most `seconds`, less by what other work and the host took.
   */
  readonly senderCpuSeconds: number;
  /** dns-dropped with the agent: its dns_drops_total{reason=NO_SOCKET} and probe lost deltas. */
  readonly agentCounted?: number;
  readonly agentLost?: number;
  /** dns-dropped with the agent: how the probe path fared over the round. */
  readonly storm?: StormAccounting;
}

/** Deltas over one storm round of the agent's probe metrics (summed over its probes). */
export interface StormAccounting {
  /** dns_drops_total of any reason: NO_SOCKET drops counted under another label would show here. */
  readonly countedAnyReason: number;
  readonly decoded: number;
  readonly rejected: number;
  readonly restarts: number;
  /** Lowest sum of probe_up seen during the round (the agent's probes all up = their number). */
  readonly minProbesUp: number;
  readonly probes: number;
  /** dropped - counted - lost: what the agent neither counted nor reported lost. */
  readonly unaccounted: number;
  /** Seconds from the sender's end until the agent's counts stopped moving. */
  readonly settleSeconds: number;
}

/*
 * The sender runs on one CPU, the last: the datagrams are sent, forwarded and freed in its
 * own softirq on that CPU (veth hands them over to the local CPU's backlog), so a probe's
 * per-packet work comes out of that CPU's time and is not spread by migrations between runs.
 * The agent and its bpftrace process are left to the scheduler, as on a node.
 */
const SENDER_CPU = availableParallelism() - 1;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function startSink(lab: Lab, programs: BenchPrograms, port: number) {
  const sink = lab.spawn(lab.upstream.netns, programs.path('udp-sink'), [
    labAddresses.silentDns,
    String(port),
  ]);
  let text = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the UDP sink did not start')), 10_000);
    sink.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    sink.catch(reject);
  });
  return async (): Promise<number> => {
    sink.kill('SIGTERM');
    await sink;
    const last = text.trim().split('\n').pop() ?? '';
    return (JSON.parse(last) as { received: number }).received;
  };
}

async function runOnce(
  lab: Lab,
  programs: BenchPrograms,
  variant: UdpVariant,
  agent: AgentProcess | undefined,
  seconds: number,
  position: PairedRun['position'],
  senderSoftirqThread: number,
): Promise<UdpRun> {
  const port = variant === 'other' ? 9000 : 53;
  const stopSink = variant === 'dns-dropped' ? undefined : await startSink(lab, programs, port);
  const noPortsBefore = await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
  const metricsBefore = agent ? await agent.metrics() : '';
  const watch = agent && variant === 'dns-dropped' ? watchProbesUp(agent) : undefined;
  const softirqThreadSoFar = await watchRunTime(senderSoftirqThread);
  const blast = await lab.exec(lab.pods[0]!.netns, 'taskset', [
    '-c',
    String(SENDER_CPU),
    programs.path('udp-blast'),
    labAddresses.silentDns,
    String(port),
    String(seconds),
    '32',
  ]);
  const blastEnded = Date.now();
  const softirqThreadSeconds = await softirqThreadSoFar();
  const {
    sent,
    seconds: elapsed,
    cpu_seconds: threadCpuSeconds,
  } = JSON.parse(blast.stdout) as { sent: number; seconds: number; cpu_seconds: number };
  const senderCpuSeconds = threadCpuSeconds + softirqThreadSeconds;
  await sleep(300); // let queues and the probe pipeline drain
  const received = stopSink ? await stopSink() : undefined;
  const noPorts = (await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts')) - noPortsBefore;
  const arrived = received ?? noPorts;
  const run: UdpRun = {
    variant,
    position,
    withAgent: agent !== undefined,
    sent,
    seconds: elapsed,
    arrived,
    pps: arrived / elapsed,
    senderCpuSeconds,
  };
  if (!agent || variant !== 'dns-dropped') return run;
  // The agent may still be working through the storm's backlog (bpftrace's perf buffers, the
  // pipe, its event loop) and the kernel's counts are printed once a second: wait until nothing
  // it counts has moved for 1.5 s.
  const moving = (text: string) =>
    sumSamples(text, 'conntrack_observer_dns_drops_total') +
    sumSamples(text, 'conntrack_observer_probe_events_decoded_total') +
    sumSamples(text, 'conntrack_observer_probe_events_lost_total') +
    sumSamples(text, 'conntrack_observer_probe_lines_rejected_total');
  let metricsAfter = await agent.metrics();
  for (let still = 0; still < 3 && Date.now() - blastEnded < 60_000;) {
    await sleep(500);
    const next = await agent.metrics();
    still = moving(next) === moving(metricsAfter) ? still + 1 : 0;
    metricsAfter = next;
  }
  const settleSeconds = (Date.now() - blastEnded) / 1000;
  const minProbesUp = Math.min(
    await watch!.stop(),
    sumSamples(metricsAfter, 'conntrack_observer_probe_up'),
  );
  const delta = (name: string, labels: Record<string, string> = {}) =>
    sumSamples(metricsAfter, name, labels) - sumSamples(metricsBefore, name, labels);
  const agentCounted = delta('conntrack_observer_dns_drops_total', { reason: 'NO_SOCKET' });
  const agentLost = delta('conntrack_observer_probe_events_lost_total');
  return {
    ...run,
    agentCounted,
    agentLost,
    storm: {
      countedAnyReason: delta('conntrack_observer_dns_drops_total'),
      decoded: delta('conntrack_observer_probe_events_decoded_total'),
      rejected: delta('conntrack_observer_probe_lines_rejected_total'),
      restarts: delta('conntrack_observer_probe_restarts_total'),
      minProbesUp,
      probes: countSamples(metricsAfter, 'conntrack_observer_probe_up'),
      unaccounted: arrived - agentCounted - agentLost,
      settleSeconds,
    },
  };
}

/** Polls the agent's probe_up while the storm runs; stop() gives the lowest sum seen. */
function watchProbesUp(agent: AgentProcess): { stop(): Promise<number> } {
  let lowest = Number.POSITIVE_INFINITY;
  let running = true;
  const polling = (async () => {
    while (running) {
      try {
        lowest = Math.min(lowest, sumSamples(await agent.metrics(), 'conntrack_observer_probe_up'));
      } catch {
        lowest = 0; // an agent that does not answer is not up
      }
      // Once a second: a restart takes longer than that to recompile, and each poll makes the
      // agent render its metrics, work a Prometheus scraping every 15-30 s does not ask of it;
      // polled faster, the benchmark itself would take CPU from the sender it measures.
      await sleep(1000);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await polling;
      return lowest;
    },
  };
}

function countSamples(text: string, name: string): number {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`)).length;
}

/** An empty program on the drop tracepoint, attached: the cost every design pays. */
async function startEmptyProbe(): Promise<{ stop(): Promise<void> }> {
  const child = execa('bpftrace', ['-f', 'json', '-e', 'tracepoint:skb:kfree_skb {}'], {
    reject: false,
    stdin: 'ignore',
    buffer: false,
    env: NOTIFY_ATTACHED_ENV,
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the empty probe did not attach')), 60_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes(ATTACHED_NOTICE)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void child.then(() => reject(new Error('the empty probe exited before attaching')));
  });
  return {
    stop: async () => {
      child.kill('SIGINT');
      await child;
    },
  };
}

/**
 * Windows of runs without any probe (each variant once) alternate with `rounds` rounds, each: the
 * empty program's dns-dropped run, then the agent started and each variant run, then the agent
 * stopped, then the agent started again on the newer bpftrace and the storm (dns-dropped) run
 * once with it, then that agent stopped. Window 0 comes first; round r lies between windows r-1
 * and r, its bracket (bench/paired-runs.ts). `newer` is resolved by the caller, before the lab
 * exists.
 */
export async function measureUdpThroughput(
  programs: BenchPrograms,
  newer: NewerBpftrace,
  rounds = 7,
  seconds = 4,
  log: (line: string) => void = () => {},
): Promise<UdpRun[]> {
  const softirqThread = await softirqThreadOf(SENDER_CPU);
  const lab = await createLab();
  const runs: UdpRun[] = [];
  const record = (run: UdpRun) => {
    log(JSON.stringify(run));
    runs.push(run);
  };
  const windowWithout = async (window: number) => {
    for (const variant of udpVariants) {
      record(await runOnce(lab, programs, variant, undefined, seconds, { window }, softirqThread));
    }
  };
  try {
    await windowWithout(0);
    for (let round = 1; round <= rounds; round += 1) {
      const floor = await startEmptyProbe();
      try {
        const run = await runOnce(
          lab,
          programs,
          'dns-dropped',
          undefined,
          seconds,
          { round },
          softirqThread,
        );
        record({ ...run, withEmptyProbe: true });
      } finally {
        await floor.stop();
      }
      const agent = await startLabAgent(lab.node.pid);
      try {
        for (const variant of udpVariants) {
          record(await runOnce(lab, programs, variant, agent, seconds, { round }, softirqThread));
        }
      } finally {
        await agent.stop();
      }
      // The storm alone on the newer bpftrace: the one variant whose cost is counting in the
      // kernel, which that bpftrace does in place; one run, to keep each round short.
      const onNewer = await startLabAgent(lab.node.pid, newer.path);
      try {
        const run = await runOnce(
          lab,
          programs,
          'dns-dropped',
          onNewer,
          seconds,
          { round },
          softirqThread,
        );
        record({ ...run, bpftrace: newer.version });
      } finally {
        await onNewer.stop();
      }
      await windowWithout(round);
    }
  } finally {
    await lab.destroy();
  }
  return runs;
}
