import { readFile } from 'node:fs/promises';
import { bpftraceInfoFlag, parseBpftraceInfo } from '../../src/detect/bpftrace-info.js';
import {
  bpftraceErrorText,
  type CommandRunner,
  detectCapabilities,
  type KernelCapabilities,
  testAttachProgram,
} from '../../src/detect/capabilities.js';
import { createFileSystemCapabilityFiles } from '../../src/detect/capability-sources.js';
import { parseKernelRelease } from '../../src/detect/kernel-release.js';
import {
  capabilityFixtureDir,
  fixturePaths,
  fixtureSources,
} from '../fixtures/capabilities/load.js';

async function detectFixture(name: string): Promise<KernelCapabilities> {
  const sources = await fixtureSources(name);
  return detectCapabilities({ ...sources, bpftracePath: 'bpftrace' });
}

describe('parseKernelRelease', () => {
  it.each([
    ['6.18.44-fc-v669', { major: 6, minor: 18, patch: 44 }],
    ['5.15.0-91-generic', { major: 5, minor: 15, patch: 0 }],
    ['4.19.0-26-amd64\n', { major: 4, minor: 19, patch: 0 }],
    ['5.10.209-198.858.amzn2.x86_64', { major: 5, minor: 10, patch: 209 }],
    ['6.1', { major: 6, minor: 1, patch: 0 }],
  ])('reads %j as its version', (release, version) => {
    expect(parseKernelRelease(release)).toEqual(version);
  });

  it('gives undefined for text that is not a release', () => {
    expect(parseKernelRelease('linux')).toBeUndefined();
  });
});

describe('parseBpftraceInfo', () => {
  async function info(file: string) {
    return parseBpftraceInfo(
      await readFile(`${capabilityFixtureDir}bpftrace-info/${file}`, 'utf8'),
    );
  }

  it("reads this machine's bpftrace 0.17 claiming kprobe support the kernel lacks", async () => {
    const parsed = await info('0.17.0-this-machine.txt');
    expect(parsed.version).toBe('v0.17.0');
    expect(bpftraceInfoFlag(parsed, 'probe types', 'kprobe')).toBe(true);
    expect(bpftraceInfoFlag(parsed, 'probe types', 'tracepoint')).toBe(true);
    expect(bpftraceInfoFlag(parsed, 'probe types', 'kfunc')).toBe(false);
    expect(bpftraceInfoFlag(parsed, 'kernel features', 'btf')).toBe(true);
  });

  it('reads the btf key of bpftrace 0.9 despite its parenthesised remark', async () => {
    const parsed = await info('0.9.4-constructed.txt');
    expect(parsed.version).toBe('v0.9.4');
    expect(bpftraceInfoFlag(parsed, 'kernel features', 'btf')).toBe(false);
    expect(bpftraceInfoFlag(parsed, 'probe types', 'kprobe')).toBe(true);
  });

  it('reads bpftrace 0.21, where kfunc is called fentry', async () => {
    const parsed = await info('0.21.2-constructed.txt');
    expect(parsed.version).toBe('v0.21.2');
    expect(bpftraceInfoFlag(parsed, 'probe types', 'kfunc')).toBeUndefined();
    expect(bpftraceInfoFlag(parsed, 'probe types', 'fentry')).toBe(true);
  });

  it('reads nothing from text that is not --info output', () => {
    const parsed = parseBpftraceInfo('bpftrace: command not found\n');
    expect(parsed.version).toBeUndefined();
    expect(bpftraceInfoFlag(parsed, 'probe types', 'kprobe')).toBeUndefined();
  });
});

