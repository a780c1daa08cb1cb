import { join } from 'node:path';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { KubernetesConnection } from './attribute/kubernetes/connection.js';
import { standaloneResolver } from './attribute/standalone-resolver.js';
import type { AgentOptions } from './config/options.js';
import { EVENT_LOG, EVENT_LOOP_SAMPLE_MS, SHUTDOWN_BUDGET } from './config/tuning.js';
import { createLineDecoder } from './decode/decode.js';
import { UnansweredCauses } from './events/unanswered-cause.js';
import {
  detectCapabilities,
  type CapabilityFiles,
  type CommandRunner,
} from './detect/capabilities.js';
import {
  createDropReasonTable,
  loadDropReasons,
  type DropReasonTable,
} from './detect/drop-reasons.js';
import { selectProbeMode, type ModeSelection } from './detect/mode-selection.js';
import { registerProbeModeGauge } from './detect/probe-mode-metric.js';
import { EventPipeline, type EventSink } from './event-pipeline.js';
import type { AttributionResolver, ProbeEvent } from './events/types.js';
import type { Clock } from './shared/clock.js';
import { realDelay } from './shared/delay.js';
import { LifecycleStack } from './shared/lifecycle.js';
import {
  BpftraceSupervisor,
  type ProbeDefinition,
} from './sources/bpftrace/bpftrace-supervisor.js';
import { probeReadiness } from './sources/bpftrace/probe-readiness.js';
import type { ProbeSpawner } from './sources/bpftrace/probe-process.js';
import { ConntrackCounters } from './sources/kernel-stats/conntrack-counters.js';
import { conntrackStatPathOf, netnsInodeOf } from './sources/kernel-stats/netns-inode.js';
import { TableFullAlarm } from './sinks/cross-check/table-full-alarm.js';
import { WatchedInsertFailures } from './sinks/cross-check/watched-insert-failures.js';
import { CountRecords } from './sources/bpftrace/count-records.js';
import { UnexplainedInsertFailures } from './sinks/cross-check/unexplained-insert-failures.js';
import { EventLog } from './sinks/log/event-log.js';
import { DiagnosisStage } from './diagnose/diagnosis-stage.js';
import { createHostFiles } from './diagnose/host-files.js';
import { EventMetrics } from './sinks/metrics/event-metrics.js';
import type { ReviewApi } from './sinks/metrics/metrics-auth.js';
import { metricsSecurity, type MetricsSecurity } from './sinks/metrics/metrics-security.js';
import { MetricsServer, type Readiness } from './sinks/metrics/metrics-server.js';
import { podStoryLookup } from './sinks/metrics/pod-story.js';
import { DNS_QUERY_TIMEOUT_SECONDS } from './sources/bpftrace/catalogue.js';

/**
 * A query is reported unanswered up to twice the probe's period plus a second after it was
 * sent, and the drop that lost it is read within a second: a drop this recent can explain it.
 */
const UNANSWERED_CAUSE_WINDOW_MS = (2 * DNS_QUERY_TIMEOUT_SECONDS + 3) * 1000;
/** Clients whose last drop is remembered; a storm from more keeps the most recent ones. */
const UNANSWERED_CAUSE_CLIENTS = 10_000;

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
  /** The token and access reviews of `--metrics-auth kubernetes`. */
  readonly metricsReviewApi?: ReviewApi;
  readonly version: string;
  /** Events logged one per line in each window before the log switches to summaries. */
  readonly eventLogLinesPerWindow?: number;
}

export interface RunningAgent {
  readonly server: MetricsServer;
  readonly mode: ModeSelection;
  /** Stops every part, the probes first and the HTTP server last. */
  stop(): Promise<void>;
}

/** The agent cannot start as configured; the message says what is missing. */
export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
  readonly code = 'ERR_AGENT_START';
}

