import { Gauge, type Registry } from 'prom-client';
import { type ActiveProbeMode, activeProbeModes } from './probe-modes.js';

/**
 * Registers `conntrack_observer_probe_mode{mode}`: 1 for the active mode, 0 for the others,
 * so a query for a given mode finds a series whichever mode runs.
 */
export function registerProbeModeGauge(registry: Registry, active: ActiveProbeMode): Gauge<'mode'> {
  const gauge = new Gauge({
    name: 'conntrack_observer_probe_mode',
    help: 'Probe mode in use (1) chosen at start-up from --probe-mode and the kernel capabilities',
    labelNames: ['mode'],
    registers: [registry],
  });
  for (const mode of activeProbeModes) gauge.set({ mode }, mode === active ? 1 : 0);
  return gauge;
}
