import { cpus, loadavg, release } from 'node:os';
import { execa } from 'execa';
import type { NewerBpftrace } from './newer-bpftrace.js';

export interface MachineFacts {
  readonly kernel: string;
  readonly cpuModel: string;
  readonly nproc: number;
  readonly node: string;
  /** The machine's bpftrace (`bpftrace --version`): the agent's unless a run says otherwise. */
  readonly bpftrace: string;
  /** Debian 13's, which the storm runs also use (bench/newer-bpftrace.ts). */
  readonly newerBpftrace: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  readonly loadAtStart: number;
}

export async function machineFacts(newer: NewerBpftrace): Promise<MachineFacts> {
  return {
    kernel: release(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    nproc: Number((await execa('nproc')).stdout.trim()),
    node: process.version,
    bpftrace: (await execa('bpftrace', ['--version'])).stdout.trim(),
    newerBpftrace: newer.version,
    loadAtStart: loadavg()[0] ?? Number.NaN,
  };
}