describe('detectCapabilities over recorded kernels', () => {
  it.each([
    // name, release, btf, reason field, NETFILTER_DROP, clashres column, attach: confirm/clash/snat
    ['6.18-this-machine', '6.18.44-fc-v669', true, true, true, true, [false, false, false]],
    ['4.19-no-btf', '4.19.0-26-amd64', false, false, false, false, [true, false, true]],
    ['5.4-btf', '5.4.0-150-generic', true, false, false, false, [true, false, true]],
    ['5.10-bullseye', '5.10.0-32-amd64', true, false, false, true, [true, true, true]],
    ['5.15-btf-reasons', '5.15.0-91-generic', true, true, true, true, [true, true, true]],
    ['6.1-btf', '6.1.0-18-amd64', true, true, true, true, [true, true, true]],
  ] as const)(
    '%s: reads release, BTF, drop reasons, stat columns and the test-attach outcomes',
    async (name, release, btf, reason, netfilterDrop, clashres, attached) => {
      const capabilities = await detectFixture(name);
      expect(capabilities.kernelRelease).toBe(release);
      expect(capabilities.btf).toBe(btf);
      expect(capabilities.tracefs.kfreeSkbReason).toBe(reason);
      expect(capabilities.tracefs.netfilterDropReason).toBe(netfilterDrop);
      expect(capabilities.conntrackStatColumns?.includes('clashres')).toBe(clashres);
      expect(capabilities.conntrackStatColumns).toContain('insert_failed');
      expect([
        capabilities.kprobeAttach['conntrack-confirm'].attached,
        capabilities.kprobeAttach['clash-resolved'].attached,
        capabilities.kprobeAttach['snat-port-alloc'].attached,
      ]).toEqual(attached);
    },
  );

  it('reads CONFIG_KPROBES from /proc/config.gz and from /boot/config-<release>', async () => {
    const here = await detectFixture('6.18-this-machine');
    expect(here.kernelConfig).toMatchObject({
      source: `${fixturePaths('6.18-this-machine').procRoot}/config.gz`,
      kprobes: false,
      nfConntrack: 'y',
    });
    const old = await detectFixture('4.19-no-btf');
    expect(old.kernelConfig).toMatchObject({
      source: `${fixturePaths('4.19-no-btf').bootRoot}/config-4.19.0-26-amd64`,
      kprobes: true,
    });
  });

  it.each([
    // name, kfree_skb fields, module BTF of nf_conntrack, bpftrace btf
    ['5.10-bullseye', ['skbaddr', 'location', 'protocol'], false, false],
    ['6.1-btf', ['skbaddr', 'location', 'protocol', 'reason'], true, true],
    ['6.12-trixie', ['skbaddr', 'location', 'rx_sk', 'protocol', 'reason'], true, true],
    ['6.18-this-machine', ['skbaddr', 'location', 'rx_sk', 'protocol', 'reason'], false, true],
  ] as const)(
    '%s: reads the kfree_skb fields, the module BTF of nf_conntrack and what bpftrace says of BTF',
    async (name, fields, moduleBtf, bpftraceBtf) => {
      const capabilities = await detectFixture(name);
      expect(capabilities.tracefs.kfreeSkbFields).toEqual(fields);
      expect(capabilities.nfConntrackBtf).toBe(moduleBtf);
      expect(capabilities.bpftrace).toMatchObject({ available: true, btf: bpftraceBtf });
    },
  );

  it('finds kernel headers under /lib/modules/<release>/build, with the source beside them', async () => {
    const withHeaders = await detectFixture('5.10-bullseye');
    const modules = fixturePaths('5.10-bullseye').modulesRoot;
    expect(withHeaders.kernelHeaders).toEqual({
      source: `${modules}/5.10.0-32-amd64/source`,
      build: `${modules}/5.10.0-32-amd64/build`,
    });
    expect((await detectFixture('5.10-bullseye-no-headers')).kernelHeaders).toBeUndefined();
  });

  it('keeps the reason a kprobe does not attach here, without bpftrace start-up noise', async () => {
    const capabilities = await detectFixture('6.18-this-machine');
    const confirm = capabilities.kprobeAttach['conntrack-confirm'];
    expect(confirm.attached).toBe(false);
    if (confirm.attached) return;
    expect(confirm.attempted).toBe(true);
    expect(confirm.error).toBe(
      'create_probe_event: open(/sys/kernel/tracing/kprobe_events): No such file or directory; ' +
        "ERROR: Error attaching probe: 'kretprobe:__nf_conntrack_confirm'",
    );
    expect(capabilities.tracefs.kprobeEvents).toBe(false);
  });

  it('reports bpftrace 0.17 features and that --info claims kprobe support here', async () => {
    const { bpftrace } = await detectFixture('6.18-this-machine');
    expect(bpftrace).toMatchObject({
      available: true,
      version: 'v0.17.0',
      kprobe: true,
      tracepoint: true,
      kfunc: false,
      btf: true,
    });
  });

  it('test-attaches each kprobe script with a program whose BEGIN exits', async () => {
    const sources = await fixtureSources('6.1-btf');
    await detectCapabilities({ ...sources, bpftracePath: '/usr/bin/bpftrace' });
    expect(sources.calls).toEqual(
      expect.arrayContaining([
        ['/usr/bin/bpftrace', '--info'],
        [
          '/usr/bin/bpftrace',
          '-e',
          'kprobe:__nf_conntrack_confirm {} kretprobe:__nf_conntrack_confirm {} BEGIN { exit(); }',
        ],
        [
          '/usr/bin/bpftrace',
          '-e',
          'kprobe:nf_ct_resolve_clash {} kretprobe:nf_ct_resolve_clash {} BEGIN { exit(); }',
        ],
        [
          '/usr/bin/bpftrace',
          '-e',
          'kprobe:nf_nat_setup_info {} kretprobe:nf_nat_setup_info {} ' +
            'kprobe:nf_conntrack_tuple_taken {} BEGIN { exit(); }',
        ],
      ]),
    );
    expect(sources.calls.some((call) => call.includes('-l'))).toBe(false);
  });

  it('attaches nothing and says why when bpftrace cannot start', async () => {
    const sources = await fixtureSources('6.1-no-bpftrace');
    const capabilities = await detectCapabilities({ ...sources, bpftracePath: 'bpftrace' });
    expect(capabilities.bpftrace.available).toBe(false);
    expect(sources.calls).toEqual([['bpftrace', '--info']]);
    const confirm = capabilities.kprobeAttach['conntrack-confirm'];
    expect(confirm).toMatchObject({ attached: false, attempted: false });
    if (!confirm.attached) expect(confirm.error).toMatch(/ENOENT/);
  });
});

