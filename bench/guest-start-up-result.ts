/*
 * The pure side of the guest start-up benchmark: the phases read from the agent's JSON log, the
 * result file the guest writes, read back with clear errors, and its section of the report.
 */
import { readFileSync } from 'node:fs';
import { median } from './stats.js';

/** The file the guest writes into KERNEL_MATRIX_RESULTS. */
export const GUEST_START_UP_FILE = 'guest-start-up.json';

export type StartedMode = 'kprobe' | 'tracepoint';

/** One start of the built agent in the guest, from spawn to `/readyz` 200, then SIGTERM. */
export interface StartUpRound {
  /**
   * What the bpftrace the agent ran prints for `--version` (`bpftrace v0.17.0`): the machine's
   * or the image's, GuestStartUp's `machineBpftrace` or `imageBpftrace`.
   */
  readonly bpftrace: string;
  readonly mode: StartedMode;
  readonly round: number;
  readonly secondsToReady: number;
  /** Spawn to the agent's `probe mode` log line: Node's start, options, kernel detection. */
  readonly secondsToMode: number | null;
  /**
   * First `probe started` to last `probe attached` in the agent's log: bpftrace's compile and
   * attach (retries included); null when no probe logged its attach.
   */
  readonly compileAttachSeconds: number | null;
  /** bpftrace processes the agent started (one for the combined program). */
  readonly bpftraceStarts: number;
  /** The mode the agent logged it runs in. */
  readonly ranMode: string | null;
  /** Exit status after SIGTERM. */
  readonly exitCode: number | null;
  /** Descendants still alive once the agent had exited. */
  readonly leftovers: number;
}

export interface GuestStartUp {
  /** The matrix's kernel id (`6.1`). */
  readonly kernel: string;
  /** `uname -r` in the guest. */
  readonly release: string;
  readonly cpus: number;
  /** `bpftrace --version` in the guest: the machine's (Debian 12's), the agent's default. */
  readonly machineBpftrace: string;
  /**
   * `--version` of Debian 13's bundle (bench/newer-bpftrace.ts), the bpftrace the image ships,
   * which the agent ran through `--bpftrace PATH`.
   */
  readonly imageBpftrace: string;
  readonly rounds: readonly StartUpRound[];
  /** Starts that failed or checks that did not hold, one line each; empty when all went well. */
  readonly failures: readonly string[];
}

export class GuestStartUpError extends Error {
  override readonly name = 'GuestStartUpError';
  readonly code = 'GUEST_START_UP_BAD_RESULT';
}

export interface StartUpPhases {
  readonly ranMode: string | null;
  readonly secondsToMode: number | null;
  readonly compileAttachSeconds: number | null;
  readonly bpftraceStarts: number;
}

