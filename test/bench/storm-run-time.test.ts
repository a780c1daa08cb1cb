import { renderStormRunTime } from '../../bench/report.js';
import { counterGrowth, parseProgramFdinfo } from '../../bench/storm-run-time.js';

// The layout of kernel/bpf/syscall.c's bpf_prog_show_fdinfo(), after the common fields.
const programFdinfo = (id: number, runTimeNs: number, runs: number) =>
  [
    'pos:\t0',
    'flags:\t02000002',
    'mnt_id:\t15',
    'ino:\t2063',
    'prog_type:\t5',
    'prog_jited:\t1',
    'prog_tag:\t3b185187f1855c4c',
    'memlock:\t4096',
    `prog_id:\t${id}`,
    `run_time_ns:\t${runTimeNs}`,
    `run_cnt:\t${runs}`,
    'recursion_misses:\t0',
    'verified_insns:\t35',
    '',
  ].join('\n');

describe('BPF program counters', () => {
  it('reads a program descriptor and ignores any other', () => {
    expect(parseProgramFdinfo(programFdinfo(42, 12_345, 67))).toEqual({
      id: 42,
      runs: 67,
      runTimeNs: 12_345,
    });
    expect(parseProgramFdinfo('pos:\t0\nflags:\t02\nmap_type:\t1\nmap_id:\t7\n')).toBeUndefined();
  });

  it('adds the growth of the programs read twice and names the busiest', () => {
    const before = [
      { id: 1, runs: 100, runTimeNs: 1_000 },
      { id: 2, runs: 5, runTimeNs: 500 },
    ];
    const after = [
      { id: 1, runs: 1_100, runTimeNs: 801_000 },
      { id: 2, runs: 7, runTimeNs: 2_500 },
      // Loaded between the readings: no start value, left out.
      { id: 3, runs: 50, runTimeNs: 9_999 },
    ];
    expect(counterGrowth(before, after)).toEqual({
      runs: 1_002,
      runTimeNs: 802_000,
      busiest: { runs: 1_000, runTimeNs: 800_000 },
    });
  });

  it('renders medians per probe and every run', () => {
    const text = renderStormRunTime([
      { probe: 'empty program', dropped: 1000, runs: 1000, nsPerRun: 70, nsPerDropped: 71 },
      { probe: 'agent', dropped: 1000, runs: 1000, nsPerRun: 800, nsPerDropped: 810 },
      { probe: 'agent', dropped: 1000, runs: 1000, nsPerRun: 900, nsPerDropped: 905 },
      { probe: 'agent', dropped: 1000, runs: 0, nsPerRun: Number.NaN, nsPerDropped: 1000 },
    ]);
    expect(text).toContain('| empty program | 70 | 71 |');
    expect(text).toContain('| agent | 850 | 905 |');
    expect(text).toContain('? / 1000 (1,000 dropped)');
  });
});
