import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { probeCatalogue, type ProbeVariant } from '../../src/probes/catalogue.js';

// kprobes cannot attach on the machines these tests run on (CONFIG_KPROBES is off), so each
// script is compiled to an ELF object without attaching: a real check of its syntax and of
// every struct field it reads against this kernel's BTF. Every variant of every probe in the
// catalogue is compiled, those of other kernels included (this kernel has every field and
// type they read).
const probesDir = fileURLToPath(new URL('../../probes/', import.meta.url));
const noKernelArguments = { dropReasonCode: () => undefined };

let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kprobe-scripts-'));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function compile(script: string, args: readonly string[]) {
  const elf = join(workDir, `${script.replaceAll('/', '_')}.o`);
  const result = await execa('bpftrace', ['--emit-elf', elf, script, ...args], {
    reject: false,
    timeout: 60_000,
  });
  const bytes = result.exitCode === 0 ? await readFile(elf) : undefined;
  return { result, bytes };
}

const variants = probeCatalogue.flatMap((probe) =>
  probe.variants.map((variant): [string, ProbeVariant] => [variant.script, variant]),
);
// Positional arguments only need to be numbers to compile.
const anyReasonCode = { dropReasonCode: () => 1 };

describe('probe scripts', () => {
  it('are each in the probe catalogue', async () => {
    const onDisk = (
      await Promise.all(
        ['kprobe', 'tracepoint'].map(async (dir) =>
          (await readdir(join(probesDir, dir)))
            .filter((file) => file.endsWith('.bt'))
            .map((file) => `${dir}/${file}`),
        ),
      )
    ).flat();
    expect(onDisk.sort()).toEqual(variants.map(([script]) => script).sort());
  });

  it('kprobe scripts need no kernel argument: their arguments are the same whatever the kernel', () => {
    for (const [script, variant] of variants) {
      if (script.startsWith('kprobe/'))
        expect(variant.positionalArgs(noKernelArguments)).toEqual(
          variant.positionalArgs(anyReasonCode),
        );
    }
  });

  it.each(variants)(
    '%s compiles with bpftrace --emit-elf on this kernel',
    async (script, variant) => {
      const { result, bytes } = await compile(
        join(probesDir, script),
        variant.positionalArgs(anyReasonCode),
      );
      expect(result.stderr).not.toMatch(/ERROR: (?!.*RLIMIT_MEMLOCK)/);
      expect(result.exitCode).toBe(0);
      expect(bytes?.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    },
  );

  it('a script reading a field the kernel does not have fails to compile', async () => {
    const source = await readFile(join(probesDir, 'kprobe/conntrack-confirm.bt'), 'utf8');
    const broken = join(workDir, 'broken.bt');
    await writeFile(broken, source.replace('$ct->status', '$ct->no_such_status'));
    const { result } = await compile(broken, []);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/does not contain a field named 'no_such_status'/);
  });
});
