/**
 * One guest: boots a kernel under QEMU (software emulation) through virtme-run, with the
 * machine's root shared read-only and writable overlays, runs a command in the repository and
 * brings back its exit status, output and result files.
 *
 * Nothing outlives the run: virtme-run and QEMU run in a process group of their own that is
 * killed on timeout and when the runner is interrupted, and both carry a parent-death signal,
 * so that even a runner killed outright takes its guest with it.
 */
import {
  createWriteStream,
  mkdirSync,
  readFileSync,
  rmSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { execa } from 'execa';
import type { KernelTree } from './kernel-tree.js';
import type { Virtme } from './virtme.js';

/** Where the shared directory appears in the guest; inside the /var overlay, as virtme asks. */
const guestSharedDir = '/var/lib/kernel-matrix';
const guestUpMarker = 'kernel-matrix: guest up';

export interface GuestRunOptions {
  readonly tree: KernelTree;
  readonly virtme: Virtme;
  readonly repo: string;
  /** The command and its arguments, run with bash in the repository. */
  readonly command: readonly string[];
  /** Host directory for this kernel's logs and results; emptied first. */
  readonly outDir: string;
  readonly timeoutMs: number;
  readonly memory: string;
  readonly cpus: number;
  /**
   * Copy the boot messages too. The console is always kept in console.log at full log level,
   * and what comes once the guest is up (the command's output, an oops, an OOM kill, a panic)
   * is always copied to stderr: a guest that dies says why.
   */
  readonly bootConsole: boolean;
  /** Aborting kills the guest (the runner was interrupted). */
  readonly signal: AbortSignal;
}

export type GuestOutcome =
  | { readonly kind: 'exited'; readonly exitCode: number }
  | { readonly kind: 'timed-out'; readonly afterSeconds: number }
  | { readonly kind: 'interrupted' }
  /** The guest went away without recording the command's status: no boot, panic, power-off. */
  | {
      readonly kind: 'guest-failed';
      readonly virtmeExitCode: number | undefined;
      readonly ranCommand: boolean;
    };

export interface GuestRunResult {
  /** An earlier boot of this kernel whose guest died without the kernel saying why. */
  readonly earlierAttempt?: GuestRunResult;
  readonly kernel: string;
  readonly release: string;
  readonly outcome: GuestOutcome;
  /** Host wall time from start to the guest's first line; undefined when it never came. */
  readonly bootSeconds: number | undefined;
  readonly durationSeconds: number;
  readonly outDir: string;
}

export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function pipeLines(
  from: Readable,
  prefix: string,
  to: Writable,
  copy: Writable,
  /** Whether the line is also shown (every line is copied). */
  shown: (line: string) => boolean,
): Promise<void> {
  from.pipe(copy);
  const lines = createInterface({ input: from, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (shown(line)) to.write(`${prefix}${line}\n`);
  });
  return new Promise((resolve) => lines.once('close', resolve));
}

export async function runGuest(options: GuestRunOptions): Promise<GuestRunResult> {
  const { tree, virtme, repo, outDir } = options;
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(join(outDir, 'results'), { recursive: true });
  writeFileSync(
    join(outDir, 'guest.env'),
    [
      `export KERNEL_MATRIX_KERNEL=${shellQuote(tree.spec.id)}`,
      `export KERNEL_MATRIX_TREE=${shellQuote(tree.root)}`,
      `export KERNEL_MATRIX_REPO=${shellQuote(repo)}`,
      '',
    ].join('\n'),
  );
  writeFileSync(join(outDir, 'command.sh'), `${options.command.map(shellQuote).join(' ')}\n`);

  // virtme-run's own temporary files (the exit-code channel) go here and are removed with it.
  removeStaleScratch();
  const scratch = mkdtempSync(join(tmpdir(), `${scratchPrefix}${process.pid}-`));
  const args = [
    '--pdeathsig',
    'KILL',
    '--',
    join(repo, 'test', 'kernels', 'with-pipes.sh'),
    'python3',
    virtme.run,
    '--kimg',
    tree.image,
    '--mods=auto',
    '--disable-kvm',
    // No virtiofsd on these machines.
    '--force-9p',
    '--memory',
    options.memory,
    '--cpus',
    String(options.cpus),
    '--qemu-bin',
    join(repo, 'test', 'kernels', 'qemu-with-pdeathsig.sh'),
    '--qemu-opt=-accel',
    '--qemu-opt=tcg',
    // The shared root is read-only and has no /lib/modules: writable overlays (in guest RAM).
    '--overlay-rwdir=/usr',
    '--overlay-rwdir=/etc',
    '--overlay-rwdir=/var',
    `--overlay-rwdir=${repo}`,
    `--rwdir=${guestSharedDir}=${outDir}`,
    // Always: virtme otherwise sends the console to /dev/null, and a guest that dies says
    // nothing. Errors and worse (an oops, an OOM kill, a panic) printed, not virtme's
    // loglevel=1: the last loglevel on the command line wins.
    '--show-boot-console',
    '--kopt',
    'loglevel=4',
    '--script-sh',
    `exec bash ${shellQuote(join(repo, 'test', 'kernels', 'guest-init.sh'))} ${guestSharedDir}`,
  ];
  const started = Date.now();
  let bootSeconds: number | undefined;
  let timedOut = false;
  const prefix = `[${tree.spec.id}] `;
  // QEMU opens its stdout with O_TRUNC (through /proc/self/fd): pipes, never a file.
  const subprocess = execa('setpriv', args, {
    cwd: repo,
    detached: true,
    reject: false,
    buffer: false,
    stdin: 'ignore',
    env: { PYTHONPATH: virtme.pythonPath, TMPDIR: scratch },
  });
  const killGroup = (): void => {
    if (subprocess.pid === undefined) return;
    try {
      process.kill(-subprocess.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  options.signal.addEventListener('abort', killGroup, { once: true });
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, options.timeoutMs);
  try {
    const stdoutLog = createWriteStream(join(outDir, 'stdout.log'));
    const consoleLog = createWriteStream(join(outDir, 'console.log'));
    const streams = Promise.all([
      pipeLines(subprocess.stdout!, prefix, process.stdout, stdoutLog, () => true),
      // The console (virtme puts it on stderr): boot messages shown only when asked for.
      pipeLines(subprocess.stderr!, prefix, process.stderr, consoleLog, (line) => {
        if (bootSeconds === undefined && line.startsWith(guestUpMarker)) {
          bootSeconds = (Date.now() - started) / 1000;
        }
        return options.bootConsole || bootSeconds !== undefined;
      }),
    ]);
    const result = await subprocess;
    await streams;
    const durationSeconds = (Date.now() - started) / 1000;
    const base = {
      kernel: tree.spec.id,
      release: tree.release,
      bootSeconds,
      durationSeconds,
      outDir,
    };
    if (options.signal.aborted) return { ...base, outcome: { kind: 'interrupted' } };
    if (timedOut)
      return { ...base, outcome: { kind: 'timed-out', afterSeconds: options.timeoutMs / 1000 } };
    const status = readStatus(join(outDir, 'exit-status'));
    if (status !== undefined) return { ...base, outcome: { kind: 'exited', exitCode: status } };
    return {
      ...base,
      outcome: {
        kind: 'guest-failed',
        virtmeExitCode: result.exitCode,
        ranCommand: bootSeconds !== undefined,
      },
    };
  } finally {
    clearTimeout(timer);
    killGroup();
    options.signal.removeEventListener('abort', killGroup);
    rmSync(scratch, { recursive: true, force: true });
  }
}

const scratchPrefix = 'kernel-matrix-';

/** Scratch directories of runners that were killed outright (their pid is in the name). */
function removeStaleScratch(): void {
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(new RegExp(`^${scratchPrefix}(\\d+)-`).exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
    }
  }
}

function readStatus(path: string): number | undefined {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * runGuest, and once more when the guest died with nothing from the kernel on its console:
 * QEMU's software emulation can lose a guest under load (the kernel, not the emulator, would
 * have said why). The first boot's logs are kept aside in `<outDir>.first-boot` and the result
 * names that boot. A guest whose kernel reported a failure is never booted again.
 */
export async function runGuestOnceMoreIfLost(
  options: GuestRunOptions,
  log: (line: string) => void,
): Promise<GuestRunResult> {
  const first = await runGuest(options);
  if (first.outcome.kind !== 'guest-failed' || options.signal.aborted) return first;
  const failure = kernelFailureIn(readFileSync(join(options.outDir, 'console.log'), 'utf8'));
  if (failure !== undefined) {
    log(`kernel ${first.kernel}: the kernel reported: ${failure.trim()}`);
    return first;
  }
  const aside = `${options.outDir}.first-boot`;
  rmSync(aside, { recursive: true, force: true });
  renameSync(options.outDir, aside);
  log(
    `${summaryLine(first)}; no kernel failure on its console: booting it once more (first boot's logs in ${aside})`,
  );
  return { ...(await runGuest(options)), earlierAttempt: { ...first, outDir: aside } };
}

/**
 * The first console line in which the kernel itself reports a failure (panic, oops, BUG, an OOM
 * kill, a lockup), or undefined: a guest that died without one was lost by the emulator.
 */
export function kernelFailureIn(console: string): string | undefined {
  return console
    .split('\n')
    .find((line) =>
      /Kernel panic|Oops|BUG:|Out of memory|Killed process|general protection|soft lockup|hung_task|Call Trace/.test(
        line,
      ),
    );
}

export function summaryLine(result: GuestRunResult): string {
  const boot =
    result.bootSeconds === undefined
      ? 'did not boot'
      : `booted in ${result.bootSeconds.toFixed(1)} s`;
  const outcome = result.outcome;
  const what =
    outcome.kind === 'exited'
      ? `command exited ${outcome.exitCode}`
      : outcome.kind === 'timed-out'
        ? `TIMED OUT after ${outcome.afterSeconds} s (guest killed)`
        : outcome.kind === 'interrupted'
          ? 'INTERRUPTED (guest killed)'
          : `guest failed (virtme-run exit ${String(outcome.virtmeExitCode)}, ${outcome.ranCommand ? 'command started, no exit status' : 'command never started'})`;
  const earlier =
    result.earlierAttempt === undefined
      ? ''
      : ` (second boot: the first ${summaryLine(result.earlierAttempt).replace(/^kernel \S+ \([^)]*\): /, '')}, with no kernel failure on its console)`;
  return `kernel ${result.kernel} (${result.release}): ${boot}, ${what}, ${result.durationSeconds.toFixed(1)} s in all${earlier}`;
}
