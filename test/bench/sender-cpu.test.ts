import { runSecondsOf, softirqThreadOf, watchRunTime } from '../../bench/sender-cpu.js';

describe("the sender CPU's run time", () => {
  it('reads the run time in nanoseconds, the first figure of schedstat', () => {
    expect(runSecondsOf('3641213608 14831994118 81271\n')).toBeCloseTo(3.641213608, 9);
  });

  it('says what it could not read', () => {
    expect(() => runSecondsOf('')).toThrow('not a schedstat line: ""');
    expect(() => runSecondsOf('-1 2 3')).toThrow('not a schedstat line');
  });

  it("finds CPU 0's ksoftirqd on this machine and times it from zero", async () => {
    const pid = await softirqThreadOf(0);
    expect(pid).toBeGreaterThan(1);
    const elapsed = await watchRunTime(pid);
    expect(await elapsed()).toBeGreaterThanOrEqual(0);
  });

  it('names a CPU that has no ksoftirqd', async () => {
    await expect(softirqThreadOf(4096)).rejects.toThrow('no ksoftirqd/4096 thread in /proc');
  });
});
