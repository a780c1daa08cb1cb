import { join } from 'node:path';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { standaloneResolver } from './attribute/standalone-resolver.js';
import type { Clock } from './shared/clock.js';
import type { AgentOptions } from './config/options.js';
import type { AttributionResolver, ProbeEvent } from './events/types.js';
import {
  startMetricsServer,
  type MetricsServer,
  type Readiness,
} from './sinks/metrics/metrics-server.js';
import type { KubernetesConnection } from './attribute/kubernetes/connection.js';
import type { KubernetesCorrelation } from './attribute/kubernetes/kubernetes-correlation.js';
import { ConntrackCounters } from './sources/kernel-stats/conntrack-counters.js';
import { conntrackStatPathOf, netnsInodeOf } from './sources/kernel-stats/netns-inode.js';
import { TableFullDetector } from './sinks/cross-check/table-full-detector.js';
import { UnexplainedInsertFailures } from './sinks/cross-check/unexplained-insert-failures.js';
import { EventLog } from './sinks/log/event-log.js';
import { EventMetrics } from './sinks/metrics/event-metrics.js';
import { EventPipeline, type EventSink } from './event-pipeline.js';
import {
  BpftraceSupervisor,
  type ProbeDefinition,
} from './sources/bpftrace/bpftrace-supervisor.js';
import {
  detectCapabilities,
  type CapabilityFiles,
  type CommandRunner,
} from './detect/capabilities.js';
import { createLineDecoder } from './decode/decode.js';
import {
  createDropReasonTable,
  loadDropReasons,
  type DropReasonTable,
} from './detect/drop-reasons.js';
import { selectProbeMode, type ModeSelection } from './detect/mode-selection.js';
import { registerProbeModeGauge } from './detect/probe-mode-metric.js';
import { probeReadiness } from './sources/bpftrace/probe-readiness.js';
import type { ProbeSpawner } from './sources/bpftrace/probe-process.js';

/** Everything the agent touches outside itself, so that every part can be replaced in tests. */
export interface AgentDependencies {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly spawn: ProbeSpawner;
  /** Prepended to each bpftrace command line (e.g. setpriv --pdeathsig). */
  readonly commandPrefix: readonly string[];
  readonly capabilityFiles: CapabilityFiles;
  readonly runCommand: CommandRunner;
  readonly readText: (path: string) => Promise<string>;
  /** Root of procfs (`/proc`), where the conntrack counters and namespaces are read. */
  readonly procRoot: string;
  /** Directory of the packaged bpftrace scripts when --probes-dir is not given. */
  readonly defaultProbesDir: string;
  readonly kubernetes?: KubernetesConnection;
  readonly version: string;
  /** Events logged one per line in each 10 s window before the log switches to summaries. */
  readonly eventLogLinesPerWindow?: number;
}

export interface RunningAgent {
  readonly server: MetricsServer;
  readonly mode: ModeSelection;
  stop(): Promise<void>;
}

/** The agent cannot start as configured; the message says what is missing. */
export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
  readonly code = 'ERR_AGENT_START';
}

const EVENT_LOG_LINES_PER_WINDOW = 50;
// prom-client samples the event loop delay with a timer of this period (its default, 10 ms,
// wakes an idle agent 100 times a second: most of its idle CPU). A stall of the loop still
// shows in the lag histogram; only stalls shorter than a second may slip between samples.
const EVENT_LOOP_SAMPLE_MS = 1_000;
const EVENT_LOG_WINDOW_MS = 10_000;

