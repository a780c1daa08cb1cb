/**
 * Runs the built image as deploy/base/daemonset.yaml runs it (privileged, host network and PID,
 * the manifest's mounts, args and environment, read-only root) beside the lab, and checks it
 * from outside: /readyz, a SNAT race counted exactly, `doctor --reproduce` run in the running
 * container as `kubectl exec` runs it, a clean stop on SIGTERM, the versions inside. Prints a summary; exits 1 if any check failed. Started by `scripts/image.sh test`,
 * as root, under the host lock.
 *
 *   run-as-daemonset.ts --runtime chroot --rootfs DIR --image-config FILE [--min-insert-failures N] [--reproduce-seconds N]
 *   run-as-daemonset.ts --runtime podman --image NAME --image-config FILE [...]
 */
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { execa, type ResultPromise } from 'execa';
import { createLab, startSnatRaceLoop, type Lab } from '../lab/index.js';
import { parsePrometheusText, sumOf, type Sample } from '../support/prometheus-text.js';
import { readDaemonSetContainer, tmpfsSize, type DaemonSetContainer } from './daemonset-spec.js';
import { checkDoctorReproduce, type ExecTarget } from './doctor-reproduce-check.js';

const daemonSetPath = new URL('../../deploy/base/daemonset.yaml', import.meta.url).pathname;
const enterRootfs = new URL('./enter-rootfs.sh', import.meta.url).pathname;
/** The node name the downward API would give (spec.nodeName). */
const nodeName = 'image-test-node';
const readyTimeoutMs = 120_000;
const raceTimeoutMs = 180_000;
/** What `--name` gives the docker/podman container, for `exec`. */
const containerName = 'conntrack-race-observer-image-test';
/** Kubernetes' grace period is 15 s; the agent promises to be gone within 5. */
const stopBudgetMs = 5_000;

interface Options {
  runtime: 'chroot' | 'podman' | 'docker';
  rootfs?: string;
  image?: string;
  imageConfig: string;
  minInsertFailures: number;
  reproduceSeconds: number;
}

interface ImageConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
}

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

