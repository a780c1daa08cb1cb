#!/usr/bin/env node
// The entry point: the only place that reads the command line and the environment, handles
// signals and exits the process. The machine's processes, files, clock and timers come from
// system-dependencies.ts; startAgent (agent.ts) builds and wires the agent's parts from them.
import { readFileSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { AgentStartError, startAgent, type RunningAgent } from './agent.js';
import { parseOptions, type AgentOptions } from './config/options.js';
import { SHUTDOWN_BUDGET } from './config/tuning.js';
import { mayHaveKubernetesConfig } from './attribute/kubernetes/connection-hint.js';
import type { KubernetesConnection } from './attribute/kubernetes/connection.js';
import { systemDependencies } from './system-dependencies.js';

const EXIT_CONFIG_ERROR = 2;
const EXIT_START_FAILED = 1;

const packageJson = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
) as { version: string };

async function main(): Promise<void> {
  if (process.argv[2] === 'doctor') {
    await doctor();
    return;
  }
  const parsed = parseOptions(process.argv.slice(2), process.env, packageJson.version);
  if (parsed.kind === 'exit') {
    process.stdout.write(parsed.output);
    return;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`conntrack-race-observer: ${parsed.message}\n`);
    process.exitCode = EXIT_CONFIG_ERROR;
    return;
  }
  const { options } = parsed;
  const logger = pino({ level: options.logLevel, base: { node: options.nodeName } });

  const kubernetes = await kubernetesConnection(options, logger);
  if (kubernetes === 'invalid') {
    process.exitCode = EXIT_CONFIG_ERROR;
    return;
  }
  if (options.metricsAuth === 'kubernetes' && !kubernetes) {
    process.stderr.write(
      "conntrack-race-observer: --metrics-auth kubernetes needs a Kubernetes configuration (--kubeconfig, KUBECONFIG or in-cluster): the API server reviews the scrapers' tokens\n",
    );
    process.exitCode = EXIT_CONFIG_ERROR;
    return;
  }
  const metricsReviewApi =
    options.metricsAuth === 'kubernetes' && kubernetes
      ? (await import('./sinks/metrics/kubernetes-review-api.js')).kubernetesReviewApi(
          kubernetes.kubeConfig,
        )
      : undefined;
  if (kubernetes) {
    logger.info(
      { source: kubernetes.source, origin: kubernetes.origin, server: kubernetes.server },
      'attributing events to pods through the Kubernetes API',
    );
  } else {
    logger.info('no Kubernetes configuration: running standalone, events attributed by IP');
  }

  let agent: RunningAgent;
  try {
    agent = await startAgent(options, {
      ...(await systemDependencies()),
      logger,
      kubernetes,
      metricsReviewApi,
      version: packageJson.version,
    });
  } catch (error) {
    if (!(error instanceof AgentStartError)) throw error;
    // startAgent stopped whatever it had started; exiting now also ends what a library may
    // still hold open (sockets of the Kubernetes client), so the pod restarts promptly.
    logger.fatal({ err: error }, error.message);
    process.exit(EXIT_START_FAILED);
  }

  stopOnSignals(agent, logger);
}