/** Reads the phases of one start from the agent's pino lines (`time` in ms since the epoch). */
export function startUpPhases(logLines: readonly string[], spawnedAtMs: number): StartUpPhases {
  let ranMode: string | null = null;
  let modeAt: number | undefined;
  let firstStarted: number | undefined;
  let lastAttached: number | undefined;
  let bpftraceStarts = 0;
  for (const line of logLines) {
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      continue; // not a log record (a stray line on stdout)
    }
    if (typeof record !== 'object' || record === null) continue;
    const { msg, time, mode } = record as { msg?: unknown; time?: unknown; mode?: unknown };
    if (typeof msg !== 'string' || typeof time !== 'number') continue;
    if (msg.startsWith('probe mode ') && modeAt === undefined) {
      modeAt = time;
      ranMode = typeof mode === 'string' ? mode : null;
    } else if (msg === 'probe started') {
      bpftraceStarts += 1;
      firstStarted = Math.min(firstStarted ?? time, time);
    } else if (msg === 'probe attached') {
      lastAttached = Math.max(lastAttached ?? time, time);
    }
  }
  const seconds = (ms: number) => Math.round(ms) / 1000;
  return {
    ranMode,
    secondsToMode: modeAt === undefined ? null : seconds(modeAt - spawnedAtMs),
    compileAttachSeconds:
      firstStarted === undefined || lastAttached === undefined
        ? null
        : seconds(lastAttached - firstStarted),
    bpftraceStarts,
  };
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function parseRound(
  value: unknown,
  at: string,
  bpftraces: { readonly machine: string; readonly image: string },
): StartUpRound {
  if (!isObject(value)) throw new GuestStartUpError(`${at} is not an object`);
  // Required: a round without it (a result from before the guest ran both) cannot be told
  // apart, and is not taken for the machine's.
  const bpftrace = value['bpftrace'];
  if (typeof bpftrace !== 'string' || bpftrace === '')
    throw new GuestStartUpError(
      `${at}.bpftrace is not a non-empty string (${JSON.stringify(bpftrace) ?? 'missing'})`,
    );
  if (bpftrace !== bpftraces.machine && bpftrace !== bpftraces.image)
    throw new GuestStartUpError(
      `${at}.bpftrace is neither the machine's (${bpftraces.machine}) nor the image's (${bpftraces.image}): ${JSON.stringify(bpftrace)}`,
    );
  const seconds = (key: string, nullable: boolean): number | null => {
    const v = value[key];
    if (v === null && nullable) return null;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new GuestStartUpError(`${at}.${key} is not a number ≥ 0 (${JSON.stringify(v)})`);
    return v;
  };
  const mode = value['mode'];
  if (mode !== 'kprobe' && mode !== 'tracepoint')
    throw new GuestStartUpError(`${at}.mode is not kprobe or tracepoint (${JSON.stringify(mode)})`);
  const whole = (key: string, nullable: boolean): number | null => {
    const v = seconds(key, nullable);
    if (v !== null && !Number.isInteger(v))
      throw new GuestStartUpError(`${at}.${key} is not an integer (${v})`);
    return v;
  };
  const ranMode = value['ranMode'];
  if (ranMode !== null && typeof ranMode !== 'string')
    throw new GuestStartUpError(`${at}.ranMode is not a string or null`);
  return {
    bpftrace,
    mode,
    round: whole('round', false)!,
    secondsToReady: seconds('secondsToReady', false)!,
    secondsToMode: seconds('secondsToMode', true),
    compileAttachSeconds: seconds('compileAttachSeconds', true),
    bpftraceStarts: whole('bpftraceStarts', false)!,
    ranMode,
    exitCode: whole('exitCode', true),
    leftovers: whole('leftovers', false)!,
  };
}

