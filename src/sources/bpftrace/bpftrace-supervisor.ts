import { performance } from 'node:perf_hooks';

import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import type { ProbeEvent } from '../../events/types.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from '../../shared/backoff.js';
import { realDelay, waitOrAbort, type Delay } from '../../shared/delay.js';
import type { Lifecycle } from '../../shared/lifecycle.js';
import {
  DECODE_ERROR_CODES,
  type DecodedLine,
  type LineDecoder,
} from '../../decode/decoded-line.js';
import { LogRateLimiter } from '../../shared/log-rate-limiter.js';
import type { ProbeExit, ProbeProcess, ProbeSpawner } from './probe-process.js';
import {
  probeUnavailableReasons,
  type ProbeUnavailableReason,
  type UnavailableProbe,
} from './catalogue.js';

/** A probe ready to run: its script and positional arguments already resolved for this kernel. */
export interface ProbeDefinition {
  /** Stable name used in metric labels and logs, e.g. "tracepoint/dns-drops". */
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  /** bpftrace options put before the script, e.g. `--include` of a kernel header. */
  readonly bpftraceOptions?: readonly string[];
  /** Added to bpftrace's environment (BPFTRACE_BTF, BPFTRACE_KERNEL_SOURCE, …). */
  readonly env?: Readonly<Record<string, string>>;
  /** Overrides the supervisor's attach timeout, e.g. for a script that compiles kernel headers. */
  readonly attachTimeoutMs?: number;
}

export interface BpftraceSupervisorOptions {
  readonly probes: readonly ProbeDefinition[];
  readonly decoderFor: (probe: ProbeDefinition) => LineDecoder;
  /** Receives every decoded event; an exception thrown here is logged and the stream goes on. */
  readonly onEvent: (event: ProbeEvent, probe: string) => void;
  /**
   * Receives the probe's printed count maps and their clearing, with the number of the
   * bpftrace run they come from (a new run's maps start empty). Handled like onEvent.
   */
  readonly onCounts?: (record: MapRecord, probe: string, run: number) => void;
  readonly spawn: ProbeSpawner;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Default "bpftrace" (looked up in PATH). */
  readonly bpftracePath?: string;
  /** Put before the bpftrace command, e.g. the result of `parentDeathPrefix()`. */
  readonly commandPrefix?: readonly string[];
  readonly delay?: Delay;
  /** Monotonic milliseconds. */
  readonly now?: () => number;
  readonly random?: () => number;
  readonly backoff?: BackoffPolicy;
  /** A probe attached for this long has recovered: its next restart starts the backoff over. */
  readonly stableAfterMs?: number;
  /** A probe still not attached after this long is killed and restarted. */
  readonly attachTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL. */
  readonly stopGraceMs?: number;
  /** Probes of the mode that detection found this kernel cannot run: reported, never started. */
  readonly unavailable?: readonly UnavailableProbe[];
  /** A probe that exits before attaching this many times in a row is reported unavailable. */
  readonly unavailableAfterFailures?: number;
  /** How often an unavailable probe is tried again, in case what failed was transient. */
  readonly unavailableRetryMs?: number;
}

/** A printed count map, or the news that the probe cleared one. */
export type MapRecord = Extract<DecodedLine, { type: 'counts' } | { type: 'map_cleared' }>;

export interface ProbeStatus {
  readonly name: string;
  readonly ready: boolean;
  readonly pid: number | undefined;
  readonly restarts: number;
  /** Set while the probe cannot run on this kernel; readiness does not wait for it. */
  readonly unavailable: UnavailableProbe | undefined;
}

const REJECTED_LINE_LOG_CHARS = 200;
const STDERR_TAIL_LINES = 20;
// bpftrace 0.17 prints this on every start on kernels that account BPF memory to cgroups
// (5.11+), where RLIMIT_MEMLOCK no longer matters; the probe then works.
const HARMLESS_MEMLOCK_MESSAGE = /couldn't set RLIMIT_MEMLOCK/;
/** A decoder is not supposed to throw; if it does, the line is counted under this code. */
const DECODER_EXCEPTION = 'decoder_exception';

