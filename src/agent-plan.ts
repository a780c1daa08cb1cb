// What start-up reads and checks before anything runs: the kernel's capabilities, the probe
// mode, the drop-reason names and the probes' scripts. A failed check is an AgentStartError
// that names what is missing.
import { join } from 'node:path';
import type { AgentOptions } from './config/options.js';
import { defaultCapabilityPaths, detectCapabilities } from './detect/capabilities.js';
import {
  createDropReasonTable,
  type DropReasonResult,
  type DropReasonTable,
} from './detect/drop-reasons.js';
import { selectProbeMode, type ModeSelection } from './detect/mode-selection.js';
import type { ProbeDefinition } from './sources/bpftrace/bpftrace-supervisor.js';
import { netnsInodeOf } from './sources/kernel-stats/netns-inode.js';
import { metricsSecurity, type MetricsSecurity } from './sinks/metrics/metrics-security.js';
import type { AgentDependencies } from './agent-dependencies.js';

/** The agent cannot start as configured; the message says what is missing. */
export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
  readonly code = 'ERR_AGENT_START';
}

/** What start-up reads and checks before anything is started. */
export interface StartPlan {
  readonly mode: ModeSelection;
  readonly probes: readonly ProbeDefinition[];
  readonly dropReasons: DropReasonTable;
  /** The process whose network namespace is the node's, and that namespace's inode. */
  readonly watchedPid: number | 'self';
  readonly watchedInode: number;
  readonly nodeName?: string;
}

/** Reads the kernel's capabilities and checks every option before anything runs. */
export async function planStart(
  options: AgentOptions,
  deps: AgentDependencies,
): Promise<StartPlan> {
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
    paths: { ...defaultCapabilityPaths, tracefsRoots: tracefsRootsOf(options.tracefs) },
  });
  const selected = selectProbeMode(options.probeMode, capabilities);
  if (!selected.ok) throw new AgentStartError(selected.error.message);
  const mode = withoutQueryTracking(selected.selection, options.dnsQueryTracking);
  const dropReasons =
    mode.probes.length > 0
      ? dropReasonTable(capabilities.tracefs.dropReasons, deps)
      : createDropReasonTable([]);
  return {
    mode,
    probes: await probeDefinitions(
      mode,
      dropReasons,
      {
        probesDir: options.probesDir ?? deps.defaultProbesDir,
        attachTimeoutMs: options.probeAttachTimeoutMs,
      },
      deps.readText,
    ),
    dropReasons,
    watchedPid,
    watchedInode,
    nodeName: options.nodeName,
  };
}

/**
 * Where the kfree_skb format is read, once, for the probe mode and the drop-reason names: the
 * --tracefs given, alone; by default the usual mount point, then the older one under debugfs.
 */
function tracefsRootsOf(given: string): readonly string[] {
  const [usual] = defaultCapabilityPaths.tracefsRoots;
  return given === usual ? defaultCapabilityPaths.tracefsRoots : [given];
}

/** TLS and the token check of `--metrics-auth kubernetes`; undefined for plain HTTP. */
export async function securedMetrics(
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

/**
 * The drop-reason names of the running kernel. A kernel without them (before 5.17) gets an
 * empty table: a probe that needs a reason then refuses to start, naming it, and the others
 * still name what they see as UNKNOWN_<n> rather than lose it.
 */
function dropReasonTable(loaded: DropReasonResult, deps: AgentDependencies): DropReasonTable {
  if (loaded.ok) return loaded.table;
  deps.logger.warn({ error: loaded.error }, 'no drop-reason names on this kernel');
  return createDropReasonTable([]);
}

/**
 * The probes to run, each with its script's text and what it prints, so that the supervisor
 * can run them all in one bpftrace process. A script that cannot be read runs on its own (and
 * bpftrace says what is wrong with it). Each may take `attachTimeoutMs` to attach
 * (--probe-attach-timeout), or its own bound when that is longer (compiling kernel headers).
 */
export async function probeDefinitions(
  mode: ModeSelection,
  dropReasons: DropReasonTable,
  where: { readonly probesDir: string; readonly attachTimeoutMs: number },
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
      const script = join(where.probesDir, run.variant.script);
      const source = await readText(script).catch(() => undefined);
      return {
        name: run.spec.name,
        script,
        args,
        bpftraceOptions: run.bpftraceOptions,
        env: { ...run.env, ...run.variant.env },
        attachTimeoutMs: Math.max(run.attachTimeoutMs ?? 0, where.attachTimeoutMs),
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

/** The query-tracking probe of the catalogue, run only with `--dns-query-tracking on`. */
const QUERY_TRACKING_PROBE = 'tracepoint/dns-queries';

/**
 * The mode without DNS query tracking unless it was asked for: it runs on every packet every
 * device sends or receives, which a busy node pays for in packet rate (docs/benchmarks.md).
 */
function withoutQueryTracking(mode: ModeSelection, tracking: 'on' | 'off'): ModeSelection {
  if (tracking === 'on' || !mode.probes.includes(QUERY_TRACKING_PROBE)) return mode;
  return {
    ...mode,
    probes: mode.probes.filter((name) => name !== QUERY_TRACKING_PROBE),
    runs: mode.runs.filter((run) => run.spec.name !== QUERY_TRACKING_PROBE),
    unobservable: [
      ...mode.unobservable,
      'DNS queries left unanswered: off (--dns-query-tracking on tracks them)',
    ],
  };
}
