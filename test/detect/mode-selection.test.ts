import { Registry } from 'prom-client';
import { detectCapabilities, type KernelCapabilities } from '../../src/detect/capabilities.js';
import { probeCatalogue } from '../../src/probes/catalogue.js';
import { type ModeSelection, selectProbeMode } from '../../src/detect/mode-selection.js';
import { observations } from '../../src/detect/observability.js';
import {
  type ActiveProbeMode,
  parseProbeModeOption,
  type ProbeModeOption,
  probeModeOptions,
} from '../../src/detect/probe-modes.js';
import { registerProbeModeGauge } from '../../src/detect/probe-mode-metric.js';
import { fixturePaths, fixtureSources } from '../fixtures/capabilities/load.js';

const fixtures = [
  '6.18-this-machine',
  '4.19-no-btf',
  '5.4-btf',
  '5.10-bullseye',
  '5.10-headers-only',
  '5.10-bullseye-no-headers',
  '5.15-btf-reasons',
  '6.1-btf',
  '6.1-no-bpftrace',
  '6.12-trixie',
] as const;
type Fixture = (typeof fixtures)[number];

const capabilities = new Map<Fixture, KernelCapabilities>();

beforeAll(async () => {
  for (const name of fixtures) {
    const sources = await fixtureSources(name);
    capabilities.set(name, await detectCapabilities({ ...sources, bpftracePath: 'bpftrace' }));
  }
});

function select(name: Fixture, option: ProbeModeOption) {
  return selectProbeMode(option, capabilities.get(name)!);
}

function selected(name: Fixture, option: ProbeModeOption): ModeSelection {
  const result = select(name, option);
  if (!result.ok) throw new Error(`expected a mode, got: ${result.error.message}`);
  return result.selection;
}

const ALL = [
  'kprobe/conntrack-confirm',
  'kprobe/clash-resolved',
  'kprobe/snat-port-alloc',
  'tracepoint/dns-drops',
  'tracepoint/dns-queries',
];
const TRACEPOINT = [
  'tracepoint/conntrack-insert-failed',
  'tracepoint/dns-drops',
  'tracepoint/dns-queries',
];

