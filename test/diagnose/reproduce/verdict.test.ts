import { Ajv } from 'ajv';
import { parseDoctorOptions } from '../../../src/config/doctor-options.js';
import { renderReproduce } from '../../../src/diagnose/doctor/render-text.js';
import { doctorReportSchema } from '../../../src/diagnose/doctor/report-schema.js';
import { kernelFactsOf } from '../../../src/diagnose/kernel-facts.js';
import type { RaceUntilResult } from '../../../src/diagnose/reproduce/race-until.js';
import type { ReproduceReport } from '../../../src/diagnose/reproduce/run-reproduce.js';
import { dropsAndResolved, judgeScenario } from '../../../src/diagnose/reproduce/verdict.js';
import type { NodeDiagnosis } from '../../../src/events/diagnosis.js';

function race(
  scenario: RaceUntilResult['scenario'],
  kernel: Record<string, number>,
  changes: Partial<RaceUntilResult> = {},
): RaceUntilResult {
  return {
    scenario,
    counter: scenario === 'snat-race' ? 'insert_failed' : 'clash_resolve',
    needed: 10,
    rounds: 1_200,
    batches: 3,
    durationMs: 2_500,
    datagramsSent: 2_400,
    sendErrors: 0,
    kernel,
    reached: true,
    bound: { maxRounds: Number.MAX_SAFE_INTEGER, maxMs: 20_000 },
    ...changes,
  };
}

function node(randomFully: boolean, release = '6.18.0'): NodeDiagnosis {
  return {
    status: 'diagnosed',
    kernel: kernelFactsOf(release),
    natRules: [
      {
        backend: 'iptables-nft',
        family: 'ipv4',
        table: 'nat',
        chain: 'POSTROUTING',
        target: 'MASQUERADE',
        randomFully,
        text: `-A POSTROUTING -j MASQUERADE${randomFully ? ' --random-fully' : ''}`,
      },
    ],
    natSources: [],
    kubeProxyMode: 'iptables',
    nodeLocalDns: { present: false, addresses: [] },
    conntrack: {},
    diagnosedAtMs: 0,
  };
}

describe('the verdict of a reproduce scenario', () => {
  it('calls SNAT drops by their insert_failed delta and offers --random-fully for the rules lacking it', () => {
    const judged = judgeScenario(
      race('snat-race', { insert_failed: 57, clash_resolve: 0, drop: 57, found: 3 }),
      true,
      node(false),
    );
    expect(judged).toMatchObject({ dropped: 57, resolved: 0, enough: true });
    expect(judged.kernel).toEqual({ insert_failed: 57, clash_resolve: 0, drop: 57 });
    expect(judged.verdict.id).toBe('drops-snat-races');
    expect(judged.verdict.text).toMatch(
      /^this kernel drops SNAT races: 57 datagram\(s\) .* in 1,200 rounds \(2\.5 s\)$/,
    );
    expect(judged.remedies.map((r) => r.id)).toEqual(['random-fully']);
    expect(judged.remedies[0]?.text).toContain("the node's 1 MASQUERADE/SNAT rule(s) lacking it");
  });

  it('notes instead of a remedy when every rule of the node already uses --random-fully', () => {
    const judged = judgeScenario(
      race('snat-race', { insert_failed: 3, drop: 3 }),
      true,
      node(true),
    );
    expect(judged.remedies).toEqual([]);
    expect(judged.notes.join(' ')).toContain('already use --random-fully');
  });

  it('says a DNAT clash was resolved when clash_resolve rose and insert_failed did not: no remedy', () => {
    const judged = judgeScenario(
      race('dnat-clash', { insert_failed: 0, clash_resolve: 442, drop: 0 }),
      true,
      node(false),
    );
    expect(judged.verdict).toEqual({
      id: 'resolves-dnat-clashes',
      text: 'this kernel resolves DNAT clashes: 442 resolved, none dropped, in 1,200 rounds (2.5 s)',
    });
    expect(judged.remedies).toEqual([]);
  });

  it('says a DNAT clash was dropped and offers the resolver and kernel remedies', () => {
    const judged = judgeScenario(
      race('dnat-clash', { insert_failed: 12, clash_resolve: 4, drop: 12 }),
      true,
      node(false, '5.4.0'),
    );
    expect(judged.verdict.id).toBe('drops-dnat-clashes');
    expect(judged.remedies.map((r) => r.id)).toEqual(
      expect.arrayContaining(['single-request-reopen', 'kernel-nat-clash']),
    );
  });

  it('gives no verdict when nothing clashed within the time bound, and says it stopped there', () => {
    const judged = judgeScenario(
      race('dnat-clash', { insert_failed: 0, clash_resolve: 0 }, { reached: false }),
      true,
      undefined,
    );
    expect(judged.verdict.id).toBe('no-dnat-clash-seen');
    expect(judged.enough).toBe(false);
    const snat = judgeScenario(
      race('snat-race', { insert_failed: 0 }, { reached: false }),
      true,
      undefined,
    );
    expect(snat.verdict.id).toBe('no-snat-drop-seen');
    expect(snat.remedies).toEqual([]);
  });

  it('before 5.10 (no clash_resolve) counts drops by `drop` and resolved clashes as insert_failed minus drop', () => {
    expect(dropsAndResolved({ insert_failed: 30, drop: 4 }, false)).toEqual({
      dropped: 4,
      resolved: 26,
    });
    expect(dropsAndResolved({ insert_failed: 30, clash_resolve: 9, drop: 30 }, true)).toEqual({
      dropped: 30,
      resolved: 9,
    });
    const judged = judgeScenario(
      race('dnat-clash', { insert_failed: 30, drop: 0 }),
      false,
      undefined,
    );
    expect(judged.verdict.id).toBe('resolves-dnat-clashes');
    expect(judged.notes.join(' ')).toContain('no clash_resolve counter');
  });
});

