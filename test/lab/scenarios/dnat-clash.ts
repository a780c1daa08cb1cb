import { generatorPath } from '../generators.js';
import { counterDelta, type ConntrackStats } from '../kernel-counters.js';
import { labAddresses, labAddresses6, type Lab } from '../lab.js';

export interface DnatClashOptions {
  readonly rounds: number;
  /** `ipv6`: to the IPv6 ClusterIP (ip6tables DNAT), from the pod's IPv6 address; needs a dual-stack lab. */
  readonly family?: 'ipv4' | 'ipv6' | undefined;
}

export interface DnatClashResult {
  readonly scenario: 'dnat-clash';
  readonly rounds: number;
  readonly datagramsSent: number;
  readonly sendErrors: number;
  readonly kernel: ConntrackStats;
}

/**
 * One socket in a pod, two threads on two CPUs sending at the same instant to the ClusterIP:
 * the A + AAAA pattern of glibc and musl. The kernel resolves the clash (clash_resolve).
 */
export async function runDnatClash(lab: Lab, options: DnatClashOptions): Promise<DnatClashResult> {
  const binary = await generatorPath('dnat-clash', lab.buildDir);
  const [pod] = lab.pods;
  const before = await lab.nodeConntrackStats();
  const { stdout } = await lab.exec(
    pod!.netns,
    binary,
    [
      pod!.netns,
      options.family === 'ipv6' ? labAddresses6.clusterDns : labAddresses.clusterDns,
      '53',
      String(options.rounds),
    ],
    {
      timeoutMs: 120_000 + options.rounds,
    },
  );
  const after = await lab.nodeConntrackStats();
  const summary = JSON.parse(stdout.trim()) as { rounds: number; sent: number; sendErrors: number };
  return {
    scenario: 'dnat-clash',
    rounds: summary.rounds,
    datagramsSent: summary.sent,
    sendErrors: summary.sendErrors,
    kernel: counterDelta(before, after),
  };
}
