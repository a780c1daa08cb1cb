import { Counter, Gauge, type Registry } from 'prom-client';

import { DECODE_ERROR_CODES } from '../../decode/decoded-line.js';
import { probeUnavailableReasons } from '../../probes/catalogue.js';

/** A decoder is not supposed to throw; if it does, the line is counted under this code. */
export const DECODER_EXCEPTION = 'decoder_exception';

/**
 * The `probe` label of what a combined bpftrace process prints for no probe in particular:
 * its lost_events (the perf buffer is the process's) and lines no probe claims. One value
 * whatever the probes, so the label set stays bounded (docs/metrics.md).
 */
export const COMBINED_PROBE = 'combined';

export interface SupervisorMetrics {
  readonly up: Gauge<'probe'>;
  readonly restarts: Counter<'probe'>;
  readonly decoded: Counter<'probe'>;
  readonly rejected: Counter<'probe' | 'error'>;
  readonly lost: Counter<'probe'>;
  readonly unavailable: Gauge<'probe' | 'reason'>;
  readonly handlingErrors: Counter<'probe'>;
  readonly maps: Counter<'probe'>;
}

/** Every series of a probe at 0, so that a rate() has its start. */
export function initialiseProbeSeries(
  metrics: SupervisorMetrics,
  probe: string,
  options: { withUp: boolean },
): void {
  if (options.withUp) {
    metrics.up.set({ probe }, 0);
    metrics.restarts.inc({ probe }, 0);
    metrics.decoded.inc({ probe }, 0);
    metrics.maps.inc({ probe }, 0);
  }
  metrics.lost.inc({ probe }, 0);
  metrics.handlingErrors.inc({ probe }, 0);
  for (const error of [...DECODE_ERROR_CODES, DECODER_EXCEPTION])
    metrics.rejected.inc({ probe, error }, 0);
}

export function registerSupervisorMetrics(registry: Registry): SupervisorMetrics {
  return {
    up: new Gauge({
      name: 'conntrack_observer_probe_up',
      help: '1 while the probe is running and attached to the kernel, else 0.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    restarts: new Counter({
      name: 'conntrack_observer_probe_restarts_total',
      help: 'Times the probe process was started again after it exited.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    decoded: new Counter({
      name: 'conntrack_observer_probe_events_decoded_total',
      help: 'Events read from the probe output and decoded.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'conntrack_observer_probe_lines_rejected_total',
      help: 'Probe output lines that could not be decoded, by decode error code.',
      labelNames: ['probe', 'error'],
      registers: [registry],
    }),
    unavailable: new Gauge({
      name: 'conntrack_observer_probe_unavailable',
      help:
        'Set to 1 while a probe of the chosen mode cannot run on this kernel, by reason: ' +
        probeUnavailableReasons.join(', ') +
        ' (docs/metrics.md). 0 once a probe found unavailable at run time attached after all.',
      labelNames: ['probe', 'reason'],
      registers: [registry],
    }),
    handlingErrors: new Counter({
      name: 'conntrack_observer_probe_line_handling_errors_total',
      help: 'Probe output lines whose handling threw after they were counted (a bug: the log has the error); the read went on.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    maps: new Counter({
      name: 'conntrack_observer_probe_map_records_total',
      help: 'Count maps the probe printed (and clearings it announced) that were read.',
      labelNames: ['probe'],
      registers: [registry],
    }),
    lost: new Counter({
      name: 'conntrack_observer_probe_events_lost_total',
      help: 'Events the kernel dropped before the probe read them (bpftrace lost_events: perf ring buffer full). probe="combined": lost by the one bpftrace process running every probe.',
      labelNames: ['probe'],
      registers: [registry],
    }),
  };
}
