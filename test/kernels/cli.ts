/**
 * The kernel matrix: boots Debian's builds of the kernels users run under QEMU (software
 * emulation, no KVM needed), runs one command in each, in the repository, as root, and prints
 * a line per kernel.
 *
 *   npm run test:kernels -- [KERNEL...] [options] -- COMMAND [ARG...]
 *
 * KERNEL is one of 5.10, 6.1, 6.12 (default: all). Inside, the command finds the kernel id in
 * KERNEL_MATRIX_KERNEL and a directory whose files come back in KERNEL_MATRIX_RESULTS; its
 * output, exit status and results land in OUT/<kernel>/. Exit status: 0 when every command
 * exited 0.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { AptArchive } from './apt-archive.js';
import { kernelById, kernels, type Suite } from './catalogue.js';
import { runGuestOnceMoreIfLost, summaryLine, type GuestRunResult } from './guest-run.js';
import { ensureHostTools } from './host-tools.js';
import { unpackKernel } from './kernel-tree.js';
import { unpackVirtme } from './virtme.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface CliOptions {
  cacheDir: string;
  out: string;
  timeout: number;
  memory: string;
  cpus: number;
  bootConsole: boolean;
  refresh: boolean;
}

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1)
    throw new InvalidArgumentError('must be a positive integer');
  return parsed;
}

function log(line: string): void {
  process.stderr.write(`kernel-matrix: ${line}\n`);
}

async function main(argv: readonly string[]): Promise<number> {
  const split = argv.indexOf('--', 2);
  if (split < 0 || split === argv.length - 1) {
    throw new Error('no command: npm run test:kernels -- [KERNEL...] -- COMMAND [ARG...]');
  }
  const command = argv.slice(split + 1);
  const program = new Command()
    .name('test:kernels')
    .description('Boots each kernel under QEMU and runs COMMAND in the repository inside it.')
    .argument(
      '[kernels...]',
      `kernels to run (${kernels.map((k) => k.id).join(', ')}; default: all)`,
    )
    .option(
      '--cache-dir <dir>',
      'packages and unpacked kernels (env KERNEL_MATRIX_CACHE)',
      process.env['KERNEL_MATRIX_CACHE'] ?? '/var/cache/conntrack-race-observer/kernels',
    )
    .option(
      '--out <dir>',
      'logs and results, one directory per kernel',
      join(repo, 'reports', 'kernels'),
    )
    .option(
      '--timeout <seconds>',
      'kill a guest after this long (env KERNEL_MATRIX_TIMEOUT)',
      positiveInteger,
      Number(process.env['KERNEL_MATRIX_TIMEOUT'] ?? 1800),
    )
    .option('--memory <size>', 'guest memory', '2G')
    .option('--cpus <n>', 'guest CPUs', positiveInteger, 2)
    .option(
      '--boot-console',
      'copy the boot messages too (the console after boot is always copied)',
      false,
    )
    .option('--refresh', 'refresh the package lists even when less than a day old', false)
    .exitOverride()
    .parse(argv.slice(0, split), { from: 'node' });
  const options = program.opts<CliOptions>();
  if (!Number.isInteger(options.timeout) || options.timeout < 1)
    throw new Error('--timeout must be a positive integer');
  const specs = program.args.length === 0 ? kernels : program.args.map(kernelById);
  if (process.getuid?.() !== 0)
    throw new Error('must run as root (apt-get, QEMU, the guest runs as root)');

  const interrupted = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: killing the guest`);
    interrupted.abort();
    process.exitCode = signal === 'SIGINT' ? 130 : 143;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  await ensureHostTools(log);
  const archives = new Map<Suite, AptArchive>();
  const archive = async (suite: Suite): Promise<AptArchive> => {
    let found = archives.get(suite);
    if (found === undefined) {
      found = new AptArchive(options.cacheDir, suite, log);
      await found.refresh(options.refresh);
      archives.set(suite, found);
    }
    return found;
  };
  const virtme = await unpackVirtme(await archive('trixie'), options.cacheDir, log);
  const trees = [];
  for (const spec of specs)
    trees.push(await unpackKernel(spec, await archive(spec.suite), options.cacheDir, log));

  const results: GuestRunResult[] = [];
  for (const tree of trees) {
    if (interrupted.signal.aborted) break;
    log(`kernel ${tree.spec.id}: booting ${tree.release} (${tree.spec.runBy})`);
    const result = await runGuestOnceMoreIfLost(
      {
        tree,
        virtme,
        repo,
        command,
        outDir: join(options.out, tree.spec.id),
        timeoutMs: options.timeout * 1000,
        memory: options.memory,
        cpus: options.cpus,
        bootConsole: options.bootConsole,
        signal: interrupted.signal,
      },
      log,
    );
    results.push(result);
    log(summaryLine(result));
  }
  mkdirSync(options.out, { recursive: true });
  writeFileSync(join(options.out, 'summary.json'), `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\nkernel matrix (${command.join(' ')}):\n`);
  for (const result of results) process.stdout.write(`  ${summaryLine(result)}\n`);
  const allPassed =
    results.length === specs.length &&
    results.every((r) => r.outcome.kind === 'exited' && r.outcome.exitCode === 0);
  return allPassed ? 0 : 1;
}

main(process.argv).then(
  (code) => {
    process.exitCode ??= code;
  },
  (error: unknown) => {
    if (error instanceof Error && 'code' in error && String(error.code).startsWith('commander.')) {
      process.exitCode = (error as { exitCode?: number }).exitCode ?? 2;
      return;
    }
    log(error instanceof Error ? error.message : String(error));
    process.exitCode = 2;
  },
);
