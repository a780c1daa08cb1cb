import { readFileSync } from 'node:fs';

/**
 * Whether `pid` runs: its /proc entry exists and it is not a zombie. A killed child stays a
 * zombie until its parent reaps it, and `kill(pid, 0)` succeeds on a zombie.
 */
export function createIsRunning(procRoot: string): (pid: number) => boolean {
  return (pid) => {
    try {
      const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
      return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z';
    } catch {
      return false;
    }
  };
}
