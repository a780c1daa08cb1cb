import { performance } from 'node:perf_hooks';

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

import type { ProbeEvent } from '../../events/types.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from '../../shared/backoff.js';
import { unrefTimers, waitOrAbort, type Delay } from '../../shared/timers.js';
import type { Lifecycle } from '../../shared/lifecycle.js';
import type { LineDecoder } from '../../decode/decoded-line.js';
import {
  BPFTRACE_HEAP_ENV,
  type ProbeExit,
  type ProbeProcess,
  type ProbeSpawner,
} from './probe-process.js';
import type { ProbeUnavailableReason, UnavailableProbe } from '../../probes/catalogue.js';
import {
  ATTACHED_NOTICE,
  failureOf,
  noticeAttached,
  NOTIFY_ATTACHED_ENV,
  ProbeStderr,
} from './probe-stderr.js';
import {
  newProbeLineState,
  ProbeLines,
  type MapRecord,
  type ProbeLineState,
} from './probe-lines.js';
import {
  COMBINED_PROBE,
  initialiseProbeSeries,
  registerSupervisorMetrics,
  type SupervisorMetrics,
} from './supervisor-metrics.js';
import { planProcesses, type ProcessPlan } from './process-plan.js';

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
  /**
   * The script's text, with what it prints: a probe that has them may share one bpftrace
   * process with the others (`combine`), its output routed to it by record and map name.
   */
  readonly combinable?: {
    readonly source: string;
    readonly records: readonly string[];
    readonly maps: readonly string[];
  };
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
  /**
   * Called with the process id each time a bpftrace process has attached every probe, e.g. to
   * page its compiler out (compiler-page-out.ts). What it throws is logged, never propagated.
   */
  readonly onAttached?: (pid: number, probe: string) => void;
  /** Default "bpftrace" (looked up in PATH). */
  readonly bpftracePath?: string;
  /** Put before the bpftrace command, e.g. the result of `parentDeathPrefix()`. */
  readonly commandPrefix?: readonly string[];
  /**
   * Run the combinable probes in one bpftrace process (one LLVM, one compile and attach: see
   * docs/benchmarks.md, "One bpftrace process"); if it exits before attaching, every probe
   * falls back to a process of its own. Default false: one process per probe.
   */
  readonly combine?: boolean;
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

export type { MapRecord } from './probe-lines.js';

export interface ProbeStatus {
  readonly name: string;
  readonly ready: boolean;
  readonly pid: number | undefined;
  readonly restarts: number;
  /** Set while the probe cannot run on this kernel; readiness does not wait for it. */
  readonly unavailable: UnavailableProbe | undefined;
}

/** A probe: its definition, its reading state, its process and restart record. */
interface ProbeState {
  readonly definition: ProbeDefinition;
  readonly lines: ProbeLineState;
  child: ProbeProcess | undefined;
  ready: boolean;
  attachedAt: number | undefined;
  restarts: number;
  /** Exits before attaching since it last attached. */
  failuresBeforeAttach: number;
  unavailable: UnavailableProbe | undefined;
}

/** One bpftrace process and the probes it runs. */
interface ProcessUnit {
  /** The probe's name, or "combined". */
  readonly name: string;
  readonly members: readonly ProbeState[];
  /** What follows the bpftrace options: the script and its arguments, or `-e PROGRAM`. */
  readonly program: readonly string[];
  readonly bpftraceOptions: readonly string[];
  readonly env: Readonly<Record<string, string>> | undefined;
  readonly attachTimeoutMs: number;
  /** The probe a line goes to: the member that prints it, else `processState`. */
  readonly route: (line: string) => ProbeState;
  /** Takes the lines of a combined process that no probe prints (lost_events, garbage). */
  readonly processState: ProbeState | undefined;
}

/** One run's attachment: the probe count bpftrace announced, and when it said it attached. */
interface AttachTracker {
  attachedAt: number | undefined;
  announcedProbes: number | undefined;
  attached(): void;
}

