import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GuestStartUpError,
  parseGuestStartUp,
  readGuestStartUp,
  renderGuestStartUpSection,
  startUpPhases,
  summarizeStarts,
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

const machine = 'bpftrace v0.17.0';
const image = 'bpftrace v0.23.2';

function round(
  bpftrace: string,
  mode: StartUpRound['mode'],
  n: number,
  ready: number,
): StartUpRound {
  return {
    bpftrace,
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
  machineBpftrace: machine,
  imageBpftrace: image,
  // As the guest runs them: each round every mode, the two bpftraces taking turns within it.
  rounds: [
    round(machine, 'kprobe', 1, 52),
    round(image, 'kprobe', 1, 44),
    round(machine, 'tracepoint', 1, 47),
    round(image, 'tracepoint', 1, 39),
    round(machine, 'kprobe', 2, 40),
    round(image, 'kprobe', 2, 37),
    round(machine, 'tracepoint', 2, 38),
    round(image, 'tracepoint', 2, 35),
    round(machine, 'kprobe', 3, 42),
    round(image, 'kprobe', 3, 36),
    round(machine, 'tracepoint', 3, 36),
    round(image, 'tracepoint', 3, 34),
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

  it('rejects a round that does not say which bpftrace it ran, as a result from before both ran', () => {
    const older: Record<string, unknown> = { ...result.rounds[0] };
    delete older['bpftrace'];
    const bad = { ...result, rounds: [older, ...result.rounds.slice(1)] };
    expect(() => parseGuestStartUp(JSON.stringify(bad), 'r.json')).toThrow(GuestStartUpError);
    expect(() => parseGuestStartUp(JSON.stringify(bad), 'r.json')).toThrow(
      'r.json: rounds[0].bpftrace is not a non-empty string (missing)',
    );
  });

  it("rejects a result that does not name the machine's and the image's bpftrace", () => {
    const noMachine: Record<string, unknown> = { ...result };
    delete noMachine['machineBpftrace'];
    expect(() => parseGuestStartUp(JSON.stringify(noMachine), 'r.json')).toThrow(
      'r.json: machineBpftrace is not a non-empty string (missing)',
    );
    expect(() =>
      parseGuestStartUp(JSON.stringify({ ...result, imageBpftrace: '' }), 'r.json'),
    ).toThrow('r.json: imageBpftrace is not a non-empty string ("")');
  });

  it('rejects a round on a bpftrace that is neither of the two', () => {
    const bad = { ...result, rounds: [{ ...result.rounds[0], bpftrace: 'bpftrace v0.20.1' }] };
    expect(() => parseGuestStartUp(JSON.stringify(bad), 'r.json')).toThrow(
      'r.json: rounds[0].bpftrace is neither the machine\'s (bpftrace v0.17.0) nor the image\'s (bpftrace v0.23.2): "bpftrace v0.20.1"',
    );
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
  it('groups the rounds by bpftrace and mode in the order the guest first ran each', () => {
    expect(summarizeStarts(result).map((m) => [m.bpftrace, m.mode, m.ready])).toEqual([
      [machine, 'kprobe', [52, 40, 42]],
      [image, 'kprobe', [44, 37, 36]],
      [machine, 'tracepoint', [47, 38, 36]],
      [image, 'tracepoint', [39, 35, 34]],
    ]);
  });

  it('shows each bpftrace and mode with the median and range, the guest kernel, and the host figure beside it', () => {
    const text = renderGuestStartUpSection({ result, bootSeconds: 13.2, guestSeconds: 600.4 }, 9.4);
    expect(text).toContain('## 7b. Start-up on a 6.1 guest (QEMU, software emulation)');
    expect(text).toContain('Guest kernel: 6.1.0-57-amd64 (2 vCPUs)');
    expect(text).toContain(
      "bpftrace: bpftrace v0.17.0 (the machine's, Debian 12's) and bpftrace v0.23.2 (Debian 13's, the one the image ships).",
    );
    expect(text).toContain(
      "| bpftrace v0.17.0 (the machine's) | kprobe | 3 | 42.0 s (40.0 s–52.0 s) | 4.2 s (4.2 s–4.2 s) | 36.0 s (34.0 s–46.0 s) |",
    );
    expect(text).toContain(
      "| bpftrace v0.23.2 (the image's) | kprobe | 3 | 37.0 s (36.0 s–44.0 s) | 4.2 s (4.2 s–4.2 s) | 31.0 s (30.0 s–38.0 s) |",
    );
    expect(text).toContain(
      "| bpftrace v0.17.0 (the machine's) | tracepoint | 3 | 38.0 s (36.0 s–47.0 s) |",
    );
    expect(text).toContain(
      "| bpftrace v0.23.2 (the image's) | tracepoint | 3 | 35.0 s (34.0 s–39.0 s) |",
    );
    expect(text).toContain(
      'Every round: bpftrace v0.17.0 kprobe 52.0 s, bpftrace v0.23.2 kprobe 44.0 s, bpftrace v0.17.0 tracepoint 47.0 s,',
    );
    // Section 7 runs the machine's bpftrace: the comparison is with its tracepoint rounds
    // (median 38), not the image's (35).
    expect(text).toContain(
      "section 7 of this run (bpftrace v0.17.0, tracepoint mode) was 9.4 s, the guest's with the same bpftrace in the same mode 4.0 times as long",
    );
    expect(text).toContain('slower than the\nsame kernel on real hardware');
    expect(text).not.toContain('Failures in the guest');
  });

  it('lists the failures the guest reported, and says "not in the log" for a missing phase', () => {
    const partial: GuestStartUp = {
      ...result,
      rounds: [{ ...round(machine, 'kprobe', 1, 50), compileAttachSeconds: null }],
      failures: ['tracepoint round 1: the agent was not ready within 240 s'],
    };
    const text = renderGuestStartUpSection({
      result: partial,
      bootSeconds: undefined,
      guestSeconds: 400,
    });
    expect(text).toContain(
      "| bpftrace v0.17.0 (the machine's) | kprobe | 1 | 50.0 s (50.0 s–50.0 s) | 4.2 s (4.2 s–4.2 s) | not in the log |",
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
