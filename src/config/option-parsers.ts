import { InvalidArgumentError } from 'commander';

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
