/**
 * Regenerates the kernel matrix table of docs/probe-matrix.md from the results of the last
 * matrix run, prints the per-kernel summary and exits 1 unless every expected proof passed.
 *
 *   npm run test:kernels:table -- [KERNEL...] [--out DIR] [--doc FILE] [--no-write]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { kernelById, kernels, type KernelSpec } from './catalogue.js';
import { loadMatrix, renderTable, replaceTable, summaryLines } from './matrix-report.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface TableOptions {
  readonly out: string;
  readonly doc: string;
  readonly write: boolean;
}

/** Prints the summary, rewrites the table when asked; true when every proof passed. */
export function reportMatrix(specs: readonly KernelSpec[], options: TableOptions): boolean {
  const report = loadMatrix(options.out, specs);
  process.stdout.write(`\nkernel matrix proof:\n`);
  for (const line of summaryLines(report)) process.stdout.write(`  ${line}\n`);
  if (options.write) {
    const table = renderTable(report, new Date().toISOString().slice(0, 10));
    writeFileSync(options.doc, replaceTable(readFileSync(options.doc, 'utf8'), table));
    process.stdout.write(`table written to ${options.doc}\n`);
  }
  process.stdout.write(`kernel matrix proof: ${report.passed ? 'PASS' : 'FAIL'}\n`);
  return report.passed;
}

export const defaultTableOptions = {
  out: join(repo, 'reports', 'kernels'),
  doc: join(repo, 'docs', 'probe-matrix.md'),
};

function main(argv: readonly string[]): number {
  const program = new Command()
    .name('test:kernels:table')
    .argument('[kernels...]', `kernels (${kernels.map((k) => k.id).join(', ')}; default: all)`)
    .option('--out <dir>', 'the matrix run’s output directory', defaultTableOptions.out)
    .option('--doc <file>', 'document holding the table', defaultTableOptions.doc)
    .option('--no-write', 'print the summary only')
    .exitOverride()
    .parse([...argv], { from: 'user' });
  const options = program.opts<TableOptions>();
  const specs = program.args.length === 0 ? kernels : program.args.map(kernelById);
  return reportMatrix(specs, options) ? 0 : 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
    } else {
      process.stderr.write(`test:kernels:table: ${(error as Error).message}\n`);
      process.exitCode = 2;
    }
  }
}