describe('selectProbeMode over recorded kernels', () => {
  // Expected mode, or `error` with a pattern the message must match, for each option.
  type Expected = ActiveProbeMode | { error: RegExp };
  const table: [Fixture, Record<ProbeModeOption, Expected>][] = [
    [
      '6.18-this-machine',
      {
        auto: 'tracepoint',
        tracepoint: 'tracepoint',
        kprobe: { error: /^kprobe mode needs kprobes; this kernel has none/ },
        'counters-only': 'counters-only',
      },
    ],
    [
      '4.19-no-btf',
      {
        auto: 'counters-only',
        tracepoint: { error: /needs skb drop reasons .* and BTF/ },
        kprobe: { error: /^kprobe mode needs BTF \(CONFIG_DEBUG_INFO_BTF\)/ },
        'counters-only': 'counters-only',
      },
    ],
    [
      '5.4-btf',
      {
        auto: 'kprobe',
        tracepoint: { error: /^tracepoint mode needs skb drop reasons/ },
        kprobe: 'kprobe',
        'counters-only': 'counters-only',
      },
    ],
    [
      '5.10-bullseye',
      {
        auto: 'kprobe',
        tracepoint: { error: /^tracepoint mode needs skb drop reasons/ },
        kprobe: 'kprobe',
        'counters-only': 'counters-only',
      },
    ],
    [
      '5.10-headers-only',
      {
        auto: 'kprobe',
        tracepoint: { error: /^tracepoint mode needs skb drop reasons/ },
        kprobe: 'kprobe',
        'counters-only': 'counters-only',
      },
    ],
    [
      '5.10-bullseye-no-headers',
      {
        auto: 'counters-only',
        tracepoint: { error: /^tracepoint mode needs skb drop reasons/ },
        kprobe: { error: /^kprobe mode needs the types of struct nf_conn/ },
        'counters-only': 'counters-only',
      },
    ],
    [
      '5.15-btf-reasons',
      {
        auto: 'kprobe',
        tracepoint: 'tracepoint',
        kprobe: 'kprobe',
        'counters-only': 'counters-only',
      },
    ],
    [
      '6.1-btf',
      {
        auto: 'kprobe',
        tracepoint: 'tracepoint',
        kprobe: 'kprobe',
        'counters-only': 'counters-only',
      },
    ],
    [
      '6.12-trixie',
      {
        auto: 'kprobe',
        tracepoint: 'tracepoint',
        kprobe: 'kprobe',
        'counters-only': 'counters-only',
      },
    ],
    [
      '6.1-no-bpftrace',
      {
        auto: 'counters-only',
        tracepoint: { error: /^tracepoint mode needs a working bpftrace \(.*ENOENT/ },
        kprobe: { error: /^kprobe mode needs a working bpftrace \(.*ENOENT/ },
        'counters-only': 'counters-only',
      },
    ],
  ];
  const cases = table.flatMap(([name, expected]) =>
    probeModeOptions.map((option) => [name, option, expected[option]] as const),
  );

  it.each(cases)('%s with --probe-mode %s gives %p', (name, option, expected) => {
    const result = select(name, option);
    if (typeof expected === 'string') {
      expect(result).toMatchObject({ ok: true, selection: { mode: expected } });
    } else {
      expect(result).toMatchObject({ ok: false, error: { code: 'probe_mode_unavailable' } });
      expect(result.ok ? '' : result.error.message).toMatch(expected.error);
    }
  });
});

describe('selectProbeMode on this machine (recorded)', () => {
  it('auto selects tracepoint and says kprobes are missing and why', () => {
    const selection = selected('6.18-this-machine', 'auto');
    expect(selection.mode).toBe('tracepoint');
    expect(selection.reason).toMatch(
      /^auto: tracepoint, because kprobe mode needs kprobes; this kernel has none \(CONFIG_KPROBES is not set in .*\/proc\/config\.gz; no kprobe_events in .*; test-attach of kprobe:__nf_conntrack_confirm and kretprobe:__nf_conntrack_confirm failed: create_probe_event: open\(\/sys\/kernel\/tracing\/kprobe_events\): No such file or directory; ERROR: Error attaching probe: 'kretprobe:__nf_conntrack_confirm'\); skb:kfree_skb has drop reasons with NETFILTER_DROP and BTF is present$/,
    );
    expect(selection.probes).toEqual(TRACEPOINT);
  });

  it('fails --probe-mode kprobe naming the missing capability and the attach error', () => {
    const result = select('6.18-this-machine', 'kprobe');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.requested).toBe('kprobe');
    expect(result.error.missing).toHaveLength(1);
    expect(result.error.message).toMatch(/CONFIG_KPROBES is not set/);
    expect(result.error.message).toMatch(/test-attach of kprobe:__nf_conntrack_confirm/);
    expect(result.error.message).toMatch(/kprobe_events\): No such file or directory/);
  });

  it('in tracepoint mode lists resolved clashes and SNAT allocation as unobservable', () => {
    const selection = selected('6.18-this-machine', 'auto');
    expect(selection.observable).toEqual([
      observations.insertFailures,
      observations.dnsDrops,
      observations.dnsQueries,
      observations.kernelCounters,
      observations.clashResolveCounter,
    ]);
    expect(selection.unobservable.join('\n')).toMatch(/resolved without a drop.*no tracepoint/);
    expect(selection.unobservable.join('\n')).toMatch(/SNAT port allocation/);
  });
});