export async function startAgent(
  options: AgentOptions,
  deps: AgentDependencies,
): Promise<RunningAgent> {
  const { logger, clock } = deps;
  const registry = new Registry();
  collectDefaultMetrics({
    register: registry,
    prefix: 'conntrack_observer_',
    eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
  });
  new Gauge({
    name: 'conntrack_observer_build_info',
    help: 'Always 1; the agent version as a label.',
    labelNames: ['version'],
    registers: [registry],
  }).set({ version: deps.version }, 1);

  const mode = await chooseMode(options, deps);
  registerProbeModeGauge(registry, mode.mode);
  logger.info(
    {
      mode: mode.mode,
      reason: mode.reason,
      unavailable: mode.unavailable,
      unobservable: mode.unobservable,
    },
    `probe mode ${mode.mode}: ${mode.reason}`,
  );

  const abort = new AbortController();
  const eventMetrics = new EventMetrics(registry);
  const eventLog = new EventLog({
    logger,
    maxLinesPerWindow: deps.eventLogLinesPerWindow ?? EVENT_LOG_LINES_PER_WINDOW,
    windowMs: EVENT_LOG_WINDOW_MS,
    nowMs: clock.nowMs,
  });

  let kubernetes: KubernetesCorrelation | undefined;
  if (deps.kubernetes) {
    if (!options.nodeName) {
      throw new AgentStartError(
        'a Kubernetes configuration was found but no node name: pass --node-name or set NODE_NAME (downward API spec.nodeName)',
      );
    }
    // Loaded only here: the Kubernetes client is most of a standalone agent's memory otherwise.
    const { startKubernetesCorrelation } =
      await import('./attribute/kubernetes/kubernetes-correlation.js');
    kubernetes = startKubernetesCorrelation({
      kubeConfig: deps.kubernetes.kubeConfig,
      nodeName: options.nodeName,
      registry,
      logger: logger.child({ component: 'kubernetes' }),
      clock,
      signal: abort.signal,
      forgetPod: (namespace, name) => eventMetrics.forgetPod(namespace, name),
    });
  }
  const resolver: AttributionResolver = kubernetes?.resolver ?? standaloneResolver;

  const sinks: EventSink[] = [
    { name: 'metrics', handle: (e) => eventMetrics.record(e, kubernetes !== undefined) },
    { name: 'log', handle: (e) => eventLog.record(e) },
  ];
  if (kubernetes) {
    const k8s = kubernetes;
    sinks.push({ name: 'kubernetes-events', handle: (e) => k8s.recordEvent(e) });
  }
  const pipeline = new EventPipeline({
    resolver: () => resolver,
    sinks,
    clock,
    registry,
    logger,
  });

  // The namespace whose counters are read: the node's. Insert failures the probes see there
  // are what the kernel's insert_failed must match; those of other namespaces are not.
  const watchedPid = options.netnsPid ?? 'self';
  const watchedInode = await netnsInodeOf(watchedPid, deps.procRoot);
  if (watchedInode === undefined) {
    throw new AgentStartError(
      `cannot read the network namespace of process ${watchedPid} (${deps.procRoot}/${watchedPid}/ns/net)`,
    );
  }
  const crossCheck =
    mode.probes.length > 0
      ? new UnexplainedInsertFailures({ registry, logger: logger.child({ component: 'kernel' }) })
      : undefined;
  const tableFull = new TableFullDetector();
  const counters = new ConntrackCounters({
    registry,
    logger: logger.child({ component: 'kernel' }),
    statPath: conntrackStatPathOf(watchedPid, deps.procRoot),
    intervalMs: options.pollIntervalMs,
    onReading: (reading) => {
      crossCheck?.observeKernel(reading);
      const full = tableFull.observe(reading);
      if (full) {
        logger.warn(full, 'conntrack table full: new flows are being dropped');
        kubernetes?.recordTableFull({ ...full, wallTimeMs: clock.nowMs() });
      }
    },
  });
  counters.start(abort.signal);

  const onEvent = (event: ProbeEvent): void => {
    if (event.kind === 'insert_failed' && event.netnsInode === watchedInode) {
      crossCheck?.recordObserved();
    }
    pipeline.handle(event);
  };

  let supervisor: BpftraceSupervisor | undefined;
  if (mode.probes.length > 0) {
    const dropReasons = await readDropReasons(options, deps);
    supervisor = new BpftraceSupervisor({
      probes: probeDefinitions(mode, dropReasons, options.probesDir ?? deps.defaultProbesDir),
      decoderFor: (probe) => createLineDecoder(probe.name, (code) => dropReasons.nameOf(code)),
      onEvent,
      spawn: deps.spawn,
      registry,
      logger: logger.child({ component: 'probes' }),
      bpftracePath: options.bpftrace,
      commandPrefix: deps.commandPrefix,
      unavailable: mode.unavailable,
    });
    supervisor.start(abort.signal);
  }

  const readiness = (): Readiness => {
    const waiting: string[] = [];
    const probes = probeReadiness(mode, supervisor);
    if (probes.waiting !== undefined) waiting.push(probes.waiting);
    if (kubernetes && !kubernetes.isSynced()) {
      waiting.push(`Kubernetes not synced: ${kubernetes.pendingResources().join(', ')}`);
    }
    return waiting.length > 0
      ? { ready: false, detail: waiting.join('; ') }
      : { ready: true, detail: probes.detail };
  };

  let server: MetricsServer;
  try {
    server = await startMetricsServer({ ...options.listen, registry, readiness });
  } catch (error) {
    abort.abort();
    await Promise.allSettled([supervisor?.stop(), kubernetes?.stop(), counters.stop()]);
    eventLog.flush();
    throw new AgentStartError(
      `cannot listen on ${options.listen.host}:${options.listen.port}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  logger.info({ address: server.address }, 'serving /metrics, /healthz and /readyz');

  let stopping: Promise<void> | undefined;
  return {
    server,
    mode,
    stop: () => {
      stopping ??= (async () => {
        abort.abort();
        await Promise.allSettled([supervisor?.stop(), kubernetes?.stop(), counters.stop()]);
        eventLog.flush();
        await server.close();
      })();
      return stopping;
    },
  };
}

async function chooseMode(options: AgentOptions, deps: AgentDependencies): Promise<ModeSelection> {
  const capabilities = await detectCapabilities({
    files: deps.capabilityFiles,
    run: deps.runCommand,
    bpftracePath: options.bpftrace,
  });
  const selected = selectProbeMode(options.probeMode, capabilities);
  if (!selected.ok) throw new AgentStartError(selected.error.message);
  return selected.selection;
}

/**
 * The drop-reason names of the running kernel. A kernel without them (before 5.17) gets an
 * empty table: a probe that needs a reason then refuses to start, naming it, and the others
 * still name what they see as UNKNOWN_<n> rather than lose it.
 */
async function readDropReasons(
  options: AgentOptions,
  deps: AgentDependencies,
): Promise<DropReasonTable> {
  const loaded = await loadDropReasons(
    join(options.tracefs, 'events/skb/kfree_skb/format'),
    deps.readText,
  );
  if (loaded.ok) return loaded.table;
  deps.logger.warn({ error: loaded.error }, 'no drop-reason names on this kernel');
  return createDropReasonTable([]);
}

function probeDefinitions(
  mode: ModeSelection,
  dropReasons: DropReasonTable,
  probesDir: string,
): ProbeDefinition[] {
  return mode.runs.map((run) => {
    let args: string[];
    try {
      args = run.variant.positionalArgs({ dropReasonCode: (name) => dropReasons.codeOf(name) });
    } catch (error) {
      throw new AgentStartError(`probe ${run.spec.name}: ${(error as Error).message}`);
    }
    return {
      name: run.spec.name,
      script: join(probesDir, run.variant.script),
      args,
      bpftraceOptions: run.bpftraceOptions,
      env: run.env,
      attachTimeoutMs: run.attachTimeoutMs,
    };
  });
}
