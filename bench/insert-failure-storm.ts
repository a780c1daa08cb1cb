import { createLab, startSnatRaceLoop } from '../test/lab/index.js';
import { startBuiltAgent } from './agent-process.js';
import { sumSamples } from './metrics-text.js';

/*
 * The same-port SNAT race of the lab (two pods, one source port, one upstream, each sender on
 * its own CPU) driven round after round for a fixed time with the built agent attached
 * (tracepoint mode), as fast as the generator goes. The kernel's own insert_failed delta in the
 * lab's node namespace is the truth; the agent's insert_failures_total must equal it, and its
 * cross-check must find nothing unexplained. Also timed: the agent's start, from spawning it to
 * `/readyz` answering 200 (compile and attach of the combined bpftrace program included).
 */
export interface InsertFailureStorm {
  readonly seconds: number;
  readonly rounds: number;
  readonly kernelInsertFailed: number;
  readonly agentCounted: number;
  readonly unexplained: number;
  readonly secondsToReady: number;
  /** Seconds from the generator's end until the agent's counts stopped moving. */
  readonly settleSeconds: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const INSERT_FAILURES = 'conntrack_observer_insert_failures_total';
const UNEXPLAINED = 'conntrack_observer_unexplained_insert_failures_total';

export async function measureInsertFailureStorm(seconds: number): Promise<InsertFailureStorm> {
  const lab = await createLab();
  try {
    const spawned = Date.now();
    const agent = await startBuiltAgent();
    const secondsToReady = (Date.now() - spawned) / 1000;
    try {
      await sleep(2_000);
      const before = await agent.metrics();
      const loop = await startSnatRaceLoop(lab, { intervalMs: 0 });
      await sleep(seconds * 1000);
      const result = await loop.stop();
      const ended = Date.now();
      // The probes print their maps once a second and the cross-check waits a 3 s grace:
      // wait until neither count has moved for 1.5 s, and at least 5 s.
      const moving = (text: string) =>
        sumSamples(text, INSERT_FAILURES) + sumSamples(text, UNEXPLAINED);
      let after = await agent.metrics();
      for (
        let still = 0;
        (still < 3 || Date.now() - ended < 5_000) && Date.now() - ended < 60_000;
      ) {
        await sleep(500);
        const next = await agent.metrics();
        still = moving(next) === moving(after) ? still + 1 : 0;
        after = next;
      }
      const delta = (name: string) => sumSamples(after, name) - sumSamples(before, name);
      return {
        seconds,
        rounds: result.rounds,
        kernelInsertFailed: result.kernel.insert_failed ?? 0,
        agentCounted: delta(INSERT_FAILURES),
        unexplained: delta(UNEXPLAINED),
        secondsToReady,
        settleSeconds: (Date.now() - ended) / 1000,
      };
    } finally {
      await agent.stop();
    }
  } finally {
    await lab.destroy();
  }
}
