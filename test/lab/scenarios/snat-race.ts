import { createInterface } from 'node:readline';
import { generatorPath } from '../generators.js';
import { counterDelta, type ConntrackStats } from '../kernel-counters.js';
import { labAddresses, type Lab, type LabPod } from '../lab.js';

export interface SnatRaceOptions {
  readonly rounds: number;
  /** Pause between rounds; 0 races as fast as the senders can synchronise. */
  readonly intervalMs?: number;
  readonly destination?: string;
  /**
   * The racing pods, the first one's sender on CPU 0 and the second one's on CPU 1; default the
   * lab's first two. Which CPU gets there first can favour one side, so swapping them spreads
   * the losses.
   */
  readonly pods?: readonly [LabPod, LabPod];
}

export interface SnatRaceResult {
  readonly scenario: 'snat-race';
  readonly rounds: number;
  readonly datagramsSent: number;
  readonly sendErrors: number;
  /** Node namespace conntrack counters, after minus before. */
  readonly kernel: ConntrackStats;
}

interface GeneratorSummary {
  rounds: number;
  sent: number;
  sendErrors: number;
}

function lanes(lab: Lab, pods?: readonly [LabPod, LabPod]): readonly [LabPod, LabPod] {
  if (pods) return pods;
  const [podA, podB] = lab.pods;
  if (!podA || !podB) throw new Error('snat-race needs two pods');
  return [podA, podB];
}

function senderArgs(
  [podA, podB]: readonly [LabPod, LabPod],
  destination: string,
  rounds: number,
  intervalMs: number,
  ports: { base: number; span: number },
): string[] {
  return [
    podA.netns,
    podB.netns,
    destination,
    '53',
    String(ports.base),
    String(ports.span),
    String(rounds),
    String(Math.round(intervalMs * 1000)),
  ];
}

function parseSummary(stdout: string): GeneratorSummary {
  const last = stdout.trim().split('\n').pop() ?? '';
  const summary = JSON.parse(last) as Partial<GeneratorSummary>;
  if (typeof summary.rounds !== 'number' || typeof summary.sent !== 'number') {
    throw new Error(`snat-race printed no summary: ${stdout}`);
  }
  return { rounds: summary.rounds, sent: summary.sent, sendErrors: summary.sendErrors ?? 0 };
}

/**
 * Both pods send from the same source port to the same upstream at the same instant, each on
 * its own CPU: the node masquerades both to one reply tuple and drops the loser.
 */
export async function runSnatRace(lab: Lab, options: SnatRaceOptions): Promise<SnatRaceResult> {
  const binary = await generatorPath('snat-race', lab.buildDir);
  const ports = lab.reserveSourcePorts(Math.max(1, Math.min(options.rounds, 20_000)));
  const destination = options.destination ?? labAddresses.dnsBackends[0];
  const pods = lanes(lab, options.pods);
  const before = await lab.nodeConntrackStats();
  // Started from inside a pod namespace so that stale-lab cleanup finds it if we crash.
  const { stdout } = await lab.exec(
    pods[0].netns,
    binary,
    senderArgs(pods, destination, options.rounds, options.intervalMs ?? 0, ports),
    {
      timeoutMs: 120_000 + options.rounds * ((options.intervalMs ?? 0) + 5),
    },
  );
  const summary = parseSummary(stdout);
  const after = await lab.nodeConntrackStats();
  return {
    scenario: 'snat-race',
    rounds: summary.rounds,
    datagramsSent: summary.sent,
    sendErrors: summary.sendErrors,
    kernel: counterDelta(before, after),
  };
}

export interface SnatRaceLoop {
  /**
   * Holds the generator between rounds' instructions (SIGSTOP), so that the kernel counters
   * stand still and a watcher can compare totals exactly; `resume` continues it.
   */
  pause(): void;
  resume(): void;
  /** Stops the generator and returns the figures of every round it ran. */
  stop(): Promise<SnatRaceResult>;
}

/** The live-demo form: a round every `intervalMs` until stopped; `onRound` sees each round. */
export async function startSnatRaceLoop(
  lab: Lab,
  options: { intervalMs: number; onRound?: (round: number, sourcePort: number) => void },
): Promise<SnatRaceLoop> {
  const binary = await generatorPath('snat-race', lab.buildDir);
  const ports = lab.reserveSourcePorts(20_000);
  const before = await lab.nodeConntrackStats();
  const pods = lanes(lab);
  const child = lab.spawn(
    pods[0].netns,
    binary,
    senderArgs(pods, labAddresses.dnsBackends[0], 0, options.intervalMs, ports),
  );
  let summary: GeneratorSummary | undefined;
  if (child.stdout) {
    for (const stream of [child.stdout]) {
      const lines = createInterface({ input: stream });
      lines.on('line', (line) => {
        const record = JSON.parse(line) as {
          round?: number;
          sourcePort?: number;
          rounds?: number;
          sent?: number;
          sendErrors?: number;
        };
        if (record.round !== undefined && record.sourcePort !== undefined)
          options.onRound?.(record.round, record.sourcePort);
        if (record.rounds !== undefined)
          summary = {
            rounds: record.rounds,
            sent: record.sent ?? 0,
            sendErrors: record.sendErrors ?? 0,
          };
      });
    }
  }
  return {
    pause: () => {
      child.kill('SIGSTOP');
    },
    resume: () => {
      child.kill('SIGCONT');
    },
    stop: async () => {
      // A stopped process acts on SIGTERM only once continued.
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      await child;
      const after = await lab.nodeConntrackStats();
      return {
        scenario: 'snat-race',
        rounds: summary?.rounds ?? 0,
        datagramsSent: summary?.sent ?? 0,
        sendErrors: summary?.sendErrors ?? 0,
        kernel: counterDelta(before, after),
      };
    },
  };
}
