import type { ConntrackStats } from './kernel-counters.js';
import { raceUntil, RaceShortfallError, type Drive } from './scenarios/race-until.js';

/**
 * A kernel whose insert_failed rises by one every `roundsPerHit` rounds, and a drive whose
 * batches race on it and take `msPerRound` on a manual clock.
 */
function fakeRace(roundsPerHit: number, options: { startAt?: number; msPerRound?: number } = {}) {
  let clockMs = 0;
  let totalRounds = 0;
  const startAt = options.startAt ?? 0;
  const batches: number[] = [];
  const lines: string[] = [];
  const counters = async (): Promise<ConntrackStats> => ({
    insert_failed: startAt + (roundsPerHit === 0 ? 0 : Math.floor(totalRounds / roundsPerHit)),
    drop: 0,
  });
  const drive: Drive = {
    scenario: 'snat-race',
    counter: 'insert_failed',
    counted: 'insert failures',
    defaultMaxRounds: 20_000,
    defaultFirstBatch: 100,
    maxBatch: 5_000,
    runBatch: async (rounds) => {
      batches.push(rounds);
      totalRounds += rounds;
      clockMs += rounds * (options.msPerRound ?? 0);
      return { rounds, datagramsSent: 2 * rounds, sendErrors: 0 };
    },
  };
  return {
    counters,
    drive,
    batches,
    lines,
    common: { label: 'unit', report: (line: string) => lines.push(line), nowMs: () => clockMs },
  };
}

describe('raceUntil', () => {
  it('races in batches until the kernel counted what is needed and reports the delta since it started', async () => {
    const race = fakeRace(10, { startAt: 1234 });

    const result = await raceUntil(race.counters, race.drive, { needed: 20, ...race.common });

    expect(result.kernel['insert_failed']).toBeGreaterThanOrEqual(20);
    expect(result.rounds).toBe(race.batches.reduce((sum, rounds) => sum + rounds, 0));
    expect(result.rounds).toBeGreaterThanOrEqual(200);
    expect(result.batches).toBe(race.batches.length);
    expect(result.datagramsSent).toBe(2 * result.rounds);
    // The first batch gives the rate; the next is sized from it, not a blind doubling.
    expect(race.batches).toEqual([100, 150]);
    expect(race.lines).toEqual([
      expect.stringMatching(/^race ok snat-race: 25 of 20 insert failures after 250 rounds/),
    ]);
  });

  it('doubles the batch while nothing is counted, up to the largest batch', async () => {
    const race = fakeRace(0);

    await expect(
      raceUntil(race.counters, race.drive, { needed: 1, maxRounds: 20_000, ...race.common }),
    ).rejects.toThrow(RaceShortfallError);

    expect(race.batches.slice(0, 7)).toEqual([100, 200, 400, 800, 1600, 3200, 5000]);
  });

  it('gives up at the round bound saying how far it got', async () => {
    const race = fakeRace(1000);

    const failure = raceUntil(race.counters, race.drive, {
      needed: 20,
      maxRounds: 12_000,
      ...race.common,
    });

    await expect(failure).rejects.toThrow(
      /^snat-race: 12 of 20 insert failures after 12,000 rounds in \d+ batches, 0\.0 s \(bound 12,000 rounds or 60 s\)$/,
    );
    expect(race.lines[0]).toMatch(/^race SHORT snat-race: 12 of 20 .* \[unit\]$/);
  });

  it('gives up at the time bound, checked between batches', async () => {
    const race = fakeRace(1000, { msPerRound: 5 });

    const error = await raceUntil(race.counters, race.drive, {
      needed: 20,
      maxMs: 45_000,
      ...race.common,
    }).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(RaceShortfallError);
    const { result } = error as RaceShortfallError;
    expect(result.durationMs).toBeGreaterThanOrEqual(45_000);
    expect(result.rounds).toBeLessThan(20_000);
    expect((error as Error).message).toContain(
      `after ${result.rounds.toLocaleString('en-US')} rounds`,
    );
    expect((error as Error).message).toContain('(bound 20,000 rounds or 45 s)');
  });

  it("keeps racing until the test's own condition holds, and names it when it never does", async () => {
    const race = fakeRace(10);
    let checks = 0;

    const result = await raceUntil(race.counters, race.drive, {
      needed: 5,
      stillMissing: () => (++checks < 3 ? 'pod2 lost 0 of 1' : undefined),
      ...race.common,
    });
    expect(checks).toBe(3);
    expect(result.batches).toBe(3);

    const never = fakeRace(10);
    await expect(
      raceUntil(never.counters, never.drive, {
        needed: 5,
        maxRounds: 1000,
        stillMissing: () => 'pod2 lost 0 of 1',
        ...never.common,
      }),
    ).rejects.toThrow(
      /^snat-race: 100 of 5 insert failures \(still missing: pod2 lost 0 of 1\) after 1,000 rounds/,
    );
  });

  it('refuses a needed count that is not a positive integer', async () => {
    const race = fakeRace(10);
    await expect(raceUntil(race.counters, race.drive, { needed: 0 })).rejects.toThrow(
      'needed must be a positive integer',
    );
  });
});
