import { readdir, readFile } from 'node:fs/promises';

/*
 * The storm's sender runs on one CPU, and so does the softirq work its datagrams cause
 * (forwarding, the drop, any probe on it): in the sender's own context, or in that CPU's
 * ksoftirqd thread when the kernel defers it. Other work on the machine that lands on that CPU,
 * and time the host steals from it (a virtual machine), take time from the sender without any
 * probe being involved. The scheduler accounts each thread's run time in nanoseconds
 * (/proc/PID/schedstat, first figure; time stolen by the host is not in it), so the share of its
 * CPU the sender's work had over a send is (sender thread + that CPU's ksoftirqd run time) /
 * send duration: near 100 %, a change of rate between runs is the CPU's own speed.
 */

/** The run time in seconds from /proc/PID/schedstat's text; throws on anything else. */
export function runSecondsOf(schedstat: string): number {
  const first = schedstat.trim().split(/\s+/)[0];
  if (first === undefined || !/^\d+$/.test(first)) {
    throw new Error(`not a schedstat line: ${JSON.stringify(schedstat.slice(0, 80))}`);
  }
  return Number(first) / 1e9;
}

/** The pid of the ksoftirqd thread of one CPU. */
export async function softirqThreadOf(cpu: number): Promise<number> {
  const wanted = `ksoftirqd/${cpu}`;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const comm = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === wanted) return Number(entry);
  }
  throw new Error(`no ${wanted} thread in /proc`);
}

/** Starts timing a thread (ksoftirqd: softirqThreadOf); the function gives its run seconds so far. */
export async function watchRunTime(pid: number): Promise<() => Promise<number>> {
  const read = async () => runSecondsOf(await readFile(`/proc/${pid}/schedstat`, 'utf8'));
  const before = await read();
  return async () => (await read()) - before;
}
