/**
 * The kernel matrix as CI runs it: builds the lab's generators here (compiling them inside
 * each emulated guest costs far more), boots each kernel and proves the agent in it
 * (prove-agent.ts) with the bpftrace the image ships (Debian 13's, bundled by
 * scripts/bundle-bpftrace.sh; the guests see it through the host's file system), then
 * regenerates the table of docs/probe-matrix.md and prints the per-kernel summary. Exit status
 * 1 when a guest failed or any proof check failed. The machine's own bpftrace (0.17) is proven
 * on the host's kernel by the kernel tests.
 *
 *   npm run test:kernels:ci -- [KERNEL...] [--timeout SECONDS]
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { execa } from 'execa';
import { generatorPath, type GeneratorName } from '../lab/index.js';
import { kernelById, kernels } from './catalogue.js';
import { newerBpftrace } from './newer-bpftrace.js';
import { defaultTableOptions, reportMatrix } from './matrix-table.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The generators prove-agent's scenarios run. */
const generators: readonly GeneratorName[] = ['snat-race', 'dnat-clash', 'dns-query'];

function log(line: string): void {
  process.stderr.write(`kernel-matrix-ci: ${line}\n`);
}

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1)
    throw new InvalidArgumentError('must be a positive integer');
  return parsed;
}

async function main(argv: readonly string[]): Promise<number> {
  const program = new Command()
    .name('test:kernels:ci')
    .argument('[kernels...]', `kernels (${kernels.map((k) => k.id).join(', ')}; default: all)`)
    // Boot (20-40 s), the lab, the agents' readiness bound (360 s: prove-agent.ts), the
    // scenarios (2-3 min) and the DNS query scenario: 450 s left too little when the agents
    // compiling DNS query tracking took minutes to attach.
    .option('--timeout <seconds>', 'kill a guest after this long', positiveInteger, 600)
    .exitOverride()
    .parse([...argv], { from: 'user' });
  const { timeout } = program.opts<{ timeout: number }>();
  const specs = program.args.length === 0 ? kernels : program.args.map(kernelById);
  const started = Date.now();

  for (const name of generators) await generatorPath(name);
  log(`generators built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const bpftrace = await newerBpftrace(log);
  log(`the agents run ${bpftrace}`);

  const matrix = await execa(
    process.execPath,
    [
      '--import',
      'tsx',
      'test/kernels/cli.ts',
      ...specs.map((spec) => spec.id),
      '--timeout',
      String(timeout),
      '--',
      'node',
      '--import',
      'tsx',
      'test/kernels/prove-agent.ts',
      '--bpftrace',
      bpftrace,
    ],
    { cwd: repo, stdio: 'inherit', reject: false },
  );
  const passed = reportMatrix(specs, { ...defaultTableOptions, write: true });
  log(
    `matrix ${matrix.exitCode === 0 && passed ? 'passed' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
  return matrix.exitCode === 0 && passed ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
      return;
    }
    log(error instanceof Error ? error.message : String(error));
    process.exitCode = 2;
  },
);