/** The guest's result file's text, checked field by field; `source` names it in errors. */
export function parseGuestStartUp(text: string, source: string): GuestStartUp {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new GuestStartUpError(`${source} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    if (!isObject(value)) throw new GuestStartUpError('not an object');
    const { kernel, release, cpus, machineBpftrace, imageBpftrace, rounds, failures } = value;
    if (typeof kernel !== 'string' || kernel === '')
      throw new GuestStartUpError('kernel is not a non-empty string');
    if (typeof release !== 'string' || release === '')
      throw new GuestStartUpError('release is not a non-empty string');
    if (typeof cpus !== 'number' || !Number.isInteger(cpus) || cpus < 1)
      throw new GuestStartUpError('cpus is not a positive integer');
    if (typeof machineBpftrace !== 'string' || machineBpftrace === '')
      throw new GuestStartUpError(
        `machineBpftrace is not a non-empty string (${JSON.stringify(machineBpftrace) ?? 'missing'})`,
      );
    if (typeof imageBpftrace !== 'string' || imageBpftrace === '')
      throw new GuestStartUpError(
        `imageBpftrace is not a non-empty string (${JSON.stringify(imageBpftrace) ?? 'missing'})`,
      );
    if (!Array.isArray(rounds)) throw new GuestStartUpError('rounds is not an array');
    if (!Array.isArray(failures) || !failures.every((f) => typeof f === 'string'))
      throw new GuestStartUpError('failures is not an array of strings');
    return {
      kernel,
      release,
      cpus,
      machineBpftrace,
      imageBpftrace,
      rounds: rounds.map((round, i) =>
        parseRound(round, `rounds[${i}]`, { machine: machineBpftrace, image: imageBpftrace }),
      ),
      failures: failures as string[],
    };
  } catch (error) {
    if (!(error instanceof GuestStartUpError)) throw error;
    throw new GuestStartUpError(`${source}: ${error.message}`, { cause: error });
  }
}

/** Reads the result file the guest brought back; a missing one says where the guest's logs are. */
export function readGuestStartUp(path: string, logsDir: string): GuestStartUp {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new GuestStartUpError(
      `no guest result at ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)}): the guest wrote none; its output is in ${logsDir}/stdout.log and console.log`,
      { cause: error },
    );
  }
  return parseGuestStartUp(text, path);
}

export interface StartsSummary {
  readonly bpftrace: string;
  readonly mode: StartedMode;
  readonly rounds: number;
  readonly ready: readonly number[];
  /** Rounds whose log gave the compile+attach time. */
  readonly compileAttach: readonly number[];
  readonly toMode: readonly number[];
}

/** The rounds grouped by bpftrace and mode, in the order the guest first ran each pair. */
export function summarizeStarts(result: GuestStartUp): StartsSummary[] {
  const pairs = new Map<string, { bpftrace: string; mode: StartedMode }>();
  for (const { bpftrace, mode } of result.rounds)
    if (!pairs.has(`${bpftrace}\0${mode}`)) pairs.set(`${bpftrace}\0${mode}`, { bpftrace, mode });
  return [...pairs.values()].map(({ bpftrace, mode }) => {
    const rounds = result.rounds.filter(
      (round) => round.bpftrace === bpftrace && round.mode === mode,
    );
    const present = (values: (number | null)[]) => values.filter((v): v is number => v !== null);
    return {
      bpftrace,
      mode,
      rounds: rounds.length,
      ready: rounds.map((round) => round.secondsToReady),
      compileAttach: present(rounds.map((round) => round.compileAttachSeconds)),
      toMode: present(rounds.map((round) => round.secondsToMode)),
    };
  });
}

/** What the section needs besides the guest's result. */
export interface GuestStartUpFigures {
  readonly result: GuestStartUp;
  /** Host wall time from starting QEMU to the guest's first line. */
  readonly bootSeconds: number | undefined;
  /** Host wall time of the whole guest. */
  readonly guestSeconds: number;
}

/** The section's text for a measurement that failed: the report says so instead of a table. */
export interface GuestStartUpFailure {
  readonly error: string;
}

const s = (value: number) => `${value.toFixed(1)} s`;
const medianAndRange = (values: readonly number[]) =>
  values.length === 0
    ? 'not in the log'
    : `${s(median(values))} (${s(Math.min(...values))}–${s(Math.max(...values))})`;

/** A bpftrace's version and whose it is, as the section names it. */
function whose(result: GuestStartUp, bpftrace: string): string {
  if (bpftrace === result.machineBpftrace && bpftrace === result.imageBpftrace)
    return `${bpftrace} (the machine's and the image's)`;
  return bpftrace === result.machineBpftrace
    ? `${bpftrace} (the machine's)`
    : `${bpftrace} (the image's)`;
}

/**
 * Section 7b. `hostSecondsToReady` is section 7's start-up of the same run (tracepoint mode, on
 * the host, with the machine's bpftrace); absent when the section runs alone.
 */
