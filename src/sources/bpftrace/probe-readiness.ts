import type { ModeSelection } from '../../detect/mode-selection.js';
import type { BpftraceSupervisor } from './bpftrace-supervisor.js';

export interface ProbeReadiness {
  /** What readiness still waits for; undefined once every probe attached or is unavailable. */
  readonly waiting: string | undefined;
  /** For `/readyz`: the mode, the probes that cannot run and why, what is unobservable. */
  readonly detail: string;
}

/**
 * The probes' part of `/readyz`. A probe the kernel cannot run (found at start-up or at run
 * time) does not hold readiness: the detail names it, with bpftrace's reason, and everything
 * the agent cannot observe on this kernel.
 */
export function probeReadiness(
  mode: ModeSelection,
  supervisor: Pick<BpftraceSupervisor, 'isReady' | 'status'> | undefined,
): ProbeReadiness {
  const parts = [`mode ${mode.mode}`];
  let waiting: string | undefined;
  if (supervisor !== undefined) {
    if (!supervisor.isReady()) {
      const pending = supervisor
        .status()
        .filter((probe) => !probe.ready && probe.unavailable === undefined);
      if (pending.length > 0) {
        waiting = `probes not attached: ${pending.map((probe) => probe.name).join(', ')}`;
      }
    }
    // Those found at start-up are in mode.unobservable already.
    const unavailable = supervisor
      .status()
      .flatMap((probe) => (probe.unavailable === undefined ? [] : [probe.unavailable]));
    if (unavailable.length > 0) {
      parts.push(
        `unavailable on this kernel: ${unavailable
          .map((probe) => `${probe.name} (${probe.reason}: ${probe.detail})`)
          .join('; ')}`,
      );
    }
  }
  if (mode.unobservable.length > 0) parts.push(`unobservable: ${mode.unobservable.join('; ')}`);
  return { waiting, detail: parts.join('; ') };
}
