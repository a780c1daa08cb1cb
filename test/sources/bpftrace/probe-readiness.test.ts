import type { ModeSelection } from '../../../src/detect/mode-selection.js';
import type { ProbeStatus } from '../../../src/sources/bpftrace/bpftrace-supervisor.js';
import { probeReadiness } from '../../../src/sources/bpftrace/probe-readiness.js';

const mode: ModeSelection = {
  mode: 'kprobe',
  reason: 'auto',
  probes: ['kprobe/conntrack-confirm', 'tracepoint/dns-drops'],
  runs: [],
  unavailable: [],
  observable: [],
  unobservable: ['resolved clashes: nf_ct_resolve_clash does not attach'],
};

function supervisor(ready: boolean, status: ProbeStatus[]) {
  return { isReady: () => ready, status: () => status };
}

const attached = (name: string): ProbeStatus => ({
  name,
  ready: true,
  pid: 1,
  restarts: 0,
  unavailable: undefined,
});

describe('probeReadiness', () => {
  it('waits for the probes that have neither attached nor been found unavailable', () => {
    const readiness = probeReadiness(
      mode,
      supervisor(false, [
        attached('kprobe/conntrack-confirm'),
        { ...attached('tracepoint/dns-drops'), ready: false },
      ]),
    );
    expect(readiness.waiting).toBe('probes not attached: tracepoint/dns-drops');
  });

  it("is ready with a probe the kernel cannot run, naming it, bpftrace's reason and what is unobservable", () => {
    const readiness = probeReadiness(
      mode,
      supervisor(true, [
        attached('kprobe/conntrack-confirm'),
        {
          ...attached('tracepoint/dns-drops'),
          ready: false,
          unavailable: {
            name: 'tracepoint/dns-drops',
            reason: 'exits_before_attach',
            detail:
              "ERROR: Struct/union of type 'struct sk_buff' does not contain a field named 'rx_sk'",
          },
        },
      ]),
    );
    expect(readiness.waiting).toBeUndefined();
    expect(readiness.detail).toBe(
      'mode kprobe; unavailable on this kernel: tracepoint/dns-drops (exits_before_attach: ' +
        "ERROR: Struct/union of type 'struct sk_buff' does not contain a field named 'rx_sk'); " +
        'unobservable: resolved clashes: nf_ct_resolve_clash does not attach',
    );
  });

  it('in counters-only mode says only the mode and what it cannot see', () => {
    expect(probeReadiness({ ...mode, mode: 'counters-only' }, undefined)).toEqual({
      waiting: undefined,
      detail:
        'mode counters-only; unobservable: resolved clashes: nf_ct_resolve_clash does not attach',
    });
  });
});