describe('the reproduce section of the report', () => {
  const report: ReproduceReport = {
    namespaces: ['node', 'pod1', 'pod2', 'up'].map((role) => `cro-repro-4242-a1b2c3-${role}`),
    staleRemoved: ['cro-repro-17-000000-node'],
    secondsPerScenario: 20,
    generators: { origin: 'installed', dir: '/usr/local/lib/conntrack-race-observer' },
    scenarios: [
      judgeScenario(
        race('snat-race', { insert_failed: 57, clash_resolve: 0, drop: 57 }),
        true,
        node(false),
      ),
      judgeScenario(
        race('dnat-clash', { insert_failed: 0, clash_resolve: 442, drop: 0 }, { reached: false }),
        true,
        node(false),
      ),
    ],
  };

  it('renders one verdict per scenario with the counter deltas it rests on', () => {
    const text = renderReproduce(report).join('\n');
    expect(text).toContain(
      'Reproduced    in a throw-away lab (4 namespaces, removed), at most 20 s per scenario; race generators installed in /usr/local/lib/conntrack-race-observer',
    );
    expect(text).toContain('removed first what a killed run left: cro-repro-17-000000-node');
    expect(text).toContain('  snat-race   this kernel drops SNAT races: 57');
    expect(text).toContain(
      'dropped 57, resolved 0 (lab node: insert_failed +57, clash_resolve +0, drop +57)',
    );
    expect(text).toContain('  dnat-clash  this kernel resolves DNAT clashes: 442 resolved');
    expect(text).toContain('stopped at the time bound');
  });

  it("matches the JSON Schema of doctor --json, and the schema refuses a namespace that is not the lab's", () => {
    const validate = new Ajv({ allErrors: true }).compile(doctorReportSchema.properties.reproduce);
    expect(validate(JSON.parse(JSON.stringify(report))) ? [] : validate.errors).toEqual([]);
    expect(validate({ ...report, namespaces: ['default'] })).toBe(false);
  });
});

describe('doctor --reproduce options', () => {
  it('takes --reproduce with 20 s per scenario by default, bounded to 1..120 s', () => {
    const on = parseDoctorOptions(['--reproduce']);
    expect(on.kind === 'run' && on.options.reproduceSeconds).toBe(20);
    const off = parseDoctorOptions([]);
    expect(off.kind === 'run' && off.options.reproduceSeconds).toBeUndefined();
    const set = parseDoctorOptions(['--reproduce', '--reproduce-seconds', '5']);
    expect(set.kind === 'run' && set.options.reproduceSeconds).toBe(5);
    for (const bad of ['0', '121', '2.5', 'soon']) {
      expect(parseDoctorOptions(['--reproduce', '--reproduce-seconds', bad]).kind).toBe('error');
    }
    expect(parseDoctorOptions(['--reproduce-seconds', '5'])).toEqual({
      kind: 'error',
      message: '--reproduce-seconds needs --reproduce',
    });
  });
});
