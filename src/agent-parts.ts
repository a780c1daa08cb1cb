// The agent's parts, built from the start plan and the injected dependencies: the event path
// (sinks → pipeline), the kernel sources that feed it, and the HTTP server. Nothing is started
// here; startAgent (agent.ts) starts the parts in order.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { standaloneResolver } from './attribute/standalone-resolver.js';
import type { AgentDependencies } from './agent-dependencies.js';
import { securedMetrics, type StartPlan } from './agent-plan.js';
import type { AgentOptions } from './config/options.js';
import {
  CONNTRACK_TABLE,
  EVENT_LOG,
  EVENT_LOOP_SAMPLE_MS,
  SHUTDOWN_BUDGET,
} from './config/tuning.js';
import { createLineDecoder } from './decode/decode.js';
import { registerProbeModeGauge } from './detect/probe-mode-metric.js';
import { DiagnosisStage } from './diagnose/diagnosis-stage.js';
import { advised } from './diagnose/remedies.js';
import { EventPipeline, type EventSink } from './event-pipeline.js';
import { UnansweredCauses } from './events/unanswered-cause.js';
import { UnansweredBackends } from './attribute/unanswered-backends.js';
import { dnsFlowReader } from './sources/conntrack-table/dns-flows.js';
import type { AttributionResolver, ProbeEvent } from './events/types.js';
import type { KubernetesParts } from './kubernetes-parts.js';
import type { Lifecycle } from './shared/lifecycle.js';
import { TableFullAlarm } from './sinks/cross-check/table-full-alarm.js';
import { UnexplainedInsertFailures } from './sinks/cross-check/unexplained-insert-failures.js';
import { WatchedInsertFailures } from './sinks/cross-check/watched-insert-failures.js';
import { EventLog } from './sinks/log/event-log.js';
import { EventMetrics } from './sinks/metrics/event-metrics.js';
import { MetricsServer, type Readiness } from './sinks/metrics/metrics-server.js';
import { podStoryLookup } from './sinks/metrics/pod-story.js';
import { BpftraceSupervisor } from './sources/bpftrace/bpftrace-supervisor.js';
import { createCompilerPageOut } from './sources/bpftrace/compiler-page-out.js';
import { DNS_QUERY_TIMEOUT_SECONDS } from './probes/catalogue.js';
import { CountRecords } from './sources/bpftrace/count-records.js';
import { probeReadiness } from './sources/bpftrace/probe-readiness.js';
import { ConntrackCounters } from './sources/kernel-stats/conntrack-counters.js';
import { conntrackStatPathOf } from './sources/kernel-stats/netns-inode.js';

/**
 * A query is reported unanswered up to twice the probe's period plus a second after it was
 * sent, and the drop that lost it is read within a second: a drop this recent can explain it.
 */
const UNANSWERED_CAUSE_WINDOW_MS = (2 * DNS_QUERY_TIMEOUT_SECONDS + 3) * 1000;
/** Clients whose last drop is remembered; a storm from more keeps the most recent ones. */
const UNANSWERED_CAUSE_CLIENTS = 10_000;

/** The event path: where probe events go, and what the HTTP server reads back. */
export interface EventPath {
  readonly registry: Registry;
  readonly metrics: EventMetrics;
  readonly log: EventLog;
  readonly kubernetes?: KubernetesParts;
  readonly diagnosis: DiagnosisStage;
  /** Set when probes run: the kernel's insert_failed against what they reported. */
  readonly crossCheck?: UnexplainedInsertFailures;
  /** Each probe event, in order: linked to its cause, attributed, diagnosed, sunk. */
  readonly onEvent: (event: ProbeEvent) => void;
}

