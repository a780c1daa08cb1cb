import { detectCapabilities, type KernelCapabilities } from '../../src/detect/capabilities.js';
import {
  createExecaCommandRunner,
  createFileSystemCapabilityFiles,
} from '../../src/detect/capability-sources.js';
import { selectProbeMode } from '../../src/detect/mode-selection.js';

// The machines these tests run on have tracepoints and BTF but no kprobes (CONFIG_KPROBES
// off): detection must find that out by itself, with real files and a real test-attach.
let capabilities: KernelCapabilities;

beforeAll(async () => {
  capabilities = await detectCapabilities({
    files: createFileSystemCapabilityFiles(),
    run: createExecaCommandRunner(),
    bpftracePath: 'bpftrace',
  });
}, 60_000);

describe('capability detection on this machine', () => {
  it('finds tracepoints with drop reasons, BTF and the clashres column', () => {
    expect(capabilities.bpftrace).toMatchObject({ available: true, tracepoint: true });
    expect(capabilities.btf).toBe(true);
    expect(capabilities.tracefs).toMatchObject({
      root: '/sys/kernel/tracing',
      kfreeSkbReason: true,
      netfilterDropReason: true,
    });
    expect(capabilities.conntrackStatColumns).toContain('clashres');
  });

  it('reads from the real vmlinux BTF that it defines struct nf_conn (nf_conntrack is built in here)', () => {
    expect(capabilities.nfConnInVmlinuxBtf).toBe(true);
  });

  it('finds that no kprobe attaches, although bpftrace --info claims kprobe support', () => {
    expect(capabilities.bpftrace).toMatchObject({ kprobe: true });
    for (const outcome of Object.values(capabilities.kprobeAttach)) {
      expect(outcome).toMatchObject({ attached: false, attempted: true });
    }
    const confirm = capabilities.kprobeAttach['conntrack-confirm'];
    expect(confirm.attached ? '' : confirm.error).toMatch(
      /kprobe_events\): No such file or directory; ERROR: Error attaching probe: 'k(ret)?probe:__nf_conntrack_confirm'/,
    );
  });

  it('auto selects tracepoint mode and says kprobes are missing', () => {
    const result = selectProbeMode('auto', capabilities);
    expect(result).toMatchObject({ ok: true, selection: { mode: 'tracepoint' } });
    expect(result.ok ? result.selection.reason : '').toMatch(
      /^auto: tracepoint, because kprobe mode needs kprobes; this kernel has none \(CONFIG_KPROBES is not set in \/proc\/config\.gz; /,
    );
  });

  it('fails --probe-mode kprobe with the test-attach error', () => {
    const result = selectProbeMode('kprobe', capabilities);
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.error.message).toMatch(
      /^kprobe mode needs kprobes; this kernel has none \(.*test-attach of kprobe:__nf_conntrack_confirm and kretprobe:__nf_conntrack_confirm failed: .*Error attaching probe/,
    );
  });
});
