import type { NodeDiagnosis } from '../../events/diagnosis.js';
import { ReproduceError } from './errors.js';
import {
  locateRaceGenerators,
  type GeneratorLocations,
  type LocatedGenerators,
} from './generators.js';
import { readLabCounters } from './lab-counters.js';
import {
  createRaceLab,
  raceLabAddresses,
  removeStaleRaceLabs,
  type RaceLab,
  type RaceLabDependencies,
} from './race-lab.js';
import { dnatClashArgs, parseGeneratorSummary, SourcePorts, snatRaceArgs } from './race-batches.js';
import { raceUntil, type Drive } from './race-until.js';
import { judgeScenario, type ReproducedScenario } from './verdict.js';

export interface ReproduceReport {
  /** The namespaces the lab created; all removed again before the report is printed. */
  readonly namespaces: readonly string[];
  /** Namespaces of an earlier run's lab whose owner was gone, removed first. */
  readonly staleRemoved: readonly string[];
  readonly secondsPerScenario: number;
  readonly generators: { readonly origin: LocatedGenerators['origin']; readonly dir: string };
  readonly scenarios: readonly ReproducedScenario[];
}

export interface ReproduceDependencies extends RaceLabDependencies {
  readonly generators: GeneratorLocations;
  readonly nowMs: () => number;
  /** SIGINT/SIGTERM: stops the race under way; the lab is removed all the same. */
  readonly signal?: AbortSignal;
}

/** Enough to call it: a handful of events is a verdict, not luck (about 10 % of the time bound on this kernel). */
const NEEDED = { snat: 20, dnat: 10 } as const;

/**
 * `doctor --reproduce`: builds a throw-away lab on the node, races both ways for at most
 * `secondsPerScenario` each and reports what this kernel did. The lab is removed on every way
 * out, including an abort; what a SIGKILLed run left is removed by the next run first.
 */
export async function runReproduce(
  deps: ReproduceDependencies,
  secondsPerScenario: number,
  node: NodeDiagnosis | undefined,
): Promise<ReproduceReport> {
  const staleRemoved = await removeStaleRaceLabs(deps);
  // Before any namespace exists: a node without generators gets no lab at all.
  const generators = await locateRaceGenerators(deps.run, deps.generators);
  interrupted(deps.signal);
  const lab = await createRaceLab(deps);
  try {
    interrupted(deps.signal);
    const maxMs = secondsPerScenario * 1000;
    const snat = await raceSnat(deps, lab, generators, maxMs);
    interrupted(deps.signal);
    const dnat = await raceDnat(deps, lab, generators, maxMs);
    return {
      namespaces: Object.values(lab.namespaces),
      staleRemoved,
      secondsPerScenario,
      generators: { origin: generators.origin, dir: generators.dir },
      scenarios: [
        judgeScenario(snat.race, snat.hasClashResolve, node),
        judgeScenario(dnat.race, dnat.hasClashResolve, node),
      ],
    };
  } finally {
    await lab.destroy();
  }
}

function interrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw new ReproduceError('REPRODUCE_INTERRUPTED', 'interrupted; the lab was removed');
}

async function raceWith(
  deps: ReproduceDependencies,
  lab: RaceLab,
  drive: Drive,
  needed: number,
  maxMs: number,
) {
  let hasClashResolve = true;
  const readCounters = async () => {
    const reading = await readLabCounters(deps.run, lab.namespaces.node);
    hasClashResolve = reading.hasClashResolve;
    return reading.totals;
  };
  const race = await raceUntil(readCounters, drive, {
    needed,
    maxMs,
    // The time bound decides, not a round count that could end a slow machine's run early.
    maxRounds: Number.MAX_SAFE_INTEGER,
    nowMs: deps.nowMs,
    signal: deps.signal,
  });
  return { race, hasClashResolve };
}

function batchTimeoutMs(rounds: number): number {
  // A round takes well under a millisecond; this only bounds a generator that hangs.
  return 30_000 + rounds;
}

function raceSnat(
  deps: ReproduceDependencies,
  lab: RaceLab,
  generators: LocatedGenerators,
  maxMs: number,
) {
  const ports = new SourcePorts();
  const { pod1, pod2 } = lab.namespaces;
  // Which CPU gets there first can favour one side: swap the pods' CPUs every batch.
  const order = (index: number): [string, string] =>
    index % 2 === 0 ? [pod1, pod2] : [pod2, pod1];
  return raceWith(
    deps,
    lab,
    {
      scenario: 'snat-race',
      counter: 'insert_failed',
      counted: 'insert failures',
      defaultMaxRounds: Number.MAX_SAFE_INTEGER,
      defaultFirstBatch: 100,
      maxBatch: 5_000,
      runBatch: async (rounds, index) =>
        parseGeneratorSummary(
          'snat-race',
          // Started inside a pod namespace, so that the lab's removal finds and kills it.
          await lab.exec(
            'pod1',
            generators.paths['snat-race'],
            snatRaceArgs(
              order(index),
              raceLabAddresses.dnsBackends[0],
              ports.reserve(rounds),
              rounds,
            ),
            { timeoutMs: batchTimeoutMs(rounds), signal: deps.signal },
          ),
        ),
    },
    NEEDED.snat,
    maxMs,
  );
}

function raceDnat(
  deps: ReproduceDependencies,
  lab: RaceLab,
  generators: LocatedGenerators,
  maxMs: number,
) {
  return raceWith(
    deps,
    lab,
    {
      scenario: 'dnat-clash',
      counter: 'clash_resolve',
      // A kernel that drops the clash counts insert_failed instead: either one is the answer.
      alsoCounts: ['insert_failed'],
      counted: 'clashes',
      defaultMaxRounds: Number.MAX_SAFE_INTEGER,
      defaultFirstBatch: 500,
      maxBatch: 10_000,
      runBatch: async (rounds) =>
        parseGeneratorSummary(
          'dnat-clash',
          await lab.exec(
            'pod1',
            generators.paths['dnat-clash'],
            dnatClashArgs(lab.namespaces.pod1, raceLabAddresses.clusterDns, rounds),
            { timeoutMs: batchTimeoutMs(rounds), signal: deps.signal },
          ),
        ),
    },
    NEEDED.dnat,
    maxMs,
  );
}
