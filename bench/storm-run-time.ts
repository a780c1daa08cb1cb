import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { createLab, labAddresses, readSnmpCounter, type Lab } from '../test/lab/index.js';
import { ATTACHED_NOTICE, NOTIFY_ATTACHED_ENV } from '../src/sources/bpftrace/probe-stderr.js';
import { startLabAgent, type AgentProcess } from './agent-process.js';
import type { BenchPrograms } from './build-c.js';
import type { NewerBpftrace } from './newer-bpftrace.js';
import { commandOf } from './proc-usage.js';

/*
 * What the storm costs in the kernel, per packet, as the kernel itself accounts it: with
 * `kernel.bpf_stats_enabled` set, every BPF program's run count and total run time appear in
 * the fdinfo of its file descriptor (`run_cnt`, `run_time_ns`). The packet-rate figures of
 * section 4 say what the sender kept; these say where the time went, without the noise of a
 * shared machine's scheduling. The accounting itself adds two clock reads to every run, so it
 * is on only for these extra storm runs, never for the packet-rate ones.
 */

/** One BPF program's counters as its fdinfo shows them. */
export interface ProgramCounters {
  readonly id: number;
  readonly runs: number;
  readonly runTimeNs: number;
}

/** Counters of every BPF program the processes hold, each program once. */
export function readProgramCounters(pids: readonly number[]): ProgramCounters[] {
  const byId = new Map<number, ProgramCounters>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue; // the process is gone
    }
    for (const fd of fds) {
      let text: string;
      try {
        text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      } catch {
        continue;
      }
      const counters = parseProgramFdinfo(text);
      if (counters) byId.set(counters.id, counters);
    }
  }
  return [...byId.values()];
}

/** A program's counters from one fdinfo text; undefined for any other kind of descriptor. */
export function parseProgramFdinfo(text: string): ProgramCounters | undefined {
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(text);
    return match ? Number(match[1]) : undefined;
  };
  const id = field('prog_id');
  if (id === undefined) return undefined;
  return { id, runs: field('run_cnt') ?? 0, runTimeNs: field('run_time_ns') ?? 0 };
}

/** Runs and run time between two readings, of the programs present in both. */
export function counterGrowth(
  before: readonly ProgramCounters[],
  after: readonly ProgramCounters[],
): { runs: number; runTimeNs: number; busiest: { runs: number; runTimeNs: number } } {
  let runs = 0;
  let runTimeNs = 0;
  let busiest = { runs: 0, runTimeNs: 0 };
  for (const now of after) {
    const then = before.find((p) => p.id === now.id);
    if (then === undefined) continue;
    const grown = { runs: now.runs - then.runs, runTimeNs: now.runTimeNs - then.runTimeNs };
    runs += grown.runs;
    runTimeNs += grown.runTimeNs;
    if (grown.runs > busiest.runs) busiest = grown;
  }
  return { runs, runTimeNs, busiest };
}

/** `agent, <version>`: the agent on the newer bpftrace, labelled with its `--version`. */
export type StormProbe = 'empty program' | 'agent' | `agent, ${string}`;

export interface StormRunTime {
  readonly probe: StormProbe;
  /** Datagrams the upstream freed NO_SOCKET (its Udp NoPorts delta). */
  readonly dropped: number;
  /** Runs of the program that ran most: the one on `skb:kfree_skb`. */
  readonly runs: number;
  /** Its run time per run. */
  readonly nsPerRun: number;
  /** Run time of all the probe's programs (drop tracepoint, intervals) per dropped datagram. */
  readonly nsPerDropped: number;
}

const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

async function stormOnce(
  lab: Lab,
  programs: BenchPrograms,
  probe: StormProbe,
  pids: () => number[],
  seconds: number,
): Promise<StormRunTime> {
  const noPortsBefore = await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
  const before = readProgramCounters(pids());
  await lab.exec(lab.pods[0]!.netns, programs.path('udp-blast'), [
    labAddresses.silentDns,
    '53',
    String(seconds),
    '32',
  ]);
  const after = readProgramCounters(pids());
  const dropped = (await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts')) - noPortsBefore;
  const growth = counterGrowth(before, after);
  return {
    probe,
    dropped,
    runs: growth.busiest.runs,
    nsPerRun: growth.busiest.runs > 0 ? growth.busiest.runTimeNs / growth.busiest.runs : NaN,
    nsPerDropped: dropped > 0 ? growth.runTimeNs / dropped : NaN,
  };
}

async function startEmptyProgram(): Promise<{ pid: number; stop(): Promise<void> }> {
  const child = execa('bpftrace', ['-e', 'tracepoint:skb:kfree_skb {}'], {
    reject: false,
    stdin: 'ignore',
    buffer: false,
    env: NOTIFY_ATTACHED_ENV,
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the empty program did not attach')), 60_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes(ATTACHED_NOTICE)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void child.then(() => reject(new Error('the empty program exited before attaching')));
  });
  return {
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGINT');
      await child;
    },
  };
}

/**
 * The agent's bpftrace processes. The bundled newer bpftrace runs its loader through a link
 * named bpftrace (scripts/bundle-bpftrace.sh), so both are found by name.
 */
function bpftracesOf(agent: AgentProcess): () => number[] {
  return () => agent.children().filter((pid) => commandOf(pid) === 'bpftrace');
}

/**
 * `rounds` storms of `seconds` each with an empty program on the drop tracepoint, then as many
 * with the built agent (tracepoint mode), then as many with the agent on the newer bpftrace,
 * BPF run-time accounting on throughout and restored to its previous setting after.
 */
export async function measureStormRunTime(
  programs: BenchPrograms,
  newer: NewerBpftrace,
  rounds = 3,
  seconds = 2,
): Promise<StormRunTime[]> {
  const previous = readFileSync(STATS_SYSCTL, 'utf8').trim();
  const lab = await createLab();
  const results: StormRunTime[] = [];
  try {
    writeFileSync(STATS_SYSCTL, '1');
    const empty = await startEmptyProgram();
    try {
      for (let round = 0; round < rounds; round += 1) {
        results.push(await stormOnce(lab, programs, 'empty program', () => [empty.pid], seconds));
      }
    } finally {
      await empty.stop();
    }
    const agent = await startLabAgent(lab.node.pid);
    try {
      for (let round = 0; round < rounds; round += 1) {
        results.push(await stormOnce(lab, programs, 'agent', bpftracesOf(agent), seconds));
      }
    } finally {
      await agent.stop();
    }
    const onNewer = await startLabAgent(lab.node.pid, newer.path);
    try {
      const probe: StormProbe = `agent, ${newer.version}`;
      for (let round = 0; round < rounds; round += 1) {
        results.push(await stormOnce(lab, programs, probe, bpftracesOf(onNewer), seconds));
      }
    } finally {
      await onNewer.stop();
    }
  } finally {
    writeFileSync(STATS_SYSCTL, previous);
    await lab.destroy();
  }
  return results;
}
