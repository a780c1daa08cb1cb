import { describe, expect, it } from '@jest/globals';
import { LifecycleStack, type Lifecycle } from '../../src/shared/lifecycle.js';

/** A part that records its starts and stops in a shared journal. */
function part(
  name: string,
  journal: string[],
  behaviour: { failStart?: boolean; failStop?: boolean; waitingFor?: string } = {},
): Lifecycle {
  return {
    name,
    start: async () => {
      journal.push(`start ${name}`);
      if (behaviour.failStart) throw new Error(`${name} cannot start`);
    },
    stop: async () => {
      journal.push(`stop ${name}`);
      if (behaviour.failStop) throw new Error(`${name} cannot stop`);
    },
    waitingFor: () => behaviour.waitingFor,
  };
}

describe('LifecycleStack', () => {
  it('stops the parts in the reverse order of their start', async () => {
    const journal: string[] = [];
    const stack = new LifecycleStack();
    for (const name of ['server', 'counters', 'probes']) await stack.push(part(name, journal));
    expect(await stack.stop()).toEqual([]);
    expect(journal).toEqual([
      'start server',
      'start counters',
      'start probes',
      'stop probes',
      'stop counters',
      'stop server',
    ]);
  });

  it('unwinds what was started when a part fails to start, then passes the error on', async () => {
    const journal: string[] = [];
    const stack = new LifecycleStack();
    await stack.push(part('server', journal));
    await stack.push(part('informers', journal));
    await expect(stack.push(part('probes', journal, { failStart: true }))).rejects.toThrow(
      'probes cannot start',
    );
    expect(journal).toEqual([
      'start server',
      'start informers',
      'start probes',
      'stop informers',
      'stop server',
    ]);
    await expect(stack.push(part('late', journal))).rejects.toThrow(/stopping/);
  });

  it('stops every part even when one fails to stop, and reports which', async () => {
    const journal: string[] = [];
    const stack = new LifecycleStack();
    await stack.push(part('server', journal));
    await stack.push(part('recorder', journal, { failStop: true }));
    await stack.push(part('probes', journal));
    const failures = await stack.stop();
    expect(failures.map((failure) => failure.part)).toEqual(['recorder']);
    expect(journal.slice(3)).toEqual(['stop probes', 'stop recorder', 'stop server']);
    expect(await stack.stop()).toBe(failures);
  });

  it('says what the started parts still wait for', async () => {
    const stack = new LifecycleStack();
    await stack.push(part('server', []));
    await stack.push(part('informers', [], { waitingFor: 'Kubernetes not synced: pods' }));
    expect(stack.waitingFor()).toEqual(['Kubernetes not synced: pods']);
  });

  it('aborts the signal it started the parts with once they are stopped', async () => {
    const stack = new LifecycleStack();
    let signal: AbortSignal | undefined;
    await stack.push({
      name: 'watcher',
      start: (given) => {
        signal = given;
      },
      stop: async () => {
        expect(signal?.aborted).toBe(false);
      },
    });
    await stack.stop();
    expect(signal?.aborted).toBe(true);
  });
});