describe('selectProbeMode on older kernels (constructed)', () => {
  it('5.4 with BTF and headers runs kprobe mode without the clash probe, and DNS drops named from their location', () => {
    const selection = selected('5.4-btf', 'auto');
    expect(selection.probes).toEqual([
      'kprobe/conntrack-confirm',
      'kprobe/snat-port-alloc',
      'tracepoint/dns-drops',
      'tracepoint/dns-queries',
    ]);
    expect(selection.runs.map((run) => run.variant.script)).toContain(
      'tracepoint/dns-drops-no-reason.bt',
    );
    expect(selection.unavailable).toEqual([
      {
        name: 'kprobe/clash-resolved',
        reason: 'kprobe_attach',
        detail: expect.stringMatching(/nf_ct_resolve_clash does not attach/),
      },
    ]);
    const gaps = selection.unobservable.join('\n');
    expect(gaps).toMatch(/resolved without a drop.*nf_ct_resolve_clash does not attach/);
    expect(gaps).toMatch(/DNS.*in part: skb:kfree_skb has no reason field/);
    expect(gaps).toMatch(/no clashres column.*insert_failed also counts clashes/);
    expect(selection.observable).not.toContain(observations.clashResolveCounter);
  });

  it('5.10 (bullseye, bpftrace 0.17) gives bpftrace BPFTRACE_BTF and reads nf_conn from the vmlinux BTF that defines it, without headers', () => {
    const selection = selected('5.10-bullseye', 'auto');
    expect(selection.mode).toBe('kprobe');
    expect(selection.probes).toEqual(ALL);
    const btfPath = `${fixturePaths('5.10-bullseye').sysRoot}/kernel/btf/vmlinux`;
    for (const run of selection.runs) {
      expect(run.env).toEqual({ BPFTRACE_BTF: btfPath });
      expect(run.bpftraceOptions).toEqual([]);
      expect(run.types).toBe('btf');
    }
    expect(selection.reason).not.toMatch(/kernel headers/);
  });

  it('5.10 whose vmlinux BTF only declares nf_conn gives bpftrace BPFTRACE_BTF, reads nf_conn from the headers, and classifies DNS drops by location', () => {
    const selection = selected('5.10-headers-only', 'auto');
    expect(selection.probes).toEqual(ALL);
    expect(selection.unavailable).toEqual([]);
    const btfPath = `${fixturePaths('5.10-headers-only').sysRoot}/kernel/btf/vmlinux`;
    const modules = `${fixturePaths('5.10-headers-only').modulesRoot}/5.10.0-32-amd64`;
    // The DNS-query probe reads no struct nf_conn: vmlinux BTF is all it needs.
    const queries = selection.runs.find((run) => run.spec.name === 'tracepoint/dns-queries');
    expect(queries?.env).toEqual({ BPFTRACE_BTF: btfPath });
    for (const run of selection.runs.filter((run) => run !== queries)) {
      expect(run.env).toEqual({
        BPFTRACE_BTF: btfPath,
        BPFTRACE_KERNEL_SOURCE: `${modules}/source`,
        BPFTRACE_KERNEL_BUILD: `${modules}/build`,
      });
      expect(run.bpftraceOptions).toEqual(['--include', 'net/netfilter/nf_conntrack.h']);
      expect(run.types).toBe('kernel headers');
      expect(run.attachTimeoutMs).toBeGreaterThan(60_000);
    }
    expect(
      selection.runs.find((run) => run.spec.name === 'tracepoint/dns-drops')?.variant.script,
    ).toBe('tracepoint/dns-drops-no-reason.bt');
    expect(selection.reason).toMatch(/BPFTRACE_BTF=.*btf: no/);
    expect(selection.reason).toMatch(/struct nf_conn comes from the kernel headers/);
    expect(selection.observable).toEqual([
      observations.insertFailures,
      observations.resolvedClashes,
      observations.snatPortAllocation,
      observations.dnsDrops,
      observations.dnsQueries,
      observations.kernelCounters,
      observations.clashResolveCounter,
    ]);
    expect(selection.unobservable.join('\n')).toMatch(/in part: skb:kfree_skb has no reason field/);
  });

  it('5.10 without kernel headers runs counters-only and says that struct nf_conn has no types there, and why', () => {
    const selection = selected('5.10-bullseye-no-headers', 'auto');
    expect(selection.mode).toBe('counters-only');
    expect(selection.reason).toMatch(
      /^auto: counters-only, because kprobe mode needs the types of struct nf_conn, which belongs to the nf_conntrack module: this kernel exports no module BTF .* and no kernel headers are installed .*; and tracepoint mode needs skb drop reasons/,
    );
  });

  it('6.1 (no rx_sk in skb:kfree_skb) runs the DNS drop script without it, from BTF alone', () => {
    const selection = selected('6.1-btf', 'auto');
    expect(selection.probes).toEqual(ALL);
    const dns = selection.runs.find((run) => run.spec.name === 'tracepoint/dns-drops');
    expect(dns?.variant.script).toBe('tracepoint/dns-drops-no-rx-sk.bt');
    for (const run of selection.runs) {
      expect(run.env).toEqual({});
      expect(run.bpftraceOptions).toEqual([]);
    }
    expect(selection.unobservable).toEqual([
      expect.stringMatching(/^dropped UDP DNS .*, in part: skb:kfree_skb has no rx_sk field/),
    ]);
    expect(selected('6.1-btf', 'tracepoint').runs.map((run) => run.variant.script)).toEqual([
      'tracepoint/conntrack-insert-failed.bt',
      'tracepoint/dns-drops-no-rx-sk.bt',
      'tracepoint/dns-queries.bt',
    ]);
  });

  it('5.15 with backported drop reasons and 6.12 run every kprobe and the DNS drop probe', () => {
    for (const name of ['5.15-btf-reasons', '6.12-trixie'] as const) {
      const selection = selected(name, 'auto');
      expect(selection.probes).toEqual(ALL);
      expect(selection.reason).toMatch(/^auto: kprobes attach to __nf_conntrack_confirm/);
    }
    expect(selected('6.12-trixie', 'auto').unobservable).toEqual([]);
    expect(selected('6.12-trixie', 'auto').runs.map((run) => run.variant.script)).toContain(
      'tracepoint/dns-drops.bt',
    );
  });

  it('4.19 without BTF falls back to counters-only, saying why neither probe mode runs', () => {
    const selection = selected('4.19-no-btf', 'auto');
    expect(selection.probes).toEqual([]);
    expect(selection.reason).toMatch(
      /^auto: counters-only, because kprobe mode needs BTF .*; and tracepoint mode needs skb drop reasons/,
    );
    expect(selection.observable).toEqual([observations.kernelCounters]);
  });

  it('an explicit tracepoint mode runs where auto prefers kprobe', () => {
    const selection = selected('6.1-btf', 'tracepoint');
    expect(selection.probes).toEqual(TRACEPOINT);
    expect(selection.reason).toBe('requested with --probe-mode tracepoint');
  });
});

describe('selected probes', () => {
  it('are all in the probe catalogue, with the mode they are run in', () => {
    const names = new Set(probeCatalogue.map((probe) => probe.name));
    for (const name of fixtures) {
      for (const option of probeModeOptions) {
        const result = select(name, option);
        if (!result.ok) continue;
        for (const probe of result.selection.probes) expect(names).toContain(probe);
      }
    }
  });
});

describe('parseProbeModeOption', () => {
  it.each(probeModeOptions)('accepts %s', (option) => {
    expect(parseProbeModeOption(option)).toBe(option);
  });

  it('rejects anything else', () => {
    expect(parseProbeModeOption('kfunc')).toBeUndefined();
  });
});

describe('registerProbeModeGauge', () => {
  it('exports 1 for the active mode and 0 for the others on the given registry', async () => {
    const registry = new Registry();
    registerProbeModeGauge(registry, 'tracepoint');
    const text = await registry.metrics();
    expect(text).toContain('conntrack_observer_probe_mode{mode="tracepoint"} 1');
    expect(text).toContain('conntrack_observer_probe_mode{mode="kprobe"} 0');
    expect(text).toContain('conntrack_observer_probe_mode{mode="counters-only"} 0');
  });
});
