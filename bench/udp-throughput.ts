import { createLab, labAddresses, readSnmpCounter, type Lab } from '../test/lab/index.js';
import { startBuiltAgent, type AgentProcess } from './agent-process.js';
import type { BenchPrograms } from './build-c.js';
import { sumSamples } from './metrics-text.js';

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

export interface UdpRun {
  readonly variant: UdpVariant;
  readonly withAgent: boolean;
  readonly sent: number;
  readonly seconds: number;
  /** Datagrams the sink received, or (dns-dropped) the upstream's Udp NoPorts delta. */
  readonly arrived: number;
  readonly pps: number;
  /** dns-dropped with the agent: its dns_drops_total{reason=NO_SOCKET} and probe lost deltas. */
  readonly agentCounted?: number;
  readonly agentLost?: number;
}

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
): Promise<UdpRun> {
  const port = variant === 'other' ? 9000 : 53;
  const stopSink = variant === 'dns-dropped' ? undefined : await startSink(lab, programs, port);
  const noPortsBefore = await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
  const metricsBefore = agent ? await agent.metrics() : '';
  const blast = await lab.exec(lab.pods[0]!.netns, programs.path('udp-blast'), [
    labAddresses.silentDns,
    String(port),
    String(seconds),
    '32',
  ]);
  const { sent, seconds: elapsed } = JSON.parse(blast.stdout) as { sent: number; seconds: number };
  await sleep(300); // let queues and the probe pipeline drain
  const received = stopSink ? await stopSink() : undefined;
  const noPorts = (await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts')) - noPortsBefore;
  const arrived = received ?? noPorts;
  const run: UdpRun = {
    variant,
    withAgent: agent !== undefined,
    sent,
    seconds: elapsed,
    arrived,
    pps: arrived / elapsed,
  };
  if (!agent || variant !== 'dns-dropped') return run;
  // The agent may still be working through the storm's backlog: wait until its count settles.
  let metricsAfter = await agent.metrics();
  const counted = (text: string) =>
    sumSamples(text, 'conntrack_observer_dns_drops_total', { reason: 'NO_SOCKET' }) +
    sumSamples(text, 'conntrack_observer_probe_events_lost_total');
  for (let i = 0; i < 50; i += 1) {
    await sleep(200);
    const next = await agent.metrics();
    if (counted(next) === counted(metricsAfter)) break;
    metricsAfter = next;
  }
  const delta = (name: string, labels: Record<string, string> = {}) =>
    sumSamples(metricsAfter, name, labels) - sumSamples(metricsBefore, name, labels);
  return {
    ...run,
    agentCounted: delta('conntrack_observer_dns_drops_total', { reason: 'NO_SOCKET' }),
    agentLost: delta('conntrack_observer_probe_events_lost_total'),
  };
}

/** Alternates runs without and with the agent, `rounds` times, each variant each time. */
export async function measureUdpThroughput(
  programs: BenchPrograms,
  rounds = 3,
  seconds = 4,
  log: (line: string) => void = () => {},
): Promise<UdpRun[]> {
  const lab = await createLab();
  const runs: UdpRun[] = [];
  try {
    for (let round = 0; round < rounds; round += 1) {
      for (const variant of udpVariants) {
        const run = await runOnce(lab, programs, variant, undefined, seconds);
        log(JSON.stringify(run));
        runs.push(run);
      }
      const agent = await startBuiltAgent(['--netns-pid', String(lab.node.pid)]);
      try {
        for (const variant of udpVariants) {
          const run = await runOnce(lab, programs, variant, agent, seconds);
          log(JSON.stringify(run));
          runs.push(run);
        }
      } finally {
        await agent.stop();
      }
    }
  } finally {
    await lab.destroy();
  }
  return runs;
}