interface ProbeState {
  readonly definition: ProbeDefinition;
  readonly decode: LineDecoder;
  readonly rejectedLog: LogRateLimiter;
  readonly lostLog: LogRateLimiter;
  readonly sinkErrorLog: LogRateLimiter;
  readonly handlingErrorLog: LogRateLimiter;
  /** Events lost since the last lost-events message was logged. */
  lostSinceLog: number;
  child: ProbeProcess | undefined;
  /** Runs of bpftrace started for this probe. */
  runs: number;
  ready: boolean;
  attachedAt: number | undefined;
  restarts: number;
  /** Exits before attaching since it last attached. */
  failuresBeforeAttach: number;
  unavailable: UnavailableProbe | undefined;
}

interface SupervisorMetrics {
  readonly up: Gauge<'probe'>;
  readonly restarts: Counter<'probe'>;
  readonly decoded: Counter<'probe'>;
  readonly rejected: Counter<'probe' | 'error'>;
  readonly lost: Counter<'probe'>;
  readonly unavailable: Gauge<'probe' | 'reason'>;
  readonly handlingErrors: Counter<'probe'>;
  readonly maps: Counter<'probe'>;
}

/**
 * Runs one `bpftrace -f json -B line SCRIPT ARGS…` per probe for as long as the agent lives:
 * streams its lines through the decoder, restarts it with backoff whenever it exits, and stops
 * every child on stop(). Never throws at its caller for anything a probe does.
 */
