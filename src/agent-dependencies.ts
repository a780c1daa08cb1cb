import type { Logger } from 'pino';
import type { KubernetesConnection } from './attribute/kubernetes/connection.js';
import type { CapabilityFiles, CommandRunner } from './detect/capabilities.js';
import type { HostFiles } from './diagnose/host-files.js';
import type { Clock } from './shared/clock.js';
import type { Timers } from './shared/timers.js';
import type { ReviewApi } from './sinks/metrics/metrics-auth.js';
import type { ProbeSpawner } from './sources/bpftrace/probe-process.js';

/** Everything the agent touches outside itself, so that every part can be replaced in tests. */
export interface AgentDependencies {
  readonly logger: Logger;
  readonly clock: Clock;
  /**
   * Time passing, for every part: waits between retries and rescans (the probes' and the
   * informers' restarts, the namespaces' discovery) and callbacks later or every so often (the
   * counters' poll, the node's refresh, log summaries).
   */
  readonly timers: Timers;
  /** The host's files as the diagnosis reads them (a container's through /proc). */
  readonly hostFiles: HostFiles;
  readonly spawn: ProbeSpawner;
  /** Prepended to each bpftrace command line (e.g. setpriv --pdeathsig). */
  readonly commandPrefix: readonly string[];
  readonly capabilityFiles: CapabilityFiles;
  readonly runCommand: CommandRunner;
  /**
   * The path of native/page-out.c's program, which pages bpftrace's compiler out once it has
   * attached (compiler-page-out.ts); rejects with the reason when there is none. Absent: never
   * paged out.
   */
  readonly pageOutProgram?: () => Promise<string>;
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