const checks: Check[] = [];
function check(name: string, ok: boolean, detail: string): void {
  checks.push({ name, ok, detail });
  console.log(`image-test: ${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
}

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1)
    throw new InvalidArgumentError('must be a positive integer');
  return parsed;
}

function parseOptions(argv: readonly string[]): Options {
  const options = new Command()
    .name('run-as-daemonset')
    .addOption(
      new Option('--runtime <kind>').choices(['chroot', 'podman', 'docker']).makeOptionMandatory(),
    )
    .option('--rootfs <dir>', "the image's root file system (chroot runtime)")
    .option('--image <name>', 'the image (podman runtime)')
    .requiredOption('--image-config <file>', "the image's OCI config (Entrypoint, Env, WorkingDir)")
    .option('--min-insert-failures <n>', 'race until this many', positiveInteger, 20)
    .option('--reproduce-seconds <n>', 'doctor --reproduce bound per scenario', positiveInteger, 20)
    .parse(argv)
    .opts<Options>();
  if (options.runtime === 'chroot' && options.rootfs === undefined)
    throw new Error('--runtime chroot needs --rootfs');
  if (options.runtime !== 'chroot' && options.image === undefined)
    throw new Error(`--runtime ${options.runtime} needs --image`);
  return options;
}

/** What a runtime cannot emulate here is an error, not a silent difference. */
function assertEmulable(spec: DaemonSetContainer): void {
  const missing = [
    spec.privileged ? undefined : 'privileged',
    spec.hostNetwork ? undefined : 'hostNetwork',
    spec.hostPID ? undefined : 'hostPID',
  ].filter((item) => item !== undefined);
  if (missing.length > 0)
    throw new Error(
      `the test runs a privileged host-network host-PID pod; manifest lacks ${missing.join(', ')}`,
    );
}

function containerEnv(spec: DaemonSetContainer, config: ImageConfig): string[] {
  const env = [...(config.Env ?? [])];
  for (const entry of spec.env) {
    if ('value' in entry) env.push(`${entry.name}=${entry.value}`);
    else if (entry.fieldPath === 'spec.nodeName') env.push(`${entry.name}=${nodeName}`);
    else throw new Error(`env ${entry.name}: fieldRef ${entry.fieldPath} is not emulated`);
  }
  return env;
}

function exists(path: string): boolean {
  try {
    readdirSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The command that starts the container. `emptyHostDir` stands in for a DirectoryOrCreate host
 * path missing on this machine (kubelet would create it on the node; this test leaves the host
 * as it found it).
 */
function launchCommand(
  options: Options,
  spec: DaemonSetContainer,
  config: ImageConfig,
  args: readonly string[],
  emptyHostDir: string,
): { file: string; args: string[]; substitutes: string[] } {
  const entrypoint = [...(config.Entrypoint ?? []), ...args];
  const env = containerEnv(spec, config);
  const substitutes: string[] = [];
  const hostPathOf = (path: string, type: string): string => {
    if (exists(path)) return path;
    if (type === 'DirectoryOrCreate') {
      substitutes.push(path);
      return emptyHostDir;
    }
    throw new Error(`hostPath ${path} (type ${type || 'unset'}) does not exist on this machine`);
  };
  if (options.runtime !== 'chroot') {
    const flags = ['--rm', '--name', containerName, '--privileged', '--network=host', '--pid=host'];
    if (spec.readOnlyRootFilesystem) flags.push('--read-only');
    for (const mount of spec.mounts) {
      if (mount.source.kind === 'hostPath') {
        const host = hostPathOf(mount.source.path, mount.source.type);
        flags.push('-v', `${host}:${mount.mountPath}:${mount.readOnly ? 'ro' : 'rw'},rbind`);
      } else {
        const size = mount.source.sizeLimit ? `,size=${tmpfsSize(mount.source.sizeLimit)}` : '';
        flags.push('--tmpfs', `${mount.mountPath}:rw${size}`);
      }
    }
    for (const entry of spec.env) {
      const value = env.find((e) => e.startsWith(`${entry.name}=`));
      if (value !== undefined) flags.push('--env', value);
    }
    return { file: options.runtime, args: ['run', ...flags, options.image!, ...args], substitutes };
  }
  const enterArgs = [options.rootfs!, config.WorkingDir || '/'];
  for (const mount of spec.mounts) {
    if (mount.source.kind === 'hostPath') {
      const host = hostPathOf(mount.source.path, mount.source.type);
      enterArgs.push('--bind', host, mount.mountPath, mount.readOnly ? 'ro' : 'rw');
    } else {
      enterArgs.push('--tmpfs', mount.mountPath, tmpfsSize(mount.source.sizeLimit ?? '64Mi'));
    }
  }
  if (!spec.readOnlyRootFilesystem)
    throw new Error('the chroot runtime always mounts the root read-only');
  for (const entry of env) enterArgs.push('--env', entry);
  return {
    file: 'unshare',
    args: [
      '--mount',
      '--propagation',
      'private',
      '--',
      'bash',
      enterRootfs,
      ...enterArgs,
      '--',
      ...entrypoint,
    ],
    substitutes,
  };
}

/**
 * `kubectl exec` into the running agent: its mount namespace, root and working directory (the
 * chroot runtime: nsenter into the agent's process), or the runtime's own exec.
 */
function execTarget(
  options: Options,
  spec: DaemonSetContainer,
  config: ImageConfig,
  agentPid: number,
): ExecTarget {
  const env = containerEnv(spec, config);
  return {
    entrypoint: config.Entrypoint ?? [],
    exec: (command) =>
      options.runtime === 'chroot'
        ? {
            file: 'nsenter',
            args: [
              `--target=${agentPid}`,
              '--mount',
              '--root',
              '--wd',
              '--',
              '/usr/bin/env',
              '-i',
              ...env,
              ...command,
            ],
          }
        : { file: options.runtime, args: ['exec', containerName, ...command] },
  };
}

async function inImage(options: Options, command: string[]): Promise<string> {
  const result =
    options.runtime !== 'chroot'
      ? await execa(options.runtime, [
          'run',
          '--rm',
          '--network=none',
          '--entrypoint',
          command[0]!,
          options.image!,
          ...command.slice(1),
        ])
      : await execa('chroot', [options.rootfs!, ...command]);
  return result.stdout.trim();
}

function listenPort(args: readonly string[]): number {
  const index = args.indexOf('--listen');
  const port = Number((index >= 0 ? args[index + 1] : '0.0.0.0:9474')?.split(':').pop());
  if (!Number.isInteger(port) || port < 1) throw new Error('cannot read the --listen port');
  return port;
}

async function scrape(baseUrl: string): Promise<Sample[]> {
  const response = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return parsePrometheusText(await response.text());
}

/** The agent's first JSON log record with this message, waited for up to `timeoutMs`. */
async function loggedRecord(
  log: () => string,
  msg: string,
  timeoutMs: number,
): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of log().split('\n')) {
      if (!line.includes(msg)) continue;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record['msg'] === msg) return record;
      } catch {
        // a line cut in two by a read, or not JSON: the next read has it whole
      }
    }
    if (Date.now() > deadline) return undefined;
    await sleep(200);
  }
}

async function readyzStatus(baseUrl: string): Promise<number | undefined> {
  try {
    const response = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(2_000) });
    await response.text();
    return response.status;
  } catch {
    return undefined;
  }
}

function mountNamespaceOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** Processes (with their command) whose mount namespace is `namespace`. */
function processesIn(namespace: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (mountNamespaceOf(Number(entry)) !== namespace) continue;
    try {
      found.push(`${entry} ${readFileSync(`/proc/${entry}/comm`, 'utf8').trim()}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

async function bpftraceProcesses(): Promise<string[]> {
  const { stdout } = await execa('pgrep', ['-a', '-x', 'bpftrace'], { reject: false });
  return stdout.split('\n').filter((line) => line !== '');
}

const insertFailures = (samples: readonly Sample[]): number =>
  sumOf(samples, 'conntrack_observer_insert_failures_total');
const exportedKernelInsertFailed = (samples: readonly Sample[]): number | undefined =>
  samples.find((s) => s.name === 'conntrack_observer_kernel_conntrack_insert_failed_total')?.value;

async function run(options: Options): Promise<void> {
  const spec = readDaemonSetContainer(daemonSetPath);
  assertEmulable(spec);
  const config = JSON.parse(readFileSync(options.imageConfig, 'utf8')) as ImageConfig;
  const workdir = mkdtempSync(join(tmpdir(), 'image-test-'));
  const testStarted = Date.now();
  let lab: Lab | undefined;
  let agent: ResultPromise | undefined;
  let agentLog = '';
  const teardown = async (): Promise<void> => {
    if (agent?.pid !== undefined && agent.exitCode === null) {
      agent.kill('SIGKILL');
      await agent.catch(() => undefined);
    }
    await lab?.destroy();
    rmSync(workdir, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    void teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const versions = {
      node: await inImage(options, ['node', '--version']),
      bpftrace: await inImage(options, ['bpftrace', '--version']),
      agent: await inImage(options, [...(config.Entrypoint ?? []), '--version']),
    };
    console.log(
      `image-test: inside the image: node ${versions.node}, ${versions.bpftrace}, agent ${versions.agent}`,
    );

    lab = await createLab();
    // The lab's "node" is a network namespace, not this machine's: the one argument the
    // DaemonSet does not need (with hostNetwork the agent's own namespace is the node's). Host
    // PID makes the lab's pid valid inside the container.
    const args = [...spec.args, '--netns-pid', String(lab.node.pid)];
    const launch = launchCommand(options, spec, config, args, mkdtempSync(join(workdir, 'empty-')));
    for (const path of launch.substitutes)
      console.log(
        `image-test: hostPath ${path} does not exist here: an empty directory stands in (DirectoryOrCreate)`,
      );
    const baseUrl = `http://127.0.0.1:${listenPort(args)}`;
    if ((await readyzStatus(baseUrl)) !== undefined)
      throw new Error(`something already answers on ${baseUrl}: stop it first`);

    const startedAt = Date.now();
    agent = execa(launch.file, launch.args, { all: true, reject: false, buffer: false });
    agent.all?.on('data', (chunk: Buffer) => {
      agentLog += chunk.toString();
    });
    let status: number | undefined;
    while ((status = await readyzStatus(baseUrl)) !== 200) {
      if (agent.exitCode !== null)
        throw new Error(`the agent exited (${agent.exitCode}) before ready:\n${agentLog}`);
      if (Date.now() - startedAt > readyTimeoutMs)
        throw new Error(
          `not ready within ${readyTimeoutMs / 1000} s (/readyz ${status ?? 'no answer'}):\n${agentLog}`,
        );
      await sleep(200);
    }
    const readyMs = Date.now() - startedAt;
    check('/readyz', true, `200 after ${(readyMs / 1000).toFixed(1)} s`);
    const containerNamespace = mountNamespaceOf(agent.pid!);

    // Once attached, bpftrace's compiler is paged out with the image's page-out program.
    const pagedOut = await loggedRecord(() => agentLog, "bpftrace's compiler paged out", 10_000);
    const fileBefore = Number(pagedOut?.['fileResidentBefore']);
    const fileAfter = Number(pagedOut?.['fileResidentAfter']);
    check(
      "bpftrace's compiler paged out",
      fileBefore - fileAfter > 30 * 1024 * 1024,
      pagedOut === undefined
        ? 'not logged within 10 s'
        : `bpftrace's file-backed resident memory ${(fileBefore / 1e6).toFixed(1)} MB before, ${(fileAfter / 1e6).toFixed(1)} MB after`,
    );

    const before = await scrape(baseUrl);
    const buildInfo = before.find((s) => s.name === 'conntrack_observer_build_info');
    check(
      'agent version',
      buildInfo?.labels['version'] === versions.agent,
      `build_info ${buildInfo?.labels['version'] ?? 'missing'}, --version ${versions.agent}`,
    );
    const kernelBefore = (await lab.nodeConntrackStats())['insert_failed'] ?? 0;
    const agentBefore = insertFailures(before);

    // Race until the kernel has dropped enough packets, within a bound: never a fixed count.
    let rounds = 0;
    const loop = await startSnatRaceLoop(lab, { intervalMs: 20, onRound: () => (rounds += 1) });
    const raceStarted = Date.now();
    let kernelNow = kernelBefore;
    while (kernelNow - kernelBefore < options.minInsertFailures) {
      if (Date.now() - raceStarted > raceTimeoutMs) {
        await loop.stop();
        throw new Error(
          `only ${kernelNow - kernelBefore} kernel insert failures after ${rounds} rounds in ${raceTimeoutMs / 1000} s (needed ${options.minInsertFailures})`,
        );
      }
      await sleep(500);
      kernelNow = (await lab.nodeConntrackStats())['insert_failed'] ?? 0;
    }
    const race = await loop.stop();
    const kernelAfter = (await lab.nodeConntrackStats())['insert_failed'] ?? 0;
    const kernelDelta = kernelAfter - kernelBefore;

    // The agent's export follows the kernel at its poll interval; its probe events arrive at once.
    let after = await scrape(baseUrl);
    const settleDeadline = Date.now() + 20_000;
    while (
      (exportedKernelInsertFailed(after) !== kernelAfter ||
        insertFailures(after) - agentBefore !== kernelDelta) &&
      Date.now() < settleDeadline
    ) {
      await sleep(500);
      after = await scrape(baseUrl);
    }
    const agentCounted = insertFailures(after) - agentBefore;
    const exported = exportedKernelInsertFailed(after);
    const unexplained = sumOf(after, 'conntrack_observer_unexplained_insert_failures_total');
    check(
      'race counted exactly',
      agentCounted === kernelDelta &&
        exported === kernelAfter &&
        unexplained === 0 &&
        kernelDelta >= options.minInsertFailures,
      `${race.rounds} rounds; agent insert_failures_total +${agentCounted}, kernel insert_failed +${kernelDelta} (conntrack -S in the node namespace), as the agent exports it ${exported ?? 'missing'} (of ${kernelAfter}), unexplained ${unexplained}`,
    );

    // The agent keeps running meanwhile, as it would on a node where an operator runs this.
    const doctor = await checkDoctorReproduce(
      execTarget(options, spec, config, agent.pid!),
      options.reproduceSeconds,
    );
    check('doctor --reproduce in the container', doctor.ok, doctor.detail);

    const stopStarted = Date.now();
    agent.kill('SIGTERM');
    const exit = await Promise.race([agent, sleep(stopBudgetMs + 5_000).then(() => undefined)]);
    const stopMs = Date.now() - stopStarted;
    const leftInContainer = containerNamespace
      ? processesIn(containerNamespace)
      : ['unknown: no mount namespace read'];
    const bpftraceLeft = await bpftraceProcesses();
    check(
      'SIGTERM',
      exit !== undefined &&
        exit.exitCode === 0 &&
        stopMs <= stopBudgetMs &&
        leftInContainer.length === 0 &&
        bpftraceLeft.length === 0,
      `exit ${exit?.exitCode ?? 'none'} after ${(stopMs / 1000).toFixed(1)} s (budget ${stopBudgetMs / 1000} s); left in the container: ${leftInContainer.join(', ') || 'nothing'}; bpftrace left: ${bpftraceLeft.join(', ') || 'none'}`,
    );
    console.log(
      JSON.stringify({
        event: 'image-test-summary',
        runtime: options.runtime,
        versions,
        readyMs,
        rounds: race.rounds,
        agentInsertFailures: agentCounted,
        kernelInsertFailed: kernelDelta,
        exportedKernelInsertFailed: exported,
        doctorReproduce: doctor.summary,
        stopMs,
        exitCode: exit?.exitCode,
        durationMs: Date.now() - testStarted,
        passed: checks.every((c) => c.ok),
      }),
    );
  } catch (error) {
    check('run', false, error instanceof Error ? error.message : String(error));
  } finally {
    await teardown();
  }
  if (!checks.every((c) => c.ok)) {
    if (agentLog !== '')
      console.log(`image-test: the agent's output:\n${agentLog.split('\n').slice(-40).join('\n')}`);
    process.exitCode = 1;
  }
}

run(parseOptions(process.argv)).catch((error: unknown) => {
  console.error(`image-test: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