/** Builds every sink and the pipeline that feeds them. */
export async function eventPath(
  options: AgentOptions,
  deps: AgentDependencies,
  plan: StartPlan,
): Promise<EventPath> {
  const { logger, clock } = deps;
  const registry = agentRegistry(deps.version);
  registerProbeModeGauge(registry, plan.mode.mode);
  const metrics = new EventMetrics(registry, {
    nowMs: () => clock.nowMs(),
    countUnattributed: deps.kubernetes !== undefined,
  });
  const log = new EventLog({
    logger,
    maxLinesPerWindow: deps.eventLogLinesPerWindow ?? EVENT_LOG.linesPerWindow,
    windowMs: EVENT_LOG.windowMs,
    nowMs: clock.nowMs,
    timers: deps.timers,
  });
  // The informers tell the diagnosis of each pod they see, and the diagnosis reads the pods'
  // facts from them: the one is built before the other, so the first reaches it by this.
  const late: { diagnosis?: DiagnosisStage } = {};
  const kubernetes = await kubernetesOf(deps, plan, registry, metrics, late);
  const diagnosis = diagnosisStage(options, deps, plan, kubernetes);
  late.diagnosis = diagnosis;
  const crossCheck =
    plan.probes.length > 0
      ? new UnexplainedInsertFailures({
          registry,
          logger: logger.child({ component: 'kernel' }),
          nowMs: () => Number(clock.monotonicNs() / 1_000_000n),
        })
      : undefined;
  const sinks: EventSink[] = [metrics, log];
  if (kubernetes) sinks.push(kubernetes.events);
  if (crossCheck) {
    sinks.push(new WatchedInsertFailures({ watchedNetnsInode: plan.watchedInode, crossCheck }));
  }
  const resolver: AttributionResolver = kubernetes?.cluster.resolver ?? standaloneResolver;
  const pipeline = new EventPipeline({
    resolver: () => resolver,
    sinks,
    diagnose: (_event, attributed) => diagnosis.diagnose(attributed),
    clock,
    registry,
    logger,
  });
  const unansweredCauses = new UnansweredCauses({
    windowMs: UNANSWERED_CAUSE_WINDOW_MS,
    maxClients: UNANSWERED_CAUSE_CLIENTS,
  });
  const unansweredBackends = new UnansweredBackends({
    readFlows: dnsFlowReader({
      run: deps.runCommand,
      conntrackPath: CONNTRACK_TABLE.conntrackPath,
      commandPrefix: nodeNetnsPrefix(deps, plan),
      timeoutMs: CONNTRACK_TABLE.timeoutMs,
      maxOutputBytes: CONNTRACK_TABLE.maxOutputBytes,
    }),
    forward: (event) => pipeline.handle(event),
    logger: logger.child({ component: 'conntrack-table' }),
    registry,
    maxHeld: UNANSWERED_CAUSE_CLIENTS,
    minIntervalMs: DNS_QUERY_TIMEOUT_SECONDS * 1000,
    nowMs: () => Number(clock.monotonicNs() / 1_000_000n),
    timers: deps.timers,
  });
  const onEvent = (event: ProbeEvent): void =>
    unansweredBackends.handle(unansweredCauses.link(event, clock.nowMs()));
  return { registry, metrics, log, kubernetes, diagnosis, crossCheck, onEvent };
}

/** Loaded only with a Kubernetes configuration: the client is most of a standalone agent's memory. */
async function kubernetesOf(
  deps: AgentDependencies,
  plan: StartPlan,
  registry: Registry,
  metrics: EventMetrics,
  late: { readonly diagnosis?: DiagnosisStage },
): Promise<KubernetesParts | undefined> {
  if (!deps.kubernetes) return undefined;
  return (await import('./kubernetes-parts.js')).kubernetesParts({
    kubeConfig: deps.kubernetes.kubeConfig,
    nodeName: plan.nodeName ?? '',
    registry,
    logger: deps.logger.child({ component: 'kubernetes' }),
    clock: deps.clock,
    delay: deps.timers.delay,
    forgetPod: (namespace, name) => metrics.forgetPod(namespace, name),
    // Called once the informers run, after the diagnosis exists.
    onPodFacts: (facts) => late.diagnosis?.podSeen(facts),
    whenDiagnosed: (attributed) =>
      late.diagnosis
        ?.whenDiagnosed(attributed)
        ?.then((diagnosis) => advised(attributed, diagnosis)),
  });
}

function diagnosisStage(
  options: AgentOptions,
  deps: AgentDependencies,
  plan: StartPlan,
  kubernetes: KubernetesParts | undefined,
): DiagnosisStage {
  return new DiagnosisStage({
    files: deps.hostFiles,
    procRoot: deps.procRoot,
    netnsPid: plan.watchedPid,
    run: deps.runCommand,
    commandPrefix: nodeNetnsPrefix(deps, plan),
    clock: deps.clock,
    timers: deps.timers,
    logger: deps.logger.child({ component: 'diagnosis' }),
    nodeLocalDnsIps: options.nodeLocalDns,
    podFacts: kubernetes ? (uid) => kubernetes.podFacts.get(uid) : undefined,
    clusterDnsIps: kubernetes ? () => kubernetes.cluster.kubeDnsIps() : undefined,
    // Standalone, the pods are found as network namespaces; with Kubernetes, by the informer.
    discoverNamespaces: kubernetes ? undefined : { delay: deps.timers.delay },
  });
}

/**
 * iptables-save, nft and conntrack read the namespace they run in: the node's, entered with
 * nsenter when it is not ours (--netns-pid).
 */
function nodeNetnsPrefix(deps: AgentDependencies, plan: StartPlan): string[] {
  return plan.watchedPid === 'self'
    ? []
    : ['nsenter', `--net=${deps.procRoot}/${plan.watchedPid}/ns/net`];
}

