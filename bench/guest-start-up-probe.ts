/*
 * Runs inside a kernel-matrix guest, as root (bench/guest-start-up.ts boots it): starts the built
 * agent standalone, as test/kernels/prove-agent.ts starts it but with no lab (`--probe-mode
 * MODE`, and `--bpftrace PATH` for the image's bpftrace), once per bpftrace (the machine's and
 * the image's, IMAGE_BPFTRACE: the host's path, which the guest sees on the shared root) and
 * probe mode the kernel's proof covers, ROUNDS rounds, one agent at a time; times each start to
 * `/readyz` 200, reads the phases from its JSON log, stops it with SIGTERM and checks that
 * nothing it started is left. Writes guest-start-up.json into KERNEL_MATRIX_RESULTS and exits 1
 * when a start or a check failed (the file names it).
 *
 *   node --import tsx bench/guest-start-up-probe.ts ROUNDS IMAGE_BPFTRACE IMAGE_BPFTRACE_VERSION
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { kernelById } from '../test/kernels/catalogue.js';
import { startBuiltAgent } from './agent-process.js';
import {
  GUEST_START_UP_FILE,
  startUpPhases,
  type GuestStartUp,
  type StartedMode,
  type StartUpRound,
} from './guest-start-up-result.js';

const say = (line: string) => process.stderr.write(`guest-start-up: ${line}\n`);

/** Bounded as the proof bounds it: a start under emulation takes 30–60 s. */
const READY_TIMEOUT_MS = 240_000;

async function main(): Promise<number> {
  const kernel = process.env['KERNEL_MATRIX_KERNEL'];
  const resultsDir = process.env['KERNEL_MATRIX_RESULTS'];
  if (kernel === undefined || resultsDir === undefined)
    throw new Error('KERNEL_MATRIX_KERNEL and KERNEL_MATRIX_RESULTS unset: run in a guest');
  const [roundsArg, imagePath, imageVersionOnHost] = process.argv.slice(2);
  const rounds = Number(roundsArg);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('ROUNDS: a positive integer');
  if (imagePath === undefined || imageVersionOnHost === undefined)
    throw new Error('no IMAGE_BPFTRACE and IMAGE_BPFTRACE_VERSION: the host resolves them');
  // Each version is read here, in the guest, from the executable the agent will run.
  const machineBpftrace = (await execa('bpftrace', ['--version'])).stdout.trim();
  const imageBpftrace = (await execa(imagePath, ['--version'])).stdout.trim();
  if (imageBpftrace !== imageVersionOnHost)
    throw new Error(
      `${imagePath} says ${imageBpftrace} in the guest but ${imageVersionOnHost} on the host`,
    );
  say(`bpftrace: the machine's ${machineBpftrace}, the image's ${imageBpftrace} (${imagePath})`);
  const bpftraces = [
    { version: machineBpftrace, args: [] },
    { version: imageBpftrace, args: ['--bpftrace', imagePath] },
  ];
  const { proof } = kernelById(kernel);
  const modes = [
    ...new Set([proof.autoMode, ...proof.explicitModes].filter((m) => m !== 'counters-only')),
  ] as StartedMode[];
  const measured: StartUpRound[] = [];
  const failures: string[] = [];
  // Every round starts each (mode, bpftrace) pair once, the two bpftraces taking turns within a
  // mode, so the cold first start of the guest (and of each bpftrace) does not weigh on one
  // pair's every round.
  for (let round = 1; round <= rounds; round++) {
    for (const [mode, bpftrace] of modes.flatMap((m) => bpftraces.map((b) => [m, b] as const))) {
      const what = `${bpftrace.version} ${mode} round ${round}`;
      const spawnedAt = Date.now();
      let agent;
      try {
        agent = await startBuiltAgent(bpftrace.args, {
          probeMode: mode,
          logLevel: 'info',
          keepLog: true,
          readyTimeoutMs: READY_TIMEOUT_MS,
        });
      } catch (error) {
        failures.push(`${what}: ${(error as Error).message.slice(0, 500)}`);
        say(`${what}: FAILED: ${(error as Error).message}`);
        continue;
      }
      const secondsToReady = (Date.now() - spawnedAt) / 1000;
      const exit = await agent.stop();
      const phases = startUpPhases(agent.log(), spawnedAt);
      const done: StartUpRound = {
        bpftrace: bpftrace.version,
        mode,
        round,
        secondsToReady,
        ...phases,
        exitCode: exit.exitCode ?? null,
        leftovers: exit.leftovers.length,
      };
      measured.push(done);
      say(`${what}: ${JSON.stringify(done)}`);
      if (phases.ranMode !== mode) failures.push(`${what}: ran in ${String(phases.ranMode)}`);
      if (exit.exitCode !== 0)
        failures.push(`${what}: exited ${String(exit.exitCode ?? exit.signal)} on SIGTERM`);
      if (exit.leftovers.length > 0)
        failures.push(`${what}: ${exit.leftovers.length} processes left after its exit (killed)`);
    }
  }
  const result: GuestStartUp = {
    kernel,
    release: release(),
    cpus: availableParallelism(),
    machineBpftrace,
    imageBpftrace,
    rounds: measured,
    failures,
  };
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, GUEST_START_UP_FILE), `${JSON.stringify(result, null, 2)}\n`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    say(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 2;
  },
);
