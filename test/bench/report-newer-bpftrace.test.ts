import {
  renderStormRunTime,
  renderUdpKept,
  renderUdpSection,
  udpAimRows,
} from '../../bench/report.js';
import type { StormRunTime } from '../../bench/storm-run-time.js';
import type { UdpRun, UdpVariant } from '../../bench/udp-throughput.js';

const NEWER = 'bpftrace v0.23.2';
const MACHINE = 'bpftrace v0.17.0';
const SECONDS = 4;

function run(
  variant: UdpVariant,
  position: UdpRun['position'],
  pps: number,
  extra: Partial<UdpRun> = {},
): UdpRun {
  const arrived = pps * SECONDS;
  return {
    variant,
    position,
    withAgent: false,
    sent: arrived,
    seconds: SECONDS,
    arrived,
    pps,
    senderCpuSeconds: SECONDS,
    ...extra,
  };
}

function stormWithAgent(round: number, pps: number, lost: number, extra: Partial<UdpRun> = {}) {
  const arrived = pps * SECONDS;
  return run('dns-dropped', { round }, pps, {
    withAgent: true,
    agentCounted: arrived - lost,
    agentLost: lost,
    storm: {
      countedAnyReason: arrived - lost,
      decoded: 0,
      rejected: 0,
      restarts: 0,
      minProbesUp: 2,
      probes: 2,
      unaccounted: 0,
      settleSeconds: 1.8,
    },
    ...extra,
  });
}

// Three rounds between four windows; every window's rate is 100,000 pps so that a round's kept
// fraction is its own rate over 100,000.
const machineStorm = [88_000, 89_700, 91_000];
const newerStorm = [92_000, 93_000, 95_000];

function machineRuns(): UdpRun[] {
  const runs: UdpRun[] = [];
  const window = (w: number) => {
    for (const variant of ['dns', 'other', 'dns-dropped'] as const) {
      runs.push(run(variant, { window: w }, 100_000));
    }
  };
  window(0);
  for (let round = 1; round <= 3; round += 1) {
    runs.push(run('dns-dropped', { round }, 97_000, { withEmptyProbe: true }));
    runs.push(run('dns', { round }, 98_000 + round * 100, { withAgent: true }));
    runs.push(run('other', { round }, 99_000 + round * 100, { withAgent: true }));
    runs.push(stormWithAgent(round, machineStorm[round - 1]!, 0));
    window(round);
  }
  return runs;
}

/**
 * The same runs with the newer bpftrace's storm run inserted into each round: rates, losses and
 * sender CPU shares unlike the machine's, so that any of them leaking into a figure of the
 * machine's bpftrace changes it.
 */
function bothRuns(): UdpRun[] {
  const runs: UdpRun[] = [];
  for (const u of machineRuns()) {
    runs.push(u);
    if (u.withAgent && u.variant === 'dns-dropped' && 'round' in u.position) {
      const round = u.position.round;
      runs.push(
        stormWithAgent(round, newerStorm[round - 1]!, 7, {
          bpftrace: NEWER,
          senderCpuSeconds: SECONDS / 2,
        }),
      );
    }
  }
  return runs;
}

const stormRunTime: StormRunTime[] = [
  { probe: 'empty program', dropped: 1000, runs: 1000, nsPerRun: 60, nsPerDropped: 60 },
  { probe: 'agent', dropped: 1000, runs: 1000, nsPerRun: 715, nsPerDropped: 715 },
  { probe: `agent, ${NEWER}`, dropped: 1000, runs: 1000, nsPerRun: 490, nsPerDropped: 495 },
];
const machineRunTime = stormRunTime.filter(
  (r) => r.probe === 'empty program' || r.probe === 'agent',
);

/** Table rows, the floor line and the sender's CPU share: every figure of the machine's runs. */
const figureLines = (text: string) =>
  text
    .split('\n')
    .filter(
      (line) => line.startsWith('| ') || line.startsWith('Floor:') || line.includes('had its CPU'),
    );

describe('section 4 with the agent on the newer bpftrace beside the machine’s', () => {
  it('keeps every figure of the machine’s bpftrace as it is without the newer runs', () => {
    const alone = renderUdpSection(machineRuns(), machineRunTime);
    const both = renderUdpSection(bothRuns(), stormRunTime);
    const lines = figureLines(alone);
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) expect(both.split('\n')).toContain(line);
    expect(alone).toContain('| dns-dropped | 100,000 | 89,700 | 89.7 % | 88.0 %, 89.7 %, 91.0 % |');
    expect(alone).toContain('100.0 % to 100.0 %, median 100.0 %');
    expect(alone).not.toContain(NEWER);
  });

  it('adds the newer bpftrace’s kept fraction, its storm accounting and its run time', () => {
    const both = renderUdpSection(bothRuns(), stormRunTime);
    expect(both).toContain(
      `| dns-dropped, agent on ${NEWER} | 100,000 | 93,000 | 93.0 % | 92.0 %, 93.0 %, 95.0 % |`,
    );
    expect(both).toContain(`Counted: ${(280_000 * 4 - 21).toLocaleString('en-US')} + 21 lost`);
    expect(both).toContain('| 2 | 372,000 | 372,000 | 371,993 | 7 | 0 |');
    expect(both).toContain(`| agent, ${NEWER} | 490 | 495 |`);
    // 1e9 / 100,000 pps = 10,000 ns per datagram; 10,000 / (10,000 + 495) = 95.3 %.
    expect(both).toContain(`and the agent's 495 ns on ${NEWER}\n95.3 % (measured: 93.0 %).`);
  });

  it('gives the storm aim for both bpftraces, the machine’s verdict unchanged', () => {
    const alone = udpAimRows(machineRuns(), MACHINE);
    const both = udpAimRows(bothRuns(), MACHINE);
    expect(both).toHaveLength(alone.length);
    const stormAim = (rows: string[]) => rows.find((row) => row.includes('≥ 90 %'))!;
    expect(stormAim(alone)).toMatch(/\| 89\.7 % \| \*\*missed\*\* \|$/);
    expect(stormAim(both)).toMatch(
      new RegExp(
        `\\| ${MACHINE}: 89\\.7 %; ${NEWER}: 93\\.0 % \\| ${MACHINE}: \\*\\*missed\\*\\*; ${NEWER}: \\*\\*met\\*\\* \\|$`,
      ),
    );
    // Every other aim row, the counted = dropped one included, is that of the machine's runs.
    const others = (rows: string[]) => rows.filter((row) => row !== stormAim(rows));
    expect(others(both)).toEqual(others(alone));
    expect(others(both).join('\n')).toContain('1,074,800 counted + 0 lost of 1,074,800 dropped');
  });

  it('prints the newer bpftrace’s kept fraction with --only udp', () => {
    const alone = renderUdpKept(machineRuns()).split('\n');
    const both = renderUdpKept(bothRuns()).split('\n');
    for (const line of alone) expect(both).toContain(line);
    expect(both).toContain(
      `agent on ${NEWER}, dns-dropped: kept 93.0 % (rounds: 92.0 %, 93.0 %, 95.0 %); 1,119,979 counted + 21 lost of 1,120,000 dropped`,
    );
  });

  it('lists the newer bpftrace’s run-time row after the fixed ones', () => {
    const rows = renderStormRunTime(stormRunTime)
      .split('\n')
      .filter((line) => /^\| (empty|agent)/.test(line));
    expect(rows.map((row) => row.split(' | ')[0])).toEqual([
      '| empty program',
      '| agent',
      `| agent, ${NEWER}`,
    ]);
  });
});
