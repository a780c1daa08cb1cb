import { ReproduceError } from '../../../src/diagnose/reproduce/errors.js';
import type { LabCommandOutcome, LabRunner } from '../../../src/diagnose/reproduce/lab-runner.js';
import { labNamespace, parseLabNamespace } from '../../../src/diagnose/reproduce/lab-names.js';
import {
  createRaceLab,
  removeStaleRaceLabs,
  type RaceLabDependencies,
} from '../../../src/diagnose/reproduce/race-lab.js';

const ok = (stdout = ''): LabCommandOutcome => ({
  exitCode: 0,
  stdout,
  stderr: '',
  failure: undefined,
});

/**
 * A machine that only knows `ip netns`: it keeps the list of namespaces, records every command
 * and fails the command `failOn` matches.
 */
function fakeMachine(
  options: { existing?: string[]; failOn?: RegExp; pids?: Record<string, number[]> } = {},
) {
  const namespaces = new Set(options.existing ?? []);
  const commands: string[][] = [];
  const killed: number[] = [];
  const run: LabRunner = async (file, args) => {
    commands.push([file, ...args]);
    const line = [file, ...args].join(' ');
    if (options.failOn?.test(line))
      return {
        exitCode: 1,
        stdout: '',
        stderr: 'RTNETLINK answers: File exists',
        failure: undefined,
      };
    if (file === 'ip' && args[0] === 'netns') {
      const name = args[1] === 'list' ? undefined : args[2];
      if (args[1] === 'add' && name) namespaces.add(name);
      if (args[1] === 'delete' && name) namespaces.delete(name);
      if (args[1] === 'list') return ok([...namespaces].map((n) => `${n} (id: 1)`).join('\n'));
      if (args[1] === 'pids' && name) return ok((options.pids?.[name] ?? []).join('\n'));
    }
    return ok();
  };
  const deps: RaceLabDependencies = {
    run,
    pid: 4242,
    labId: () => 'a1b2c3',
    kill: (pid) => {
      killed.push(pid);
    },
    isAlive: (pid) => pid === 777,
    sleep: async () => undefined,
  };
  return { deps, namespaces, commands, killed };
}

describe('the reproduce lab', () => {
  it('names its namespaces after its owner, and knows them apart from every other name', () => {
    expect(labNamespace(4242, 'a1b2c3', 'node')).toBe('cro-repro-4242-a1b2c3-node');
    expect(parseLabNamespace('cro-repro-4242-a1b2c3-pod2')).toEqual({
      ownerPid: 4242,
      labId: 'a1b2c3',
      role: 'pod2',
    });
    for (const other of [
      'cro1a2b3c-node',
      'cro-repro-4242-a1b2c3-node2',
      'cni-1234',
      'cro-repro-x-a1b2c3-up',
    ])
      expect(parseLabNamespace(other)).toBeUndefined();
  });

  it('touches nothing but its own namespaces: every command names one of them', async () => {
    const machine = fakeMachine();
    const lab = await createRaceLab(machine.deps);
    const ours = new Set(Object.values(lab.namespaces));
    expect([...machine.namespaces].sort()).toEqual([...ours].sort());
    for (const command of machine.commands) {
      expect(command[0]).toBe('ip');
      const [verb, sub, name] = command.slice(1);
      // `ip -n NAME …`, `ip netns exec|add NAME …`: the root namespace is never the target.
      const target = verb === '-n' ? sub : name;
      expect({ command: command.join(' '), ours: ours.has(target ?? '') }).toEqual({
        command: command.join(' '),
        ours: true,
      });
    }
    // Veth peers are created straight into a lab namespace, never in the root one.
    const veths = machine.commands.filter((c) => c.includes('veth'));
    expect(veths).toHaveLength(3);
    for (const veth of veths) expect(ours.has(veth[veth.indexOf('netns') + 1] ?? '')).toBe(true);

    expect((await lab.destroy()).sort()).toEqual([...ours].sort());
    expect(machine.namespaces.size).toBe(0);
    // Idempotent: a second destroy (the finally after an abort handler) runs no command.
    const commandsSoFar = machine.commands.length;
    await lab.destroy();
    expect(machine.commands).toHaveLength(commandsSoFar);
  });

  it('removes what it built when a step fails, and says why with a stable code', async () => {
    const machine = fakeMachine({ failOn: /iptables-restore/ });
    const failure = await createRaceLab(machine.deps).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ReproduceError);
    expect((failure as ReproduceError).code).toBe('REPRODUCE_LAB_FAILED');
    expect(machine.namespaces.size).toBe(0);
  });

  it("removes a lab whose owner is gone, killing what still runs in it; a live owner's lab and other namespaces stay", async () => {
    const dead = ['node', 'pod1', 'pod2', 'up'].map((role) => `cro-repro-555-000001-${role}`);
    const live = 'cro-repro-777-000002-node';
    const machine = fakeMachine({
      existing: [...dead, live, 'cni-0f3e', 'cro1a2b3c-node'],
      pids: { 'cro-repro-555-000001-pod1': [9001] },
    });
    expect(await removeStaleRaceLabs(machine.deps)).toEqual([...dead].sort());
    expect(machine.killed).toEqual([9001]);
    expect([...machine.namespaces].sort()).toEqual([
      'cni-0f3e',
      'cro-repro-777-000002-node',
      'cro1a2b3c-node',
    ]);
  });
});