/**
 * Runs bpftrace (`bpftrace -f json -B line SCRIPT ARGS…`, or one combined program for several
 * probes) for as long as the agent lives: streams its lines through each probe's decoder,
 * restarts it with backoff whenever it exits, and stops every child on stop(). Never throws at
 * its caller for anything a probe does.
 */
export class BpftraceSupervisor implements Lifecycle {
  readonly name = 'probes';
  private readonly states: ProbeState[];
  private readonly metrics: SupervisorMetrics;
  private readonly lifetime = new AbortController();
  private readonly runners: Promise<unknown>[] = [];
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
  private readonly stderr: ProbeStderr;
  private readonly lines: ProbeLines;
  private readonly plan: ProcessPlan;
  private readonly children = new Set<ProbeProcess>();
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: BpftraceSupervisorOptions) {
    this.delay = options.delay ?? unrefTimers.delay;
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
    this.stderr = new ProbeStderr(options.logger);
    this.metrics = registerSupervisorMetrics(options.registry);
    this.lines = new ProbeLines({
      onEvent: options.onEvent,
      onCounts: options.onCounts,
      metrics: this.metrics,
      logger: options.logger,
    });
    this.states = options.probes.map((definition) => this.newState(definition));
    this.plan =
      options.combine === true
        ? planProcesses(options.probes)
        : { combined: undefined, alone: options.probes.map((probe) => probe.name), notes: [] };
    for (const note of this.plan.notes) {
      options.logger.warn(note, 'probe left out of the combined bpftrace program');
    }
    for (const probe of this.unavailableAtStart) {
      this.metrics.unavailable.set({ probe: probe.name, reason: probe.reason }, 1);
    }
    for (const { definition } of this.states) {
      initialiseProbeSeries(this.metrics, definition.name, { withUp: true });
    }
    if (this.plan.combined !== undefined) {
      initialiseProbeSeries(this.metrics, COMBINED_PROBE, { withUp: false });
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
    const combined = this.plan.combined;
    if (combined !== undefined) this.runners.push(this.superviseCombined(combined));
    for (const state of this.states) {
      if (this.plan.alone.includes(state.definition.name)) {
        this.runners.push(this.supervise(this.aloneUnit(state)));
      }
    }
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

  private newState(definition: ProbeDefinition, processLevel = false): ProbeState {
    return {
      definition,
      lines: newProbeLineState(
        definition.name,
        this.options.decoderFor(definition),
        this.now,
        processLevel,
      ),
      child: undefined,
      ready: false,
      attachedAt: undefined,
      restarts: 0,
      failuresBeforeAttach: 0,
      unavailable: undefined,
    };
  }

  private aloneUnit(state: ProbeState): ProcessUnit {
    const { definition } = state;
    return {
      name: definition.name,
      members: [state],
      program: [definition.script, ...definition.args],
      bpftraceOptions: definition.bpftraceOptions ?? [],
      env: definition.env,
      attachTimeoutMs: definition.attachTimeoutMs ?? this.attachTimeoutMs,
      route: () => state,
      processState: undefined,
    };
  }

  private combinedUnit(combined: NonNullable<ProcessPlan['combined']>): ProcessUnit {
    const members = this.states.filter((state) => combined.probes.includes(state.definition.name));
    const byName = new Map(members.map((state) => [state.definition.name, state]));
    const processState = this.newState({ name: COMBINED_PROBE, script: '-e', args: [] }, true);
    return {
      name: COMBINED_PROBE,
      members,
      program: ['-e', combined.program],
      bpftraceOptions: combined.bpftraceOptions,
      env: combined.env,
      attachTimeoutMs: combined.attachTimeoutMs ?? this.attachTimeoutMs,
      route: (line) => {
        const probe = combined.route(line);
        return (probe === undefined ? undefined : byName.get(probe)) ?? processState;
      },
      processState,
    };
  }

  private async stopAll(): Promise<void> {
    this.lifetime.abort();
    for (const child of this.children) void this.terminate(child);
    await Promise.all(this.runners);
  }

  /**
   * The combined process, restarted like a single probe's while it attaches; the first time it
   * exits before attaching, each probe goes on in a process of its own, so that one variant
   * bpftrace refuses cannot keep the others from running.
   */
  private async superviseCombined(combined: NonNullable<ProcessPlan['combined']>): Promise<void> {
    const unit = this.combinedUnit(combined);
    const failure = await this.supervise(unit);
    if (failure === undefined || this.lifetime.signal.aborted) return;
    this.options.logger.error(
      { probes: combined.probes, detail: failure },
      'combined bpftrace program exited before attaching; falling back to one bpftrace process per probe',
    );
    await Promise.all(unit.members.map((state) => this.supervise(this.aloneUnit(state))));
  }

  /**
   * Runs the unit's process until stop(). A combined unit returns why, the first time its
   * process exits before attaching; a probe alone is retried, and reported unavailable after
   * `unavailableAfterFailures` such exits in a row.
   */
  private async supervise(unit: ProcessUnit): Promise<string | undefined> {
    const combined = unit.processState !== undefined;
    const [single] = unit.members;
    let attempt = 0;
    for (let first = true; !this.lifetime.signal.aborted; first = false) {
      if (!first) {
        // An unavailable probe is retried slowly, in case what failed was transient (a module
        // not loaded yet, headers mounted late); any other restart backs off.
        const delayMs =
          single?.unavailable === undefined || combined
            ? backoffDelay(attempt, this.backoff, this.random)
            : this.unavailableRetryMs;
        attempt += 1;
        this.options.logger.info(
          { probe: unit.name, delayMs, attempt },
          'restarting probe after backoff',
        );
        await waitOrAbort(this.delay, delayMs, this.lifetime.signal);
        if (this.lifetime.signal.aborted) break;
        for (const state of unit.members) {
          state.restarts += 1;
          this.metrics.restarts.inc({ probe: state.definition.name });
        }
      }
      const run = await this.runOnce(unit);
      if (run.stableMs >= this.stableAfterMs) attempt = 0;
      if (this.lifetime.signal.aborted) break;
      if (run.attached) {
        for (const state of unit.members) state.failuresBeforeAttach = 0;
        continue;
      }
      if (combined) return run.failure;
      if (single === undefined) return undefined;
      single.failuresBeforeAttach += 1;
      if (
        single.unavailable === undefined &&
        single.failuresBeforeAttach >= this.unavailableAfterFailures
      ) {
        this.markUnavailable(single, run.failure);
      }
    }
    return undefined;
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

  /** Runs the unit's process until it is gone: whether it attached, for how long, else why not. */
  private async runOnce(
    unit: ProcessUnit,
  ): Promise<{ attached: boolean; stableMs: number; failure: string }> {
    const probe = unit.name;
    const command = [
      ...(this.options.commandPrefix ?? []),
      this.options.bpftracePath ?? 'bpftrace',
      ...['-f', 'json', '-B', 'line', ...unit.bpftraceOptions],
      ...unit.program,
    ];
    // A combined program is tens of kilobytes: the log names its probes instead.
    const logged =
      unit.processState === undefined
        ? { command }
        : {
            command: [...command.slice(0, -1), '<combined program>'],
            probes: unit.members.map((state) => state.definition.name),
          };
    const [file = 'bpftrace', ...args] = command;
    let child: ProbeProcess;
    try {
      child = this.options.spawn(file, args, {
        env: { ...unit.env, ...BPFTRACE_HEAP_ENV, ...NOTIFY_ATTACHED_ENV },
      });
    } catch (error) {
      this.options.logger.error({ probe, err: error, ...logged }, 'probe could not be started');
      return { attached: false, stableMs: 0, failure: `could not be started: ${String(error)}` };
    }
    this.children.add(child);
    for (const state of unit.members) {
      state.child = child;
      state.lines.runs += 1;
      state.ready = false;
      state.attachedAt = undefined;
    }
    this.options.logger.info({ probe, pid: child.pid, ...logged }, 'probe started');

    const attachWatch = new AbortController();
    const stderrTail: string[] = [];
    let timedOut = false;
    const watchdog = this.watchAttach(unit, child, attachWatch.signal).then((killed) => {
      timedOut = killed;
    });
    const attach = this.attachTracker(unit, attachWatch);
    const [exit] = await Promise.all([
      child.exited,
      this.readStdout(unit, child, attach),
      this.stderr.read(probe, child.stderrLines, stderrTail, () => attach.attached()),
    ]);
    const { attachedAt } = attach;
    attachWatch.abort();
    await watchdog;
    this.children.delete(child);

    const stableMs = attachedAt === undefined ? 0 : this.now() - attachedAt;
    const attached = attachedAt !== undefined;
    for (const state of unit.members) {
      state.child = undefined;
      state.ready = false;
      state.attachedAt = undefined;
      this.metrics.up.set({ probe: state.definition.name }, 0);
    }
    this.logExit(probe, child, exit, attached, stderrTail);
    const failure = timedOut
      ? `did not attach within ${Math.round(unit.attachTimeoutMs / 1000)} s`
      : failureOf(exit, stderrTail);
    return { attached, stableMs, failure };
  }

  /** Kills the process if it has not attached in time; resolves true when it did so. */
  private async watchAttach(
    unit: ProcessUnit,
    child: ProbeProcess,
    attached: AbortSignal,
  ): Promise<boolean> {
    const cancel = AbortSignal.any([attached, this.lifetime.signal]);
    await waitOrAbort(this.delay, unit.attachTimeoutMs, cancel);
    if (cancel.aborted) return false;
    // Most often the compile is merely slow (a busy or slow node, an emulated kernel), and each
    // retry starts it again from nothing: the operator's way out is a longer bound.
    this.options.logger.error(
      {
        probe: unit.name,
        pid: child.pid,
        attachTimeoutMs: unit.attachTimeoutMs,
        hint: 'where compiling the probes takes this long, raise --probe-attach-timeout',
      },
      'probe did not attach in time; killing it to retry',
    );
    await this.terminate(child);
    return true;
  }

  /**
   * bpftrace announces its probe count (stdout) before it attaches anything, and says when
   * every probe is attached: only then is the probe ready, and its counts whole. 0.17 says so
   * on stderr, later releases on stdout.
   */
  private attachTracker(unit: ProcessUnit, attachWatch: AbortController): AttachTracker {
    const tracker: AttachTracker = {
      attachedAt: undefined,
      announcedProbes: undefined,
      attached: () => {
        if (tracker.attachedAt !== undefined) return;
        tracker.attachedAt = this.now();
        attachWatch.abort();
        this.attached(unit, tracker.announcedProbes);
      },
    };
    return tracker;
  }

  private async readStdout(
    unit: ProcessUnit,
    child: ProbeProcess,
    attach: AttachTracker,
  ): Promise<void> {
    for await (const lines of child.stdoutBatches) {
      for (const line of lines) {
        if (line.trim() === '') continue; // bpftrace ends its output with blank lines
        if (line.trim() === ATTACHED_NOTICE) {
          noticeAttached(this.options.logger, unit.name, attach.attached);
          continue;
        }
        // One line's failure must not end the read: an exception escaping here would reject
        // the probe's run and, unhandled, end the agent. handle() never throws.
        const state = unit.route(line);
        const probes = this.lines.handle(state.lines, line);
        if (probes !== undefined) attach.announcedProbes = probes;
      }
    }
  }

  /** The process attached every probe: each probe it runs is ready. */
  private attached(unit: ProcessUnit, probes: number | undefined): void {
    const at = this.now();
    for (const member of unit.members) {
      member.ready = true;
      member.attachedAt = at;
      this.metrics.up.set({ probe: member.definition.name }, 1);
    }
    // Logging last: a logger that throws leaves every probe counted as attached.
    for (const member of unit.members) this.markAvailable(member);
    const pid = unit.members[0]?.child?.pid;
    this.options.logger.info(
      {
        probe: unit.name,
        pid,
        probes,
        ...(unit.processState === undefined
          ? {}
          : { members: unit.members.map((member) => member.definition.name) }),
      },
      'probe attached',
    );
    if (pid === undefined || this.options.onAttached === undefined) return;
    try {
      this.options.onAttached(pid, unit.name);
    } catch (error) {
      this.options.logger.error({ probe: unit.name, pid, err: error }, 'onAttached failed');
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
