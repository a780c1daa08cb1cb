import { cpus, loadavg, release } from 'node:os';
import { execa } from 'execa';

export interface MachineFacts {
  readonly kernel: string;
  readonly cpuModel: string;
  readonly nproc: number;
  readonly node: string;
  readonly bpftrace: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  readonly loadAtStart: number;
}

export async function machineFacts(): Promise<MachineFacts> {
  return {
    kernel: release(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    nproc: Number((await execa('nproc')).stdout.trim()),
    node: process.version,
    bpftrace: (await execa('bpftrace', ['--version'])).stdout.trim(),
    loadAtStart: loadavg()[0] ?? Number.NaN,
  };
}
