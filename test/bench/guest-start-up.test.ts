import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GuestStartUpError,
  parseGuestStartUp,
  readGuestStartUp,
  renderGuestStartUpSection,
  startUpPhases,
  summarizeByMode,
  type GuestStartUp,
  type StartUpRound,
} from '../../bench/guest-start-up-result.js';

const spawnedAt = 1_765_000_000_000;

/** The agent's pino lines of one start, as it writes them (level, time, msg and fields). */
function agentLog(mode: string, startedAfterMs: number, attachedAfterMs: number): string[] {
  const line = (afterMs: number, msg: string, fields: Record<string, unknown> = {}) =>
    JSON.stringify({ level: 30, time: spawnedAt + afterMs, pid: 321, ...fields, msg });
  return [
    line(900, 'no Kubernetes configuration: running standalone, events attributed by IP'),
    line(4_200, `probe mode ${mode}: requested with --probe-mode ${mode}`, { mode }),
    line(4_300, 'serving /metrics, /healthz and /readyz'),
    line(startedAfterMs, 'probe started', { probe: 'combined', pid: 400 }),
    line(attachedAfterMs, 'probe attached', { probe: 'combined', pid: 400, probes: 6 }),
  ];
}

function round(mode: StartUpRound['mode'], n: number, ready: number): StartUpRound {
  return {
    mode,
    round: n,
    secondsToReady: ready,
    secondsToMode: 4.2,
    compileAttachSeconds: ready - 6,
    bpftraceStarts: 1,
    ranMode: mode,
    exitCode: 0,
    leftovers: 0,
  };
}

const result: GuestStartUp = {
  kernel: '6.1',
  release: '6.1.0-57-amd64',
  cpus: 2,
  rounds: [
    round('kprobe', 1, 52),
    round('tracepoint', 1, 47),
    round('kprobe', 2, 40),
    round('tracepoint', 2, 38),
    round('kprobe', 3, 42),
    round('tracepoint', 3, 36),
  ],
  failures: [],
};

describe('the phases of a start, from the agent log', () => {
  it('reads the mode, the spawn-to-mode time and compile + attach from first start to last attach', () => {
    const phases = startUpPhases(agentLog('kprobe', 4_400, 31_900), spawnedAt);
    expect(phases).toEqual({
      ranMode: 'kprobe',
      secondsToMode: 4.2,
      compileAttachSeconds: 27.5,
      bpftraceStarts: 1,
    });
  });

  it('counts a retried bpftrace start within compile + attach', () => {
    const log = agentLog('tracepoint', 4_400, 20_000);
    const retry = JSON.stringify({ level: 30, time: spawnedAt + 9_000, msg: 'probe started' });
    expect(startUpPhases([...log, retry], spawnedAt)).toMatchObject({
      compileAttachSeconds: 15.6,
      bpftraceStarts: 2,
    });
  });

  it('gives no compile + attach when no probe logged its attach, and skips lines that are not JSON', () => {
    const log = agentLog('kprobe', 4_400, 31_900).slice(0, 4);
    expect(startUpPhases(['node: warning', ...log], spawnedAt)).toMatchObject({
      compileAttachSeconds: null,
      ranMode: 'kprobe',
    });
  });
});

describe('the result the guest writes', () => {
  it('reads back what the guest wrote', () => {
    expect(parseGuestStartUp(JSON.stringify(result), 'r.json')).toEqual(result);
  });

  it('names the file when it is not JSON', () => {
    expect(() => parseGuestStartUp('{"kernel": "6.1", ', 'r.json')).toThrow(GuestStartUpError);
    expect(() => parseGuestStartUp('{"kernel": "6.1", ', 'r.json')).toThrow(/^r\.json is not JSON/);
  });

  it('names the field that is wrong', () => {
    const bad = { ...result, rounds: [{ ...result.rounds[0], secondsToReady: 'soon' }] };
    expect(() => parseGuestStartUp(JSON.stringify(bad), 'r.json')).toThrow(
      'r.json: rounds[0].secondsToReady is not a number ≥ 0 ("soon")',
    );
    expect(() => parseGuestStartUp(JSON.stringify({ ...result, rounds: 3 }), 'r.json')).toThrow(
      'r.json: rounds is not an array',
    );
    expect(() => parseGuestStartUp('[]', 'r.json')).toThrow('r.json: not an object');
  });

  it('says where the guest logs are when it wrote no result', () => {
    const dir = mkdtempSync(join(tmpdir(), 'guest-start-up-'));
    try {
      const read = () => readGuestStartUp(join(dir, 'results', 'guest-start-up.json'), dir);
      expect(read).toThrow(GuestStartUpError);
      expect(read).toThrow(`(ENOENT): the guest wrote none; its output is in ${dir}/stdout.log`);
      writeFileSync(join(dir, 'empty.json'), '');
      expect(() => readGuestStartUp(join(dir, 'empty.json'), dir)).toThrow(
        /empty\.json is not JSON/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the section', () => {
  it('groups the rounds by mode in the order the guest ran them', () => {
    expect(summarizeByMode(result).map((m) => [m.mode, m.ready])).toEqual([
      ['kprobe', [52, 40, 42]],
      ['tracepoint', [47, 38, 36]],
    ]);
  });

  it('shows each mode with the median and range, the guest kernel, and the host figure beside it', () => {
    const text = renderGuestStartUpSection({ result, bootSeconds: 13.2, guestSeconds: 300.4 }, 9.4);
    expect(text).toContain('## 7b. Start-up on a 6.1 guest (QEMU, software emulation)');
    expect(text).toContain('Guest kernel: 6.1.0-57-amd64 (2 vCPUs)');
    expect(text).toContain(
      '| kprobe | 3 | 42.0 s (40.0 s–52.0 s) | 4.2 s (4.2 s–4.2 s) | 36.0 s (34.0 s–46.0 s) |',
    );
    expect(text).toContain('| tracepoint | 3 | 38.0 s (36.0 s–47.0 s) |');
    expect(text).toContain(
      "section 7 of this run was 9.4 s, the guest's in the same mode 4.0 times as long",
    );
    expect(text).toContain('slower than the\nsame kernel on real hardware');
    expect(text).not.toContain('Failures in the guest');
  });

  it('lists the failures the guest reported, and says "not in the log" for a missing phase', () => {
    const partial: GuestStartUp = {
      ...result,
      rounds: [{ ...round('kprobe', 1, 50), compileAttachSeconds: null }],
      failures: ['tracepoint round 1: the agent was not ready within 240 s'],
    };
    const text = renderGuestStartUpSection({
      result: partial,
      bootSeconds: undefined,
      guestSeconds: 400,
    });
    expect(text).toContain(
      '| kprobe | 1 | 50.0 s (50.0 s–50.0 s) | 4.2 s (4.2 s–4.2 s) | not in the log |',
    );
    expect(text).toContain('- tracepoint round 1: the agent was not ready within 240 s');
    expect(text).toContain("section 7 of a full run gives the host's start-up");
  });

  it('says why when the guest gave no figures', () => {
    const text = renderGuestStartUpSection({ error: 'no guest result at x (ENOENT)' }, 9.4);
    expect(text).toContain('Not measured in this run: no guest result at x (ENOENT)');
    expect(text).not.toContain('| mode |');
  });
});