/** What start-up reads and checks before anything is started. */
interface StartPlan {
  readonly mode: ModeSelection;
  readonly probes: readonly ProbeDefinition[];
  readonly dropReasons: DropReasonTable;
  /** The process whose network namespace is the node's, and that namespace's inode. */
  readonly watchedPid: number | 'self';
  readonly watchedInode: number;
  readonly nodeName?: string;
}

/**
 * Checks everything that can be checked, then starts the parts one after the other: the HTTP
 * server (a taken port fails before anything runs), the kernel counters, the Kubernetes parts,
 * the probes. A part that fails to start stops the ones before it, so a failed start leaves
 * nothing running.
 */
export async function startAgent(
  options: AgentOptions,
  deps: AgentDependencies,
): Promise<RunningAgent> {
  const { logger, clock } = deps;
  const plan = await planStart(options, deps);
  logger.info(
    {
      mode: plan.mode.mode,
      reason: plan.mode.reason,
      unavailable: plan.mode.unavailable,
      unobservable: plan.mode.unobservable,
    },
    `probe mode ${plan.mode.mode}: ${plan.mode.reason}`,
  );

  const registry = agentRegistry(deps.version);
  registerProbeModeGauge(registry, plan.mode.mode);
  const eventMetrics = new EventMetrics(registry, {
    nowMs: () => clock.nowMs(),
    countUnattributed: deps.kubernetes !== undefined,
  });
  const eventLog = new EventLog({
    logger,
    maxLinesPerWindow: deps.eventLogLinesPerWindow ?? EVENT_LOG.linesPerWindow,
    windowMs: EVENT_LOG.windowMs,
    nowMs: clock.nowMs,
  });
  // Loaded only here: the Kubernetes client is most of a standalone agent's memory otherwise.
  const kubernetes = deps.kubernetes
    ? (await import('./kubernetes-parts.js')).kubernetesParts({
        kubeConfig: deps.kubernetes.kubeConfig,
        nodeName: plan.nodeName ?? '',
        registry,
        logger: logger.child({ component: 'kubernetes' }),
        clock,
        delay: realDelay,
        forgetPod: (namespace, name) => eventMetrics.forgetPod(namespace, name),
        // Called once the informers run, after `diagnosis` below exists.
        onPodFacts: (facts) => diagnosis.podSeen(facts),
        whenDiagnosed: (attributed) => diagnosis.whenDiagnosed(attributed),
      })
    : undefined;
  const resolver: AttributionResolver = kubernetes?.cluster.resolver ?? standaloneResolver;
  const kernelLogger = logger.child({ component: 'kernel' });
  const crossCheck =
    plan.probes.length > 0
      ? new UnexplainedInsertFailures({
          registry,
          logger: kernelLogger,
          nowMs: () => Number(clock.monotonicNs() / 1_000_000n),
        })
      : undefined;
  const sinks: EventSink[] = [eventMetrics, eventLog];
  if (kubernetes) sinks.push(kubernetes.events);
  if (crossCheck) {
    sinks.push(new WatchedInsertFailures({ watchedNetnsInode: plan.watchedInode, crossCheck }));
  }
  const diagnosis: DiagnosisStage = new DiagnosisStage({
    files: createHostFiles(),
    procRoot: deps.procRoot,
    netnsPid: plan.watchedPid,
    run: deps.runCommand,
    // iptables-save and nft read the namespace they run in: the node's, when it is not ours.
    commandPrefix:
      plan.watchedPid === 'self'
        ? []
        : ['nsenter', `--net=${deps.procRoot}/${plan.watchedPid}/ns/net`],
    clock,
    logger: logger.child({ component: 'diagnosis' }),
    nodeLocalDnsIps: options.nodeLocalDns,
    podFacts: kubernetes ? (uid) => kubernetes.podFacts.get(uid) : undefined,
    clusterDnsIps: kubernetes ? () => kubernetes.cluster.kubeDnsIps() : undefined,
    // Standalone, the pods are found as network namespaces; with Kubernetes, by the informer.
    discoverNamespaces: kubernetes ? undefined : { delay: realDelay },
  });
  const pipeline = new EventPipeline({
    resolver: () => resolver,
    sinks,
    diagnose: (_event, attributed) => diagnosis.diagnose(attributed),
    clock,
    registry,
    logger,
  });

  const tableFull = new TableFullAlarm({ logger, events: kubernetes?.events, nowMs: clock.nowMs });
  const counters = new ConntrackCounters({
    registry,
    logger: kernelLogger,
    statPath: conntrackStatPathOf(plan.watchedPid, deps.procRoot),
    intervalMs: options.pollIntervalMs,
    onReading: (reading) => {
      crossCheck?.observeKernel(reading);
      tableFull.observe(reading);
    },
  });
  const unansweredCauses = new UnansweredCauses({
    windowMs: UNANSWERED_CAUSE_WINDOW_MS,
    maxClients: UNANSWERED_CAUSE_CLIENTS,
  });
  const onEvent = (event: ProbeEvent): void =>
    pipeline.handle(unansweredCauses.link(event, clock.nowMs()));
  const counts = new CountRecords({
    dropReasons: plan.dropReasons,
    clock,
    onEvent,
    shortfalls: eventMetrics,
    logger: logger.child({ component: 'probes' }),
  });
  const supervisor =
    plan.probes.length > 0
      ? new BpftraceSupervisor({
          probes: plan.probes,
          decoderFor: (probe) =>
            createLineDecoder(probe.name, (code) => plan.dropReasons.nameOf(code)),
          onEvent,
          onCounts: counts.handle,
          spawn: deps.spawn,
          registry,
          logger: logger.child({ component: 'probes' }),
          bpftracePath: options.bpftrace,
          commandPrefix: deps.commandPrefix,
          combine: true,
          stopGraceMs: SHUTDOWN_BUDGET.probeStopGraceMs,
          unavailable: plan.mode.unavailable,
        })
      : undefined;

  const stack = new LifecycleStack();
  const readiness = (): Readiness => {
    const waiting = stack.waitingFor();
    return waiting.length > 0
      ? { ready: false, detail: waiting.join('; ') }
      : { ready: true, detail: probeReadiness(plan.mode, supervisor).detail };
  };
  const security = await securedMetrics(options, deps, plan.nodeName);
  const server = new MetricsServer({
    ...options.listen,
    registry,
    readiness,
    ...security,
    podStory: podStoryLookup({
      nodeName: plan.nodeName ?? '',
      counts: (namespace, name) => eventMetrics.podCounts(namespace, name),
      ...(kubernetes ? { uidOf: (ns, name) => kubernetes.podFacts.uidOf(ns, name) } : {}),
      diagnosisOf: (uid) => diagnosis.diagnosisOfPod(uid),
    }),
    // A refused token is the scraper's business; a review that failed is the operator's.
    onAuthRefused: (decision) =>
      'reason' in decision && / failed: /.test(decision.reason)
        ? logger.warn({ decision }, '/metrics refused: the API server could not review the token')
        : logger.debug({ decision }, '/metrics refused'),
  });
  try {
    await stack.push(server);
  } catch (error) {
    throw new AgentStartError(
      `cannot listen on ${options.listen.host}:${options.listen.port}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  await stack.push(counters);
  await stack.push(diagnosis);
  if (kubernetes) {
    // The informers last: what they feed must already run.
    await stack.push(kubernetes.janitor);
    await stack.push(kubernetes.events);
    await stack.push(kubernetes.cluster);
  }
  if (supervisor) await stack.push(supervisor);
  logger.info(
    {
      address: server.address,
      metricsAuth: options.metricsAuth,
      selfSignedCertificate: security?.selfSigned,
    },
    'serving /metrics, /healthz and /readyz',
  );

  let stopping: Promise<void> | undefined;
  return {
    server,
    mode: plan.mode,
    stop: () =>
      (stopping ??= (async () => {
        for (const { part, error } of await stack.stop()) {
          logger.error({ err: error, part }, 'a part failed to stop');
        }
        eventLog.flush();
      })()),
  };
}

/** Reads the kernel's capabilities and checks every option before anything runs. */
async function planStart(options: AgentOptions, deps: AgentDependencies): Promise<StartPlan> {
  if (deps.kubernetes && !options.nodeName) {
    throw new AgentStartError(
      'a Kubernetes configuration was found but no node name: pass --node-name or set NODE_NAME (downward API spec.nodeName)',
    );
  }
  const watchedPid = options.netnsPid ?? 'self';
  const watchedInode = await netnsInodeOf(watchedPid, deps.procRoot);
  if (watchedInode === undefined) {
    throw new AgentStartError(
      `cannot read the network namespace of process ${watchedPid} (${deps.procRoot}/${watchedPid}/ns/net)`,
    );
  }
  const capabilities = await detectCapabilities({
    files: deps.capabilityFiles,
    run: deps.runCommand,
    bpftracePath: options.bpftrace,
  });
  const selected = selectProbeMode(options.probeMode, capabilities);
  if (!selected.ok) throw new AgentStartError(selected.error.message);
  const mode = selected.selection;
  const dropReasons =
    mode.probes.length > 0 ? await readDropReasons(options, deps) : createDropReasonTable([]);
  return {
    mode,
    probes: await probeDefinitions(
      mode,
      dropReasons,
      options.probesDir ?? deps.defaultProbesDir,
      deps.readText,
    ),
    dropReasons,
    watchedPid,
    watchedInode,
    nodeName: options.nodeName,
  };
}

/** TLS and the token check of `--metrics-auth kubernetes`; undefined for plain HTTP. */
async function securedMetrics(
  options: AgentOptions,
  deps: AgentDependencies,
  nodeName: string | undefined,
): Promise<MetricsSecurity | undefined> {
  if (options.metricsAuth !== 'kubernetes') return undefined;
  if (!deps.metricsReviewApi) {
    throw new AgentStartError('--metrics-auth kubernetes needs a Kubernetes configuration');
  }
  try {
    return await metricsSecurity({
      tlsCertFile: options.tlsCertFile,
      tlsPrivateKeyFile: options.tlsPrivateKeyFile,
      readText: deps.readText,
      reviewApi: deps.metricsReviewApi,
      nowMs: () => deps.clock.nowMs(),
      dnsNames: nodeName ? [nodeName] : undefined,
    });
  } catch (error) {
    throw new AgentStartError((error as Error).message, { cause: error });
  }
}

function agentRegistry(version: string): Registry {
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
  }).set({ version }, 1);
  return registry;
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

/**
 * The probes to run, each with its script's text and what it prints, so that the supervisor
 * can run them all in one bpftrace process. A script that cannot be read runs on its own (and
 * bpftrace says what is wrong with it).
 */
async function probeDefinitions(
  mode: ModeSelection,
  dropReasons: DropReasonTable,
  probesDir: string,
  readText: (path: string) => Promise<string>,
): Promise<ProbeDefinition[]> {
  return Promise.all(
    mode.runs.map(async (run) => {
      let args: string[];
      try {
        args = run.variant.positionalArgs({ dropReasonCode: (name) => dropReasons.codeOf(name) });
      } catch (error) {
        throw new AgentStartError(`probe ${run.spec.name}: ${(error as Error).message}`);
      }
      const script = join(probesDir, run.variant.script);
      const source = await readText(script).catch(() => undefined);
      return {
        name: run.spec.name,
        script,
        args,
        bpftraceOptions: run.bpftraceOptions,
        env: { ...run.env, ...run.variant.env },
        attachTimeoutMs: run.attachTimeoutMs,
        ...(source === undefined
          ? {}
          : {
              combinable: {
                source,
                records: run.spec.emits,
                maps: run.spec.maps ?? [],
              },
            }),
      };
    }),
  );
}
