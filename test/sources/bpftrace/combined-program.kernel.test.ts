import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { execa } from 'execa';

import { combineScripts } from '../../../src/sources/bpftrace/combined-program.js';
import { COUNT_MAP_KEYS } from '../../../src/probes/catalogue.js';
import { modeScripts } from './combined-program.fixture.js';

// kprobes cannot attach here (CONFIG_KPROBES is off): the combined program of each mode is
// compiled to an ELF object without attaching (`--emit-elf`), which checks its syntax, that
// bpftrace accepts the merged END block and every probe of every script, and each struct field
// against this kernel's BTF. Every variant of the DNS probe is tried.
let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'combined-program-'));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('the combined program of each mode', () => {
  for (const mode of ['tracepoint', 'kprobe'] as const) {
    for (const variant of [0, 1, 2]) {
      it(`${mode} mode with variant ${variant} of each probe compiles with bpftrace --emit-elf`, async () => {
        const program = combineScripts(await modeScripts(mode, () => variant));
        const elf = join(workDir, `${mode}-${variant}.o`);
        const result = await execa('bpftrace', ['--emit-elf', elf, '-e', program], {
          reject: false,
          timeout: 120_000,
          env: { BPFTRACE_MAP_KEYS_MAX: String(COUNT_MAP_KEYS) },
        });
        expect({
          exitCode: result.exitCode,
          stderr: result.exitCode === 0 ? '' : result.stderr,
        }).toEqual({
          exitCode: 0,
          stderr: '',
        });
        expect((await readFile(elf)).subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
      });
    }
  }
});
