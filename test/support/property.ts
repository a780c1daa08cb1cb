import fc from 'fast-check';

/**
 * The seed of every property test unless `PROPERTY_SEED` says otherwise: the unit suite then
 * checks the same cases on every run and machine, and a failure in CI is a failure at home.
 */
const DEFAULT_SEED = 20_260_512;

/**
 * Parameters of every property test. A failure prints the seed and the path of the smallest
 * counterexample; `PROPERTY_SEED=<seed> PROPERTY_PATH=<path>` replays exactly that case.
 * `PROPERTY_SEED=random` and a larger `PROPERTY_RUNS` hunt further; the default number of runs
 * keeps the unit suite fast.
 */
export function propertyParameters<T>(defaultRuns: number): fc.Parameters<T> {
  const seed = process.env.PROPERTY_SEED;
  const path = process.env.PROPERTY_PATH;
  const runs = process.env.PROPERTY_RUNS;
  return {
    numRuns: runs === undefined ? defaultRuns : Number(runs),
    ...(seed === 'random' ? {} : { seed: seed === undefined ? DEFAULT_SEED : Number(seed) }),
    ...(path === undefined ? {} : { path }),
  };
}
