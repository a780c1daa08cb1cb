import type { Logger } from 'pino';

import type { ProbeExit } from './probe-process.js';

const STDERR_TAIL_LINES = 20;
// bpftrace 0.17 prints this on every start on kernels that account BPF memory to cgroups
// (5.11+), where RLIMIT_MEMLOCK no longer matters; the probe then works.
const HARMLESS_MEMLOCK_MESSAGE = /couldn't set RLIMIT_MEMLOCK/;
// bpftrace 0.22 and later, on every start: the agent gives the map bound under the old name
// too, for 0.17 (mapKeysEnv in probes/catalogue.ts), and the new name is the one they read.
const HARMLESS_MAP_KEYS_DEPRECATION = /BPFTRACE_MAP_KEYS_MAX is deprecated/;

/**
 * With this variable set, bpftrace writes ATTACHED_NOTICE once every probe is attached (its own
 * test suite waits on it): on stderr in 0.17, on stdout in later releases. The `attached_probes`
 * record comes earlier, before the first attach: a probe taken as ready then misses what happens while bpftrace is
 * still attaching (measured: 9 to 16 of about 4,400 SNAT insert failures at the start of a
 * race begun on that record).
 */
export const NOTIFY_ATTACHED_ENV = { __BPFTRACE_NOTIFY_PROBES_ATTACHED: '1' } as const;
export const ATTACHED_NOTICE = '__BPFTRACE_NOTIFY_PROBES_ATTACHED';

/**
 * bpftrace's stderr: logged line by line, the harmless RLIMIT_MEMLOCK notice once per agent
 * (debug after that), the last lines kept to say why a probe ended; the notice that every
 * probe is attached handed to `onAttached`.
 */
export class ProbeStderr {
  private memlockNoticeLogged = false;

  constructor(private readonly logger: Logger) {}

  /** Reads `lines` to their end; fills `tail` with the last lines worth reporting. */
  async read(
    probe: string,
    lines: AsyncIterable<string>,
    tail: string[],
    onAttached: () => void = () => {},
  ): Promise<void> {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      if (line.trim() === ATTACHED_NOTICE) {
        noticeAttached(this.logger, probe, onAttached);
        continue;
      }
      if (HARMLESS_MAP_KEYS_DEPRECATION.test(line)) {
        this.logger.debug({ probe, stderr: line }, 'bpftrace stderr');
        continue;
      }
      if (HARMLESS_MEMLOCK_MESSAGE.test(line)) {
        if (this.memlockNoticeLogged) {
          this.logger.debug({ probe, stderr: line }, 'bpftrace stderr');
        } else {
          this.memlockNoticeLogged = true;
          this.logger.info(
            { probe, stderr: line },
            'bpftrace could not raise RLIMIT_MEMLOCK; harmless where BPF memory is charged to cgroups (kernel 5.11+)',
          );
        }
        continue;
      }
      tail.push(truncate(line, 500));
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
      this.logger.warn({ probe, stderr: line }, 'bpftrace stderr');
    }
  }
}

/** Hands bpftrace's attached notice on; its handling failing must not end a read, nor the agent. */
export function noticeAttached(logger: Logger, probe: string, onAttached: () => void): void {
  try {
    onAttached();
  } catch (error) {
    logger.error({ probe, err: error }, 'probe attached, but marking it ready failed');
  }
}

/**
 * Why a probe ended before attaching, in one line: bpftrace's last ERROR line (it names the
 * missing field, type or function), else its last stderr line, else how the process ended.
 */
export function failureOf(exit: ProbeExit, stderr: readonly string[]): string {
  if (exit.spawnError !== undefined) return exit.spawnError;
  const errors = stderr.filter((line) => /\bERROR\b/.test(line));
  const line = errors.at(-1) ?? stderr.at(-1);
  if (line !== undefined) return truncate(line.trim(), 300);
  if (exit.signal !== undefined) return `killed by ${exit.signal}`;
  return `exit code ${exit.exitCode ?? 'none'}`;
}

export function truncate(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars)}…(${text.length} chars)`;
}