describe('detectCapabilities with a scripted runner', () => {
  const emptyRoot = fixturePaths('no-such-fixture');
  const info = (kprobe: 'yes' | 'no') =>
    `Build\n  version: v0.17.0\n\nKernel features\n  btf: yes\n\nProbe types\n  kprobe: ${kprobe}\n  tracepoint: yes\n`;

  function runner(kprobe: 'yes' | 'no', attach: CommandRunner): CommandRunner {
    return async (file, args, options) =>
      args[0] === '--info'
        ? {
            exitCode: 0,
            stdout: info(kprobe),
            stderr: '',
            timedOut: false,
            startError: undefined,
            durationMs: 1,
          }
        : attach(file, args, options);
  }

  it('does not test-attach when bpftrace itself reports no kprobe support', async () => {
    const attached: string[][] = [];
    const capabilities = await detectCapabilities({
      files: createFileSystemCapabilityFiles(),
      paths: emptyRoot,
      bpftracePath: 'bpftrace',
      run: runner('no', async (_file, args) => {
        attached.push([...args]);
        throw new Error('must not run');
      }),
    });
    expect(attached).toEqual([]);
    expect(capabilities.kprobeAttach['conntrack-confirm']).toMatchObject({
      attached: false,
      attempted: false,
      error: 'not attempted: bpftrace --info reports kprobe: no',
    });
  });

  it('treats a test-attach that outlives its timeout as kprobes unavailable', async () => {
    const capabilities = await detectCapabilities({
      files: createFileSystemCapabilityFiles(),
      paths: emptyRoot,
      bpftracePath: 'bpftrace',
      attachTimeoutMs: 250,
      run: runner('yes', async () => ({
        exitCode: undefined,
        stdout: 'Attaching 3 probes...\n',
        stderr: '',
        timedOut: true,
        startError: undefined,
        durationMs: 250,
      })),
    });
    expect(capabilities.kprobeAttach['conntrack-confirm']).toMatchObject({
      attached: false,
      error: 'did not finish within 250 ms',
    });
  });

  it('reports a machine with nothing readable as having nothing', async () => {
    const capabilities = await detectCapabilities({
      files: createFileSystemCapabilityFiles(),
      paths: emptyRoot,
      bpftracePath: 'bpftrace',
      run: runner('yes', async () => ({
        exitCode: 0,
        stdout: '',
        stderr: '',
        timedOut: false,
        startError: undefined,
        durationMs: 5,
      })),
    });
    expect(capabilities).toMatchObject({
      kernelRelease: undefined,
      kernelVersion: undefined,
      btf: false,
      kernelConfig: undefined,
      conntrackStatColumns: undefined,
      tracefs: { root: undefined, kfreeSkbReason: false, kprobeEvents: false },
    });
  });
});

describe('bpftraceErrorText', () => {
  it('drops the memlock warning, not-traceable warnings and the echoed program', () => {
    const program = testAttachProgram(['kprobe:f']);
    const stderr = [
      "ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace.",
      'stdin:1:1-9: WARNING: f is not traceable (either non-existing, inlined, or marked as "notrace")',
      program,
      '~~~~~~~~',
      "ERROR: Error attaching probe: 'kprobe:f'",
      '',
    ].join('\n');
    expect(bpftraceErrorText(stderr, program)).toBe("ERROR: Error attaching probe: 'kprobe:f'");
  });
});
