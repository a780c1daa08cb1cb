import type { NodeDiagnosis } from '../../events/diagnosis.js';
import { adviceFor } from '../remedies.js';
import type { Remedy } from '../../events/advice.js';
import type { RaceUntilResult } from './race-until.js';

export type VerdictId =
  | 'drops-snat-races'
  | 'no-snat-drop-seen'
  | 'drops-dnat-clashes'
  | 'resolves-dnat-clashes'
  | 'no-dnat-clash-seen';

export interface ReproducedScenario {
  readonly scenario: 'snat-race' | 'dnat-clash';
  readonly rounds: number;
  readonly batches: number;
  readonly durationMs: number;
  readonly datagramsSent: number;
  readonly sendErrors: number;
  /** Datagrams the kernel of the lab's node dropped on a clash. */
  readonly dropped: number;
  /** Clashes it resolved without a drop. */
  readonly resolved: number;
  /** The deltas of the lab node's counters the two figures come from. */
  readonly kernel: Readonly<Record<string, number>>;
  readonly hasClashResolveCounter: boolean;
  /** Whether it raced until enough was counted (else it stopped at the time bound). */
  readonly enough: boolean;
  readonly verdict: { readonly id: VerdictId; readonly text: string };
  readonly remedies: readonly Remedy[];
  readonly notes: readonly string[];
}

const KERNEL_COLUMNS = ['insert_failed', 'clash_resolve', 'drop'] as const;

/**
 * Drops and resolved clashes from the counter deltas. From 5.10 on, insert_failed counts drops
 * and clash_resolve the resolved clashes. Before, insert_failed counted both and only a
 * failed resolution also counted `drop`; the lab's node has no other traffic that could.
 */
export function dropsAndResolved(
  kernel: Readonly<Record<string, number>>,
  hasClashResolve: boolean,
): { dropped: number; resolved: number } {
  const insertFailed = kernel.insert_failed ?? 0;
  if (hasClashResolve) return { dropped: insertFailed, resolved: kernel.clash_resolve ?? 0 };
  const dropped = kernel.drop ?? 0;
  return { dropped, resolved: Math.max(0, insertFailed - dropped) };
}

const n = (value: number): string => value.toLocaleString('en-US');
const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** The kernel's counters the report shows, those this kernel has. */
function reportedColumns(counters: RaceUntilResult['kernel']): Record<string, number> {
  const kernel: Record<string, number> = {};
  for (const column of KERNEL_COLUMNS) {
    const value = counters[column];
    if (value !== undefined) kernel[column] = value;
  }
  return kernel;
}

/** The verdict on one scenario and the remedies that apply to this node. Pure. */
export function judgeScenario(
  race: RaceUntilResult,
  hasClashResolve: boolean,
  node: NodeDiagnosis | undefined,
): ReproducedScenario {
  const { dropped, resolved } = dropsAndResolved(race.kernel, hasClashResolve);
  const kernel = reportedColumns(race.kernel);
  const measured = `in ${n(race.rounds)} rounds (${s(race.durationMs)})`;
  const diagnosis = {
    pod: { status: 'unknown' as const, reason: 'lab' },
    node: node ?? { status: 'unknown' as const, reason: 'not read' },
  };
  let verdict: ReproducedScenario['verdict'];
  let remedies: readonly Remedy[] = [];
  const notes: string[] = [];
  if (race.scenario === 'snat-race') {
    if (dropped > 0) {
      verdict = {
        id: 'drops-snat-races',
        text: `this kernel drops SNAT races: ${n(dropped)} datagram(s) lost to a pod that took the same source port at the same instant, ${measured}`,
      };
      const advice = adviceFor(
        { race: 'snat', protocol: 'udp', dns: true, dnsRaceLike: false },
        diagnosis,
      );
      remedies = advice.remedies.filter((r) => r.id === 'random-fully');
      notes.push(...advice.notes.filter((note) => !note.startsWith('Diagnosis unknown')));
    } else {
      verdict = {
        id: 'no-snat-drop-seen',
        text: `no SNAT race dropped a datagram ${measured}${resolved > 0 ? `; ${n(resolved)} resolved` : ''}`,
      };
    }
    notes.push(
      "The lab masquerades without --random-fully; the node's own rules decide how often its pods meet this race.",
    );
  } else if (dropped > 0) {
    verdict = {
      id: 'drops-dnat-clashes',
      text: `this kernel drops DNAT clashes: ${n(dropped)} of the datagrams one socket sent in parallel to a ClusterIP dropped, ${n(resolved)} resolved, ${measured}`,
    };
    remedies = adviceFor(
      { race: 'dnat', protocol: 'udp', dns: true, dnsRaceLike: true },
      diagnosis,
    ).remedies;
  } else if (resolved > 0) {
    verdict = {
      id: 'resolves-dnat-clashes',
      text: `this kernel resolves DNAT clashes: ${n(resolved)} resolved, none dropped, ${measured}`,
    };
  } else {
    verdict = {
      id: 'no-dnat-clash-seen',
      text: `no DNAT clash happened ${measured}: no verdict on this kernel's clash resolution`,
    };
  }
  if (!hasClashResolve) {
    notes.push(
      'This kernel has no clash_resolve counter (before 5.10): resolved clashes are insert_failed minus drop.',
    );
  }
  return {
    scenario: race.scenario,
    rounds: race.rounds,
    batches: race.batches,
    durationMs: race.durationMs,
    datagramsSent: race.datagramsSent,
    sendErrors: race.sendErrors,
    dropped,
    resolved,
    kernel,
    hasClashResolveCounter: hasClashResolve,
    enough: race.reached,
    verdict,
    remedies,
    notes,
  };
}
