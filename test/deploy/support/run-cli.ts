import { spawnSync } from 'node:child_process';
import { repoRoot } from './repo-paths.js';

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Which Debian package provides each command, for the failure message. */
const PROVIDERS: Record<string, string> = {
  kubectl: 'kubectl (>= 1.27, with `kubectl kustomize`)',
  yamllint: 'the Debian package yamllint',
  promtool: 'the Debian package prometheus (it ships promtool)',
  node: 'Node.js',
};

/**
 * Runs a command-line tool the deployment tests depend on. A missing tool is a failure, never
 * a skip: CI installs every one of them, so its absence means the environment is wrong.
 */
export function runCli(
  command: string,
  args: readonly string[],
  options: { cwd?: string; input?: string } = {},
): CliResult {
  const result = spawnSync(command, args, {
    cwd: options.cwd ?? repoRoot,
    input: options.input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error !== undefined) {
    const code = (result.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new Error(
        `${command} is not installed, and the deployment tests need it: install ${PROVIDERS[command] ?? command}`,
      );
    }
    throw result.error;
  }
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** Runs a tool and returns its stdout; throws with its output when it exits non-zero. */
export function runCliOk(command: string, args: readonly string[], options = {}): string {
  const result = runCli(command, args, options);
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status}\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result.stdout;
}
