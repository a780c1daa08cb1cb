import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * One full garbage collection, now. Meant for once after a burst of allocation that is not
 * coming back: the informers' first lists of a large cluster (5,000 Services, 10,000
 * EndpointSlices) leave about 90 MB of page garbage that V8, with no allocation pressure after
 * it, may keep for minutes (measured: 250 MB RSS 30 s after ready on a busy machine, 137 MB on a
 * quiet one or after a collection). `--expose-gc` set at run time makes `gc` reachable from a
 * new context without exposing it to the rest of the process; where that fails, nothing is lost
 * but the memory.
 */
export function collectGarbageOnce(): boolean {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    if (typeof gc !== 'function') return false;
    (gc as () => void)();
    return true;
  } catch {
    return false;
  }
}
