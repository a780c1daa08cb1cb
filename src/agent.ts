// The composition root of a running agent: builds the parts from the start plan (agent-plan.ts,
// agent-parts.ts) and starts them in order on one lifecycle stack. Behaviour lives in the parts.
import type { AgentDependencies } from './agent-dependencies.js';
import {
  eventPath,
  kernelCounters,
  metricsServer,
  partsInStartOrder,
  probeSupervisor,
} from './agent-parts.js';
import { AgentStartError, planStart } from './agent-plan.js';
import type { AgentOptions } from './config/options.js';
import type { ModeSelection } from './detect/mode-selection.js';
import { LifecycleStack } from './shared/lifecycle.js';
import type { MetricsServer } from './sinks/metrics/metrics-server.js';

export type { AgentDependencies } from './agent-dependencies.js';
export { AgentStartError } from './agent-plan.js';

export interface RunningAgent {
  readonly server: MetricsServer;
  readonly mode: ModeSelection;
  /** Stops every part, the probes first and the HTTP server last. */
  stop(): Promise<void>;
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
  const { logger } = deps;
  const plan = await planStart(options, deps);
  const { mode } = plan;
  logger.info(
    {
      mode: mode.mode,
      reason: mode.reason,
      unavailable: mode.unavailable,
      unobservable: mode.unobservable,
    },
    `probe mode ${mode.mode}: ${mode.reason}`,
  );
  const path = await eventPath(options, deps, plan);
  const counters = kernelCounters(options, deps, plan, path);
  const supervisor = probeSupervisor(options, deps, plan, path);
  const stack = new LifecycleStack();
  const { server, selfSigned } = await metricsServer(options, deps, plan, path, {
    waitingFor: () => stack.waitingFor(),
    supervisor,
  });
  try {
    await stack.push(server);
  } catch (error) {
    const { host, port } = options.listen;
    throw new AgentStartError(`cannot listen on ${host}:${port}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  for (const part of partsInStartOrder(counters, path, supervisor)) await stack.push(part);
  logger.info(
    {
      address: server.address,
      metricsAuth: options.metricsAuth,
      selfSignedCertificate: selfSigned,
    },
    'serving /metrics, /healthz and /readyz',
  );
  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    for (const { part, error } of await stack.stop()) {
      logger.error({ err: error, part }, 'a part failed to stop');
    }
    path.log.flush();
  };
  return { server, mode, stop: () => (stopping ??= stop()) };
}