export class BpftraceSupervisor implements Lifecycle {
  readonly name = 'probes';
  private readonly states: ProbeState[];
  private readonly metrics: SupervisorMetrics;
  private readonly lifetime = new AbortController();
  private readonly runners: Promise<void>[] = [];
  private readonly delay: Delay;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly backoff: BackoffPolicy;
  private readonly stableAfterMs: number;
  private readonly attachTimeoutMs: number;
  private readonly stopGraceMs: number;
  private readonly unavailableAfterFailures: number;
  private readonly unavailableRetryMs: number;
  private readonly unavailableAtStart: readonly UnavailableProbe[];
  private memlockNoticeLogged = false;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: BpftraceSupervisorOptions) {
    this.delay = options.delay ?? realDelay;
    this.now = options.now ?? (() => performance.now());
    this.random = options.random ?? Math.random;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.stableAfterMs = options.stableAfterMs ?? 60_000;
    // Compiling a script is most of the time to attach: well under a second on a node, but
    // 30 s were not enough for four scripts starting at once on 6.1 under software emulation.
    this.attachTimeoutMs = options.attachTimeoutMs ?? 120_000;
    this.stopGraceMs = options.stopGraceMs ?? 2_000;
    this.unavailableAfterFailures = options.unavailableAfterFailures ?? 3;
    this.unavailableRetryMs = options.unavailableRetryMs ?? 300_000;
    this.unavailableAtStart = options.unavailable ?? [];
    this.metrics = registerMetrics(options.registry);
    this.states = options.probes.map((definition) => ({
      definition,
      decode: options.decoderFor(definition),
      rejectedLog: new LogRateLimiter(10, 60_000, this.now),
      lostLog: new LogRateLimiter(10, 60_000, this.now),
      sinkErrorLog: new LogRateLimiter(10, 60_000, this.now),
      handlingErrorLog: new LogRateLimiter(10, 60_000, this.now),
      lostSinceLog: 0,
      child: undefined,
      runs: 0,
      ready: false,
      attachedAt: undefined,
      restarts: 0,
      failuresBeforeAttach: 0,
      unavailable: undefined,
    }));
    for (const probe of this.unavailableAtStart) {
      this.metrics.unavailable.set({ probe: probe.name, reason: probe.reason }, 1);
    }
    for (const { definition } of this.states) {
      const probe = definition.name;
      this.metrics.up.set({ probe }, 0);
      this.metrics.restarts.inc({ probe }, 0);
      this.metrics.decoded.inc({ probe }, 0);
      this.metrics.maps.inc({ probe }, 0);
      this.metrics.lost.inc({ probe }, 0);
      this.metrics.handlingErrors.inc({ probe }, 0);
      for (const error of [...DECODE_ERROR_CODES, DECODER_EXCEPTION])
        this.metrics.rejected.inc({ probe, error }, 0);
    }
  }

  /** Starts every probe; aborting `signal` is the same as calling stop(). */
  start(signal?: AbortSignal): void {
    if (this.started) throw new Error('BpftraceSupervisor already started');
    this.started = true;
    if (signal !== undefined) {
      if (signal.aborted) {
        void this.stop();
        return;
      }
      signal.addEventListener('abort', () => void this.stop(), { once: true });
    }
    for (const state of this.states) this.runners.push(this.supervise(state));
  }

  /** SIGTERM to every probe, SIGKILL to those still there after the grace period; resolves once all are gone. */
  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  /**
   * True once every probe has attached or been found unable to run on this kernel (and none
   * has exited since): one probe the kernel cannot run never holds the agent unready.
   */
  isReady(): boolean {
    return (
      this.stopping === undefined &&
      this.states.every((state) => state.ready || state.unavailable !== undefined)
    );
  }

  /**
   * The probes that have neither attached nor been found unavailable, for /readyz; undefined
   * when there are none.
   */
  waitingFor(): string | undefined {
    const pending = this.states.filter((state) => !state.ready && state.unavailable === undefined);
    if (pending.length === 0) return undefined;
    return `probes not attached: ${pending.map((state) => state.definition.name).join(', ')}`;
  }

  status(): ProbeStatus[] {
    return this.states.map((state) => ({
      name: state.definition.name,
      ready: state.ready,
      pid: state.child?.pid,
      restarts: state.restarts,
      unavailable: state.unavailable,
    }));
  }

  /** The probes that do not run on this kernel: found at start-up, and found at run time. */
  unavailable(): UnavailableProbe[] {
    return [
      ...this.unavailableAtStart,
      ...this.states.flatMap((state) =>
        state.unavailable === undefined ? [] : [state.unavailable],
      ),
    ];
  }

  private async stopAll(): Promise<void> {
    this.lifetime.abort();
    for (const state of this.states) {
      if (state.child !== undefined) void this.terminate(state.child);
    }
    await Promise.all(this.runners);
  }

  private async supervise(state: ProbeState): Promise<void> {
    const probe = state.definition.name;
    let attempt = 0;
    for (let first = true; !this.lifetime.signal.aborted; first = false) {
      if (!first) {
        // An unavailable probe is retried slowly, in case what failed was transient (a module
        // not loaded yet, headers mounted late); any other restart backs off.
        const delayMs =
          state.unavailable === undefined
            ? backoffDelay(attempt, this.backoff, this.random)
            : this.unavailableRetryMs;
        attempt += 1;
        this.options.logger.info({ probe, delayMs, attempt }, 'restarting probe after backoff');
        await waitOrAbort(this.delay, delayMs, this.lifetime.signal);
        if (this.lifetime.signal.aborted) break;
        state.restarts += 1;
        this.metrics.restarts.inc({ probe });
      }
      const run = await this.runOnce(state);
      if (run.stableMs >= this.stableAfterMs) attempt = 0;
      if (this.lifetime.signal.aborted) break;
      if (run.attached) {
        state.failuresBeforeAttach = 0;
        continue;
      }
      state.failuresBeforeAttach += 1;
      if (
        state.unavailable === undefined &&
        state.failuresBeforeAttach >= this.unavailableAfterFailures
      ) {
        this.markUnavailable(state, run.failure);
      }
    }
  }

  private markUnavailable(state: ProbeState, failure: string): void {
    const probe = state.definition.name;
    const reason: ProbeUnavailableReason = 'exits_before_attach';
    state.unavailable = { name: probe, reason, detail: failure };
    this.metrics.unavailable.set({ probe, reason }, 1);
    this.options.logger.error(
      {
        probe,
        reason,
        detail: failure,
        failures: state.failuresBeforeAttach,
        retryMs: this.unavailableRetryMs,
      },
      `probe unavailable on this kernel: it exited before attaching ${state.failuresBeforeAttach} ` +
        `times in a row (${failure}); the other probes go on, and it is tried again every ` +
        `${Math.round(this.unavailableRetryMs / 1000)} s`,
    );
  }

  private markAvailable(state: ProbeState): void {
    const previous = state.unavailable;
    if (previous === undefined) return;
    state.unavailable = undefined;
    this.metrics.unavailable.set({ probe: previous.name, reason: previous.reason }, 0);
    this.options.logger.info(
      { probe: previous.name, wasUnavailable: previous.detail },
      'probe attached after all: available again',
    );
  }

  /** Runs the probe until its process is gone: whether it attached, for how long, else why not. */
  private async runOnce(
    state: ProbeState,
  ): Promise<{ attached: boolean; stableMs: number; failure: string }> {
    const probe = state.definition.name;
    const { definition } = state;
    const command = [
      ...(this.options.commandPrefix ?? []),
      this.options.bpftracePath ?? 'bpftrace',
      ...['-f', 'json', '-B', 'line', ...(definition.bpftraceOptions ?? [])],
      ...[definition.script, ...definition.args],
    ];
    const [file = 'bpftrace', ...args] = command;
    let child: ProbeProcess;
    try {
      child = this.options.spawn(file, args, { env: definition.env });
    } catch (error) {
      this.options.logger.error({ probe, err: error, command }, 'probe could not be started');
      return { attached: false, stableMs: 0, failure: `could not be started: ${String(error)}` };
    }
    state.child = child;
    state.runs += 1;
    state.ready = false;
    state.attachedAt = undefined;
    this.options.logger.info({ probe, pid: child.pid, command }, 'probe started');

    const attachWatch = new AbortController();
    const stderrTail: string[] = [];
    let timedOut = false;
    const watchdog = this.watchAttach(state, child, attachWatch.signal).then((killed) => {
      timedOut = killed;
    });
    const [exit] = await Promise.all([
      child.exited,
      this.readStdout(state, child, attachWatch),
      this.readStderr(state, child, stderrTail),
    ]);
    attachWatch.abort();
    await watchdog;

    const stableMs = state.attachedAt === undefined ? 0 : this.now() - state.attachedAt;
    const attached = state.attachedAt !== undefined;
    state.child = undefined;
    state.ready = false;
    state.attachedAt = undefined;
    this.metrics.up.set({ probe }, 0);
    this.logExit(probe, child, exit, attached, stderrTail);
    const attachTimeoutMs = definition.attachTimeoutMs ?? this.attachTimeoutMs;
    const failure = timedOut
      ? `did not attach within ${Math.round(attachTimeoutMs / 1000)} s`
      : failureOf(exit, stderrTail);
    return { attached, stableMs, failure };
  }

  /** Kills the probe if it has not attached in time; resolves true when it did so. */
  private async watchAttach(
    state: ProbeState,
    child: ProbeProcess,
    attached: AbortSignal,
  ): Promise<boolean> {
    const cancel = AbortSignal.any([attached, this.lifetime.signal]);
    const attachTimeoutMs = state.definition.attachTimeoutMs ?? this.attachTimeoutMs;
    await waitOrAbort(this.delay, attachTimeoutMs, cancel);
    if (cancel.aborted) return false;
    this.options.logger.error(
      { probe: state.definition.name, pid: child.pid, attachTimeoutMs },
      'probe did not attach in time; killing it to retry',
    );
    await this.terminate(child);
    return true;
  }

  private async readStdout(
    state: ProbeState,
    child: ProbeProcess,
    attachWatch: AbortController,
  ): Promise<void> {
    for await (const lines of child.stdoutBatches) {
      for (const line of lines) {
        if (line.trim() === '') continue; // bpftrace ends its output with blank lines
        // One line's failure must not end the read: an exception escaping here would reject
        // the probe's run and, unhandled, end the agent.
        try {
          this.handleLine(state, line, attachWatch);
        } catch (error) {
          this.lineHandlingFailed(state, line, error);
        }
      }
    }
  }

  private lineHandlingFailed(state: ProbeState, line: string, error: unknown): void {
    const probe = state.definition.name;
    // Not a rejection: every branch of handleLine counts the line before anything that could
    // throw, so the line is already counted by what it decoded to.
    this.metrics.handlingErrors.inc({ probe });
    const admitted = state.handlingErrorLog.admit();
    if (admitted === undefined) return;
    try {
      this.options.logger.error(
        {
          probe,
          err: error,
          line: truncate(line, REJECTED_LINE_LOG_CHARS),
          suppressedBefore: admitted.suppressedBefore,
        },
        'probe line handling failed; reading goes on',
      );
    } catch {
      // The logger itself may be what failed; the count above still tells.
    }
  }

  private handleLine(state: ProbeState, line: string, attachWatch: AbortController): void {
    const probe = state.definition.name;
    let decoded;
    try {
      decoded = state.decode(line);
    } catch (error) {
      decoded = { type: 'rejected', code: DECODER_EXCEPTION, detail: String(error) } as const;
    }
    switch (decoded.type) {
      case 'counts':
      case 'map_cleared':
        this.metrics.maps.inc({ probe });
        try {
          this.options.onCounts?.(decoded, probe, state.runs);
        } catch (error) {
          this.sinkFailed(state, error);
        }
        return;
      case 'event':
        this.metrics.decoded.inc({ probe });
        try {
          this.options.onEvent(decoded.event, probe);
        } catch (error) {
          // A sink failing on every event of a storm must not turn into a log line per event.
          const admitted = state.sinkErrorLog.admit();
          if (admitted !== undefined) {
            this.options.logger.error(
              { probe, err: error, suppressedBefore: admitted.suppressedBefore },
              'event sink failed; event dropped by the sink',
            );
          }
        }
        return;
      case 'attached':
        state.ready = true;
        state.attachedAt = this.now();
        attachWatch.abort();
        this.markAvailable(state);
        this.metrics.up.set({ probe }, 1);
        this.options.logger.info(
          { probe, pid: state.child?.pid, probes: decoded.probes },
          'probe attached',
        );
        return;
      case 'lost': {
        this.metrics.lost.inc({ probe }, decoded.count);
        // In a storm bpftrace reports a loss on nearly every poll: the metric has every one,
        // the log a few a minute with the total since the last message.
        state.lostSinceLog += decoded.count;
        const admitted = state.lostLog.admit();
        if (admitted !== undefined) {
          this.options.logger.warn(
            {
              probe,
              lost: state.lostSinceLog,
              reports: admitted.suppressedBefore + 1,
            },
            'probe lost events: perf ring buffer overflowed',
          );
          state.lostSinceLog = 0;
        }
        return;
      }
      case 'ignored':
        return;
      case 'rejected': {
        this.metrics.rejected.inc({ probe, error: decoded.code });
        const admitted = state.rejectedLog.admit();
        if (admitted !== undefined) {
          this.options.logger.warn(
            {
              probe,
              error: decoded.code,
              detail: decoded.detail,
              line: truncate(line, REJECTED_LINE_LOG_CHARS),
              suppressedBefore: admitted.suppressedBefore,
            },
            'probe line rejected',
          );
        }
        return;
      }
    }
  }

  private sinkFailed(state: ProbeState, error: unknown): void {
    const admitted = state.sinkErrorLog.admit();
    if (admitted !== undefined) {
      this.options.logger.error(
        { probe: state.definition.name, err: error, suppressedBefore: admitted.suppressedBefore },
        'count map handling failed; its counts are missing',
      );
    }
  }

  private async readStderr(state: ProbeState, child: ProbeProcess, tail: string[]): Promise<void> {
    const probe = state.definition.name;
    for await (const line of child.stderrLines) {
      if (line.trim() === '') continue;
      if (HARMLESS_MEMLOCK_MESSAGE.test(line)) {
        if (this.memlockNoticeLogged) {
          this.options.logger.debug({ probe, stderr: line }, 'bpftrace stderr');
        } else {
          this.memlockNoticeLogged = true;
          this.options.logger.info(
            { probe, stderr: line },
            'bpftrace could not raise RLIMIT_MEMLOCK; harmless where BPF memory is charged to cgroups (kernel 5.11+)',
          );
        }
        continue;
      }
      tail.push(truncate(line, 500));
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
      this.options.logger.warn({ probe, stderr: line }, 'bpftrace stderr');
    }
  }

  private logExit(
    probe: string,
    child: ProbeProcess,
    exit: ProbeExit,
    attached: boolean,
    stderr: string[],
  ): void {
    const details = {
      probe,
      pid: child.pid,
      exitCode: exit.exitCode,
      signal: exit.signal,
      spawnError: exit.spawnError,
    };
    if (this.lifetime.signal.aborted) {
      this.options.logger.info(details, 'probe stopped');
    } else if (!attached) {
      this.options.logger.error(
        { ...details, stderr: stderr.join('\n') },
        'probe exited before attaching',
      );
    } else {
      this.options.logger.warn({ ...details, stderr: stderr.join('\n') }, 'probe exited');
    }
  }

  private async terminate(child: ProbeProcess): Promise<void> {
    const gone = new AbortController();
    void child.exited.then(() => gone.abort());
    child.kill('SIGTERM');
    await waitOrAbort(this.delay, this.stopGraceMs, gone.signal);
    if (gone.signal.aborted) return;
    this.options.logger.warn(
      { pid: child.pid, graceMs: this.stopGraceMs },
      'probe ignored SIGTERM; sending SIGKILL',
    );
    child.kill('SIGKILL');
    await child.exited;
  }
}

