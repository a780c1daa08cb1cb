import { dnsLoadAimRows, renderDnsLoadSection } from '../../bench/dns-load-report.js';
import {
  accountedFor,
  chooseTargetRate,
  countedExactly,
  loadArgs,
  LoadOutputError,
  LoadSpecError,
  parseLoadOutput,
  summarizeMode,
  type DnsLoadFigures,
  type DnsLoadRun,
  type LoadOutput,
} from '../../bench/dns-load-result.js';

const spec = {
  server: '10.96.0.10',
  name: 'load.test',
  rate: 20_000,
  seconds: 4,
  sockets: 8,
  waitMs: 1_000,
};

function output(overrides: Partial<LoadOutput> = {}): LoadOutput {
  return {
    sent: 80_000,
    answered: 79_990,
    unanswered: 10,
    late: 0,
    stray: 0,
    sendErrors: 0,
    seconds: 4,
    rate: 20_000,
    sockets: 8,
    ...overrides,
  };
}

function run(
  mode: DnsLoadRun['mode'],
  withAgent: boolean,
  answeredPerSecond: number,
  machineCpuPercent: number,
  exact = true,
): DnsLoadRun {
  const load = output({ answered: answeredPerSecond * 4, sent: answeredPerSecond * 4 + 10 });
  return {
    mode,
    withAgent,
    load,
    answeredPerSecond,
    machineCpuPercent,
    ...(withAgent && {
      agentCpuPercent: 2,
      agent: {
        answered: exact ? load.answered : load.answered - 1,
        unanswered: 10,
        untracked: 0,
        settleSeconds: 11,
      },
    }),
  };
}

describe('the DNS load generator arguments', () => {
  it('are listed in the order dns-load.c reads them', () => {
    expect(loadArgs(spec)).toEqual(['10.96.0.10', '53', 'load.test', '20000', '4', '8', '1000']);
  });

  it('take rate 0 as "as fast as it can"', () => {
    expect(loadArgs({ ...spec, rate: 0 })[3]).toBe('0');
  });

  it('are refused with every problem named when the spec is bad', () => {
    const bad = () =>
      loadArgs({ ...spec, server: 'kube-dns', sockets: 65, rate: -1, seconds: 0, waitMs: 0.5 });
    expect(bad).toThrow(LoadSpecError);
    expect(bad).toThrow(/server.*rate.*seconds.*sockets.*waitMs/);
  });
});

describe("the DNS load generator's output", () => {
  it('is read from its last line', () => {
    const text = `warming up\n${JSON.stringify(output())}\n`;
    expect(parseLoadOutput(text)).toEqual(output());
  });

  it('is refused with a clear error when it is not JSON', () => {
    expect(() => parseLoadOutput('Segmentation fault')).toThrow(LoadOutputError);
    expect(() => parseLoadOutput('Segmentation fault')).toThrow(/no JSON.*Segmentation/);
  });

  it('is refused when a count is missing or negative', () => {
    const missing = Object.fromEntries(
      Object.entries(output()).filter(([key]) => key !== 'answered'),
    );
    expect(() => parseLoadOutput(JSON.stringify(missing))).toThrow(/answered is not a number/);
    expect(() => parseLoadOutput(JSON.stringify(output({ stray: -1 })))).toThrow(/stray/);
  });

  it('is refused when answered and unanswered do not add up to sent', () => {
    expect(() => parseLoadOutput(JSON.stringify(output({ unanswered: 11 })))).toThrow(/≠ sent/);
  });
});

describe('the target rate', () => {
  it('is the aim when the server answers at least that unpaced', () => {
    expect(chooseTargetRate(20_000, 31_000)).toBe(20_000);
  });

  it('is 90 % of what the server answered, in thousands, when it answers less', () => {
    expect(chooseTargetRate(20_000, 14_700)).toBe(13_000);
  });
});

describe('a run counted exactly', () => {
  it('needs the agent answered equal to the generator and unanswered + untracked equal too', () => {
    expect(countedExactly(run('paced', true, 20_000, 50))).toBe(true);
    expect(countedExactly(run('paced', true, 20_000, 50, false))).toBe(false);
    expect(countedExactly(run('paced', false, 20_000, 50))).toBe(false);
  });
});