/** `doctor`: reads the node (and optionally races a lab) and prints what it found. */
async function doctor(): Promise<void> {
  if (await doctorInPrivateNetnsDir()) return;
  const { runDoctor } = await import('./diagnose/doctor/run-doctor.js');
  // SIGINT/SIGTERM stop a --reproduce race and let it remove its lab; a second one exits.
  const interrupt = new AbortController();
  const onSignal = (): void => {
    if (interrupt.signal.aborted) process.exit(130);
    interrupt.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    process.exitCode = await runDoctor(
      process.argv.slice(3),
      doctorIo,
      await doctorSystem(interrupt.signal),
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * `doctor --reproduce` where /run/netns cannot be written (the agent's read-only root, reached
 * with `kubectl exec`): runs the doctor again in a private mount namespace with a tmpfs there,
 * passes signals on and exits as it did. Resolves to false when no re-run is needed.
 */
async function doctorInPrivateNetnsDir(): Promise<boolean> {
  const { netnsDirWritable, privateNetnsCommand, PRIVATE_NETNS_ENV } =
    await import('./diagnose/reproduce/private-netns-dir.js');
  if (!process.argv.includes('--reproduce') || process.env[PRIVATE_NETNS_ENV] === '1') return false;
  if (netnsDirWritable()) return false;
  const { spawn } = await import('node:child_process');
  const { constants } = await import('node:os');
  const command = privateNetnsCommand([
    process.execPath,
    ...process.execArgv,
    ...process.argv.slice(1),
  ]);
  const child = spawn(command.file, command.args, {
    stdio: 'inherit',
    env: { ...process.env, [PRIVATE_NETNS_ENV]: '1' },
  });
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('error', (error) => {
      process.stderr.write(
        `conntrack-race-observer doctor: cannot start unshare for a private /run/netns: ${error.message}\n`,
      );
      resolve([3, null]);
    });
    child.once('exit', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
  });
  process.off('SIGINT', forward);
  process.off('SIGTERM', forward);
  process.exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
  return true;
}

/**
 * The Kubernetes connection, when anything could configure one; 'invalid' (logged) when a
 * setting is broken, which must be reported rather than fall back to standalone.
 */
async function kubernetesConnection(
  options: AgentOptions,
  logger: Logger,
): Promise<KubernetesConnection | 'invalid' | undefined> {
  // @kubernetes/client-node costs tens of MB of RSS once loaded: a standalone agent never
  // loads it. Anything that could configure Kubernetes (even a broken setting, which must be
  // reported) brings in the full resolution.
  const kubeconfigEnv = process.env.KUBECONFIG;
  if (!mayHaveKubernetesConfig({ kubeconfigFlag: options.kubeconfig, kubeconfigEnv })) {
    return undefined;
  }
  const { KubeConfigError, resolveKubernetesConnection } =
    await import('./attribute/kubernetes/connection.js');
  const resolved = resolveKubernetesConnection({
    kubeconfigFlag: options.kubeconfig,
    kubeconfigEnv,
    inCluster: {
      host: process.env.KUBERNETES_SERVICE_HOST,
      port: process.env.KUBERNETES_SERVICE_PORT,
    },
  });
  if (resolved instanceof KubeConfigError) {
    logger.fatal({ err: resolved }, `invalid Kubernetes configuration: ${resolved.message}`);
    return 'invalid';
  }
  return resolved;
}

/** SIGTERM and SIGINT stop the agent, then exit; a stop that hangs is cut off. */
function stopOnSignals(agent: RunningAgent, logger: Logger): void {
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    // Within the 5 s promised on SIGTERM, after the parts' own stop budgets.
    const deadline = setTimeout(() => {
      logger.error('could not stop in time; exiting anyway');
      process.exit(EXIT_START_FAILED);
    }, SHUTDOWN_BUDGET.exitDeadlineMs);
    deadline.unref();
    agent.stop().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        process.exit(EXIT_START_FAILED);
      },
    );
  };
  // `on`, not `once`: execa's child cleanup (signal-exit) re-raises a signal it finds no other
  // listener for, and re-installs its own listener after ours whenever every probe process has
  // ended (the one combined bpftrace restarting or falling back): a `once` listener, removed as
  // it runs, then left the agent killed by its own SIGTERM before it had stopped.
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

const doctorIo = {
  stdout: (text: string) => process.stdout.write(text),
  stderr: (text: string) => process.stderr.write(text),
};

async function doctorSystem(signal: AbortSignal) {
  const system = await systemDependencies();
  return {
    files: system.hostFiles,
    capabilityFiles: system.capabilityFiles,
    run: system.runCommand,
    clock: system.clock,
    procRoot: system.procRoot,
    reproduceLab: await reproduceDependencies(system.procRoot, signal),
    env: {
      NODE_NAME: process.env.NODE_NAME,
      KUBECONFIG: process.env.KUBECONFIG,
      KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST,
      KUBERNETES_SERVICE_PORT: process.env.KUBERNETES_SERVICE_PORT,
    },
  };
}

async function reproduceDependencies(procRoot: string, signal: AbortSignal) {
  const { randomBytes } = await import('node:crypto');
  const { homedir } = await import('node:os');
  const { join } = await import('node:path');
  const { setTimeout: sleep } = await import('node:timers/promises');
  const { createExecaLabRunner } = await import('./diagnose/reproduce/lab-runner.js');
  const { createIsRunning } = await import('./diagnose/reproduce/process-liveness.js');
  const { GENERATOR_SOURCE_DIR, INSTALLED_GENERATOR_DIR } =
    await import('./diagnose/reproduce/generators.js');
  const cacheHome = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return {
    run: createExecaLabRunner(),
    pid: process.pid,
    labId: () => randomBytes(3).toString('hex'),
    kill: (pid: number, killSignal: NodeJS.Signals) => process.kill(pid, killSignal),
    isAlive: createIsRunning(procRoot),
    sleep: (ms: number) => sleep(ms),
    nowMs: () => performance.now(),
    signal,
    generators: {
      installedDir: INSTALLED_GENERATOR_DIR,
      sourceDir: GENERATOR_SOURCE_DIR,
      cacheDir: join(cacheHome, 'conntrack-race-observer'),
    },
  };
}

main().catch((error: unknown) => {
  process.stderr.write(`conntrack-race-observer: unexpected error: ${String(error)}\n`);
  process.exit(EXIT_START_FAILED);
});