function registerMetrics(registry: Registry): SupervisorMetrics {
  return {
    up: new Gauge({
      name: 'conntrack_observer_probe_up',
      help: '1 while the probe is running and attached to the kernel, else 0.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    restarts: new Counter({
      name: 'conntrack_observer_probe_restarts_total',
      help: 'Times the probe process was started again after it exited.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    decoded: new Counter({
      name: 'conntrack_observer_probe_events_decoded_total',
      help: 'Events read from the probe output and decoded.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'conntrack_observer_probe_lines_rejected_total',
      help: 'Probe output lines that could not be decoded, by decode error code.',
      labelNames: ['probe', 'error'],
      registers: [registry],
    }),
    unavailable: new Gauge({
      name: 'conntrack_observer_probe_unavailable',
      help:
        'Set to 1 while a probe of the chosen mode cannot run on this kernel, by reason: ' +
        probeUnavailableReasons.join(', ') +
        ' (docs/metrics.md). 0 once a probe found unavailable at run time attached after all.',
      labelNames: ['probe', 'reason'],
      registers: [registry],
    }),
    handlingErrors: new Counter({
      name: 'conntrack_observer_probe_line_handling_errors_total',
      help: 'Probe output lines whose handling threw after they were counted (a bug: the log has the error); the read went on.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    maps: new Counter({
      name: 'conntrack_observer_probe_map_records_total',
      help: 'Count maps the probe printed (and clearings it announced) that were read.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    lost: new Counter({
      name: 'conntrack_observer_probe_events_lost_total',
      help: 'Events the kernel dropped before the probe read them (bpftrace lost_events: perf ring buffer full).',
      labelNames: ['probe'],
      registers: [registry],
    }),
  };
}

/**
 * Why a probe ended before attaching, in one line: bpftrace's last ERROR line (it names the
 * missing field, type or function), else its last stderr line, else how the process ended.
 */
function failureOf(exit: ProbeExit, stderr: readonly string[]): string {
  if (exit.spawnError !== undefined) return exit.spawnError;
  const errors = stderr.filter((line) => /\bERROR\b/.test(line));
  const line = errors.at(-1) ?? stderr.at(-1);
  if (line !== undefined) return truncate(line.trim(), 300);
  if (exit.signal !== undefined) return `killed by ${exit.signal}`;
  return `exit code ${exit.exitCode ?? 'none'}`;
}

function truncate(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars)}…(${text.length} chars)`;
}
