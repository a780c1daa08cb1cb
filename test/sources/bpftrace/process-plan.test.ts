import { planProcesses } from '../../../src/sources/bpftrace/process-plan.js';

const combinable = (records: string[], source = 'kprobe:f { }') => ({
  source,
  records,
  maps: [],
});

describe('which probes share one bpftrace process', () => {
  it('joins every combinable probe, merging their environments and their options once each', () => {
    const plan = planProcesses([
      {
        name: 'a',
        args: [],
        env: { BPFTRACE_BTF: '/btf' },
        bpftraceOptions: ['--include', 'x.h'],
        attachTimeoutMs: 10,
        combinable: combinable(['a']),
      },
      {
        name: 'b',
        args: [],
        env: { BPFTRACE_BTF: '/btf', BPFTRACE_MAP_KEYS_MAX: '8192' },
        bpftraceOptions: ['--include', 'x.h', '--include', 'y.h'],
        attachTimeoutMs: 30,
        combinable: combinable(['b']),
      },
      { name: 'c', args: [] },
    ]);
    expect(plan.combined?.probes).toEqual(['a', 'b']);
    expect(plan.combined?.env).toEqual({ BPFTRACE_BTF: '/btf', BPFTRACE_MAP_KEYS_MAX: '8192' });
    expect(plan.combined?.bpftraceOptions).toEqual(['--include', 'x.h', '--include', 'y.h']);
    expect(plan.combined?.attachTimeoutMs).toBe(30);
    expect(plan.alone).toEqual(['c']);
  });

  it('leaves a probe whose environment contradicts the others to run alone, and says why', () => {
    const plan = planProcesses([
      { name: 'a', args: [], env: { X: '1' }, combinable: combinable(['a']) },
      { name: 'b', args: [], env: { X: '1' }, combinable: combinable(['b']) },
      { name: 'c', args: [], env: { X: '2' }, combinable: combinable(['c']) },
    ]);
    expect(plan.combined?.probes).toEqual(['a', 'b']);
    expect(plan.alone).toEqual(['c']);
    expect(plan.notes).toEqual([{ probe: 'c', reason: 'needs X=2, the others X=1' }]);
  });

  it('combines nothing when fewer than two probes can join, or when their scripts cannot share a program', () => {
    expect(planProcesses([{ name: 'a', args: [], combinable: combinable(['a']) }])).toMatchObject({
      combined: undefined,
      alone: ['a'],
    });
    const refused = planProcesses([
      { name: 'a', args: [], combinable: combinable(['a'], 'kprobe:f /$1/ { }') },
      { name: 'b', args: [], combinable: combinable(['b']) },
    ]);
    expect(refused.combined).toBeUndefined();
    expect(refused.alone).toEqual(['a', 'b']);
    expect(refused.notes[0]?.reason).toMatch(/^missing_positional: /);
  });
});
