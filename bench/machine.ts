import { cpus, release } from 'node:os';
import { execa } from 'execa';

export interface MachineFacts {
  readonly kernel: string;
  readonly cpuModel: string;
  readonly nproc: number;
  readonly node: string;
  readonly bpftrace: string;
}

export async function machineFacts(): Promise<MachineFacts> {
  return {
    kernel: release(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    nproc: Number((await execa('nproc')).stdout.trim()),
    node: process.version,
    bpftrace: (await execa('bpftrace', ['--version'])).stdout.trim(),
  };
}
