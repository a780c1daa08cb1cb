import { statSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface RunOptions {
  /** Fail (throw) on a non-zero exit; default true. */
  readonly check?: boolean;
  readonly input?: string;
  readonly timeoutMs?: number;
}

/** Runs a command in the root namespace (used only for `ip` itself and the compilers). */
export async function run(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const result = await execa(command, args, {
    reject: false,
    input: options.input,
    timeout: options.timeoutMs ?? 60_000,
  });
  const exitCode = result.exitCode ?? -1;
  if ((options.check ?? true) && exitCode !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited with ${exitCode}: ${result.stderr || result.stdout}`,
    );
  }
  return { stdout: result.stdout, stderr: result.stderr, exitCode };
}

/** Runs a command inside a network namespace through `ip netns exec`. */
export function runIn(
  netns: string,
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  return run('ip', ['netns', 'exec', netns, command, ...args], options);
}

/**
 * Starts a long-lived command inside a namespace. `ip netns exec` execs the command, so the
 * child's pid is the command's own pid, inside the namespace.
 */
export function spawnIn(netns: string, command: string, args: readonly string[]): ResultPromise {
  return execa('ip', ['netns', 'exec', netns, command, ...args], {
    reject: false,
    stdin: 'ignore',
    buffer: false,
  });
}

/** Inode of a named network namespace: the number `readlink /proc/PID/ns/net` shows. */
export function netnsInode(netns: string): number {
  return statSync(`/run/netns/${netns}`).ino;
}

export async function listNetns(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.length > 0);
}

/** Pids of every process whose network namespace is NAME. */
export async function pidsIn(netns: string): Promise<number[]> {
  const { stdout } = await run('ip', ['netns', 'pids', netns], { check: false });
  return stdout
    .split('\n')
    .map((line) => Number.parseInt(line, 10))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}