describe('a run accounted for', () => {
  it('has answered + unanswered + untracked = sent, even when not exact', () => {
    const overflowed: DnsLoadRun = {
      ...run('max', true, 70_000, 150),
      load: output({ sent: 300_000, answered: 290_000, unanswered: 10_000 }),
      agent: { answered: 130_000, unanswered: 8192, untracked: 161_808, settleSeconds: 11 },
    };
    expect(accountedFor(overflowed)).toBe(true);
    expect(countedExactly(overflowed)).toBe(false);
  });

  it('is refused when the agent counts more answers than the generator received', () => {
    const tooMany: DnsLoadRun = {
      ...run('paced', true, 20_000, 50),
      load: output({ sent: 100, answered: 90, unanswered: 10 }),
      agent: { answered: 95, unanswered: 5, untracked: 0, settleSeconds: 2 },
    };
    expect(accountedFor(tooMany)).toBe(false);
  });
});

describe('the summary of one mode', () => {
  const runs = [
    run('paced', false, 20_000, 40),
    run('paced', false, 20_000, 42),
    run('paced', true, 19_500, 50),
    run('paced', true, 19_000, 48, false),
    run('max', false, 30_000, 190),
    run('max', true, 27_000, 190),
  ];

  it('gives the share of answered/s kept and the runs counted exactly', () => {
    const summary = summarizeMode(runs, 'paced');
    expect(summary.without).toBe(20_000);
    expect(summary.withAgent).toBe(19_250);
    expect(summary.kept).toBeCloseTo(0.9625);
    expect(summary.exactRuns).toBe(1);
    expect(summary.agentRuns).toBe(2);
  });

  it('gives the machine CPU the agent added per 1,000 answered queries/s', () => {
    const summary = summarizeMode(runs, 'paced');
    // with: median(50/19.5, 48/19) ; without: 41/20
    expect(summary.machineCpuPer1000).toBeCloseTo((50 / 19.5 + 48 / 19) / 2 - 41 / 20);
    expect(summary.agentCpuPer1000).toBeCloseTo((2 / 19.5 + 2 / 19) / 2);
  });
});

describe('the DNS load section of docs/benchmarks.md', () => {
  const figures: DnsLoadFigures = {
    targetRate: 20_000,
    ceilingAnsweredPerSecond: 31_000,
    seconds: 4,
    sockets: 8,
    runs: [run('paced', false, 20_000, 40), run('paced', true, 19_800, 46)],
    bound: {
      mapKeys: 8192,
      load: output({ sent: 32_768, answered: 0, unanswered: 32_768 }),
      firewallDrops: 32_768,
      agent: { answered: 0, unanswered: 16_384, untracked: 16_384, settleSeconds: 12 },
    },
  };

  it('is numbered 9 and shows the runs and the bound', () => {
    const text = renderDnsLoadSection(figures);
    expect(text.startsWith('## 9. DNS query load\n')).toBe(true);
    expect(text).toContain('| paced | 20,000 | 19,800 | 99.0 % |');
    expect(text).toContain('16,384 unanswered');
    expect(text).toContain('16,384 untracked');
    expect(text).not.toContain('NaN');
  });

  it('says so when the server answers less than 20,000/s', () => {
    const text = renderDnsLoadSection({ ...figures, ceilingAnsweredPerSecond: 14_000 });
    expect(text).toContain('answer less than 20,000/s on this machine');
  });

  it('gives the aims their verdicts', () => {
    const rows = dnsLoadAimRows(figures);
    expect(rows[0]).toMatch(/99\.0 %.*\*\*met\*\*/);
    expect(rows[1]).toMatch(/1 of 1 runs exact.*\*\*met\*\*/);
    expect(rows[2]).toMatch(/1 of 1 runs \| \*\*met\*\*/);
    expect(rows[3]).toMatch(/16,384 \+ 16,384 = 32,768 of 32,768.*\*\*met\*\*/);
    const missed = dnsLoadAimRows({
      ...figures,
      runs: [run('paced', false, 20_000, 40), run('paced', true, 18_000, 46, false)],
    });
    expect(missed[0]).toMatch(/\*\*missed\*\*/);
    expect(missed[1]).toMatch(/0 of 1 runs exact.*\*\*missed\*\*/);
  });
});