/** The kernel's conntrack counters (feeding the cross-check and the table-full alarm). */
export function kernelCounters(
  options: AgentOptions,
  deps: AgentDependencies,
  plan: StartPlan,
  path: EventPath,
): ConntrackCounters {
  const tableFull = new TableFullAlarm({
    logger: deps.logger,
    events: path.kubernetes?.events,
    nowMs: deps.clock.nowMs,
  });
  return new ConntrackCounters({
    registry: path.registry,
    logger: deps.logger.child({ component: 'kernel' }),
    statPath: conntrackStatPathOf(plan.watchedPid, deps.procRoot),
    intervalMs: options.pollIntervalMs,
    timers: deps.timers,
    onReading: (reading) => {
      path.crossCheck?.observeKernel(reading);
      tableFull.observe(reading);
    },
  });
}

/** The probes, in one bpftrace process; undefined when the mode runs none. */
export function probeSupervisor(
  options: AgentOptions,
  deps: AgentDependencies,
  plan: StartPlan,
  path: EventPath,
): BpftraceSupervisor | undefined {
  if (plan.probes.length === 0) return undefined;
  const logger = deps.logger.child({ component: 'probes' });
  const counts = new CountRecords({
    dropReasons: plan.dropReasons,
    clock: deps.clock,
    onEvent: path.onEvent,
    shortfalls: path.metrics,
    logger,
  });
  const pageOutProgram = options.bpftracePageOut === 'on' ? deps.pageOutProgram : undefined;
  // Found, or built with gcc in a checkout, while bpftrace compiles, not once it has attached:
  // the agent is then ready with nothing of its own start-up still running. A failure is
  // reported when the page-out is due.
  pageOutProgram?.().catch(() => undefined);
  const pageOut =
    pageOutProgram !== undefined
      ? createCompilerPageOut({
          program: pageOutProgram,
          run: deps.runCommand,
          readText: deps.readText,
          procRoot: deps.procRoot,
          logger,
        })
      : undefined;
  return new BpftraceSupervisor({
    probes: plan.probes,
    onAttached: pageOut === undefined ? undefined : (pid, probe) => void pageOut(pid, probe),
    decoderFor: (probe) => createLineDecoder(probe.name, (code) => plan.dropReasons.nameOf(code)),
    onEvent: path.onEvent,
    onCounts: counts.handle,
    spawn: deps.spawn,
    registry: path.registry,
    logger,
    bpftracePath: options.bpftrace,
    commandPrefix: deps.commandPrefix,
    delay: deps.timers.delay,
    combine: true,
    // Every definition carries its bound already; this one is for processes made without one.
    attachTimeoutMs: options.probeAttachTimeoutMs,
    stopGraceMs: SHUTDOWN_BUDGET.probeStopGraceMs,
    unavailable: plan.mode.unavailable,
  });
}

/** /metrics, /healthz, /readyz and the pod story; ready once every part has started. */
export async function metricsServer(
  options: AgentOptions,
  deps: AgentDependencies,
  plan: StartPlan,
  path: EventPath,
  parts: { waitingFor: () => string[]; supervisor?: BpftraceSupervisor },
): Promise<{ server: MetricsServer; selfSigned?: boolean }> {
  const { logger } = deps;
  const { kubernetes } = path;
  const readiness = (): Readiness => {
    const waiting = parts.waitingFor();
    return waiting.length > 0
      ? { ready: false, detail: waiting.join('; ') }
      : { ready: true, detail: probeReadiness(plan.mode, parts.supervisor).detail };
  };
  const security = await securedMetrics(options, deps, plan.nodeName);
  const server = new MetricsServer({
    ...options.listen,
    registry: path.registry,
    readiness,
    ...security,
    podStory: podStoryLookup({
      nodeName: plan.nodeName ?? '',
      counts: (namespace, name) => path.metrics.podCounts(namespace, name),
      ...(kubernetes ? { uidOf: (ns, name) => kubernetes.podFacts.uidOf(ns, name) } : {}),
      diagnosisOf: (uid) => path.diagnosis.diagnosisOfPod(uid),
    }),
    // A refused token is the scraper's business; a review that failed is the operator's.
    onAuthRefused: (decision) =>
      'reason' in decision && / failed: /.test(decision.reason)
        ? logger.warn({ decision }, '/metrics refused: the API server could not review the token')
        : logger.debug({ decision }, '/metrics refused'),
  });
  return { server, selfSigned: security?.selfSigned };
}

/** The parts after the server, in start order: what a part feeds must already run. */
export function partsInStartOrder(
  counters: ConntrackCounters,
  path: EventPath,
  supervisor: BpftraceSupervisor | undefined,
): Lifecycle[] {
  const { kubernetes } = path;
  return [
    counters,
    path.diagnosis,
    // The informers last among the Kubernetes parts: what they feed must already run.
    ...(kubernetes ? [kubernetes.janitor, kubernetes.events, kubernetes.cluster] : []),
    ...(supervisor ? [supervisor] : []),
  ];
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
