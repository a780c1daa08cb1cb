import { ReproduceError } from './errors.js';
import type { LabCommandOutcome } from './lab-runner.js';
import type { Batch } from './race-until.js';

/** What a race generator prints last: `{"rounds":R,"sent":S,"sendErrors":E,…}`. */
export function parseGeneratorSummary(name: string, outcome: LabCommandOutcome): Batch {
  const last = outcome.stdout.trim().split('\n').pop() ?? '';
  let summary: { rounds?: unknown; sent?: unknown; sendErrors?: unknown } = {};
  try {
    summary = JSON.parse(last) as typeof summary;
  } catch {
    // Reported below with what the generator said.
  }
  if (
    outcome.exitCode !== 0 ||
    typeof summary.rounds !== 'number' ||
    typeof summary.sent !== 'number'
  ) {
    throw new ReproduceError(
      outcome.failure?.includes('cancel') ? 'REPRODUCE_INTERRUPTED' : 'REPRODUCE_LAB_FAILED',
      `${name} failed: ${outcome.failure ?? (outcome.stderr.trim() || last || `exit ${outcome.exitCode}`)}`,
    );
  }
  return {
    rounds: summary.rounds,
    datagramsSent: summary.sent,
    sendErrors: typeof summary.sendErrors === 'number' ? summary.sendErrors : 0,
  };
}

/**
 * Arguments of `snat-race`: both pods' senders, the first on CPU 0 and the second on CPU 1,
 * bind the same source port (a new one each round, from `ports`) and send to one upstream.
 */
export function snatRaceArgs(
  pods: readonly [string, string],
  destination: string,
  ports: { readonly base: number; readonly span: number },
  rounds: number,
): string[] {
  return [
    pods[0],
    pods[1],
    destination,
    '53',
    String(ports.base),
    String(ports.span),
    String(rounds),
    '0',
  ];
}

/** Arguments of `dnat-clash`: one socket in the pod, two threads sending to the ClusterIP. */
export function dnatClashArgs(pod: string, clusterIp: string, rounds: number): string[] {
  return [pod, clusterIp, '53', String(rounds)];
}

/**
 * Source ports for the SNAT race, never reused within one lab before 20,000 others: a port
 * whose entries are still in the table would make the next round race with old entries.
 */
export class SourcePorts {
  private next = 10_000;
  reserve(count: number): { base: number; span: number } {
    const span = Math.max(1, Math.min(count, 20_000));
    if (this.next + span > 30_000) this.next = 10_000;
    const base = this.next;
    this.next += span;
    return { base, span };
  }
}
