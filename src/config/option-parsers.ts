import { type Command, CommanderError, InvalidArgumentError } from 'commander';

/** Commander argument parsers shared by the agent's options and the doctor's. */
export function positiveInteger(value: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < 1)
    throw new InvalidArgumentError('expected a positive integer');
  return number;
}

/** Seconds between 0.1 and `maxSeconds`, as milliseconds. */
export function secondsUpTo(maxSeconds: number): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!Number.isFinite(number) || number < 0.1 || number > maxSeconds) {
      throw new InvalidArgumentError(`expected seconds between 0.1 and ${maxSeconds}`);
    }
    return Math.round(number * 1000);
  };
}

/** Whole seconds from `minSeconds` to `maxSeconds`, as milliseconds. */
export function wholeSecondsBetween(
  minSeconds: number,
  maxSeconds: number,
): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^\d+$/.test(value) || number < minSeconds || number > maxSeconds) {
      throw new InvalidArgumentError(`expected whole seconds from ${minSeconds} to ${maxSeconds}`);
    }
    return number * 1000;
  };
}

/** What a command line parsed to, before its options are read. */
export type CommandLineOutcome =
  | { readonly kind: 'parsed' }
  | { readonly kind: 'exit'; readonly output: string }
  | { readonly kind: 'error'; readonly message: string };

/**
 * Parses `argv` with `command` without letting commander print or exit: `--help` and
 * `--version` come back as output to print, a bad argument as one message.
 */
export function parseCommandLine(command: Command, argv: readonly string[]): CommandLineOutcome {
  let output = '';
  command.exitOverride().configureOutput({
    writeOut: (text) => (output += text),
    writeErr: (text) => (output += text),
  });
  try {
    command.parse([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return { kind: 'exit', output };
      return { kind: 'error', message: error.message.replace(/^error: /, '') };
    }
    return { kind: 'error', message: String(error) };
  }
  return { kind: 'parsed' };
}