export function renderGuestStartUpSection(
  figures: GuestStartUpFigures | GuestStartUpFailure,
  hostSecondsToReady?: number,
): string {
  const lines = [
    '## 7b. Start-up on a 6.1 guest (QEMU, software emulation)',
    '',
    "`bench/guest-start-up.ts` boots Debian 12's kernel with the kernel matrix's machinery",
    "(`test/kernels/`, docs/probe-matrix.md: `qemu-system-x86_64 -accel tcg`, the machine's root",
    'shared read-only) and runs `bench/guest-start-up-probe.ts` in it: the built agent',
    '(`node dist/main.js --listen 127.0.0.1:<free port> --probe-mode MODE`, standalone) started',
    "with each of two bpftraces, the machine's (Debian 12's, the agent's default) and the one the",
    "image ships (Debian 13's, bundled with its own loader and libraries, `--bpftrace PATH`; the",
    "guest reads it from the machine's root), in each probe mode the kernel allows, round after",
    'round, bpftraces and modes taking turns within each round; each start timed from the spawn',
    "to `/readyz` 200 and then stopped with SIGTERM. From the agent's JSON log: spawn to its",
    '`probe mode` line (Node, options, kernel detection), and compile + attach, its first `probe',
    "started` to its last `probe attached` (bpftrace's compile of the combined program and the",
    'attach of every probe). Median and range of the rounds.',
    '',
  ];
  if ('error' in figures) {
    lines.push(`Not measured in this run: ${figures.error}`, '');
    return lines.join('\n');
  }
  const { result } = figures;
  const summaries = summarizeStarts(result);
  lines.push(
    `Guest kernel: ${result.release} (${result.cpus} vCPUs); boot ${figures.bootSeconds === undefined ? 'not seen' : s(figures.bootSeconds)}, whole guest ${s(figures.guestSeconds)} (host wall).`,
    `bpftrace: ${result.machineBpftrace} (the machine's, Debian 12's) and ${result.imageBpftrace} (Debian 13's, the one the image ships).`,
    '',
    '| bpftrace | mode | rounds | start-up to ready | of which spawn to probe mode | of which compile + attach |',
    '|---|---|---|---|---|---|',
    ...summaries.map(
      (m) =>
        `| ${whose(result, m.bpftrace)} | ${m.mode} | ${m.rounds} | ${medianAndRange(m.ready)} | ${medianAndRange(m.toMode)} | ${medianAndRange(m.compileAttach)} |`,
    ),
    '',
    `Every round: ${result.rounds.map((r) => `${r.bpftrace} ${r.mode} ${s(r.secondsToReady)}`).join(', ')}.`,
    '',
  );
  // Section 7 starts the agent on the host with the machine's bpftrace in tracepoint mode: the
  // guest's figure beside it is the same bpftrace in the same mode.
  const sameAsHost = summaries.find(
    (m) => m.bpftrace === result.machineBpftrace && m.mode === 'tracepoint',
  );
  const comparison =
    hostSecondsToReady === undefined
      ? "section 7 of a full run gives the host's start-up (the machine's bpftrace, tracepoint mode) to compare with"
      : sameAsHost === undefined || sameAsHost.ready.length === 0
        ? `the host's start-up in section 7 of this run (${result.machineBpftrace}, tracepoint mode) was ${s(hostSecondsToReady)}`
        : `the host's start-up in section 7 of this run (${result.machineBpftrace}, tracepoint mode) was ${s(hostSecondsToReady)}, the guest's with the same bpftrace in the same mode ${(median(sameAsHost.ready) / hostSecondsToReady).toFixed(1)} times as long`;
  lines.push(
    'QEMU emulates every instruction here (no KVM): the guest is several times slower than the',
    `same kernel on real hardware, and these figures are an upper bound, not a node's start-up;`,
    `${comparison}. The first start of a guest, and the first on each bpftrace, also reads Node,`,
    "bpftrace and LLVM cold from the machine's root over 9p.",
  );
  if (result.failures.length > 0) {
    lines.push('', 'Failures in the guest:', '', ...result.failures.map((f) => `- ${f}`));
  }
  lines.push('');
  return lines.join('\n');
}
