/*
 * Kubernetes mode at scale: the built agent (`--probe-mode counters-only`, so no bpftrace and
 * no root: the figures are the Kubernetes side alone) against the fake API server of
 * test/support holding a large cluster. Reports time to ready, RSS and heap after a settle
 * window, the list and watch calls the agent makes at rest, and what it does when the API
 * server drops every connection and comes back (relists against resumed watches).
 */
import { readProcessTimes } from './proc-usage.js';
import { startBuiltAgent } from './agent-process.js';
import { startFakeApiServer, type CallCounts } from '../test/support/fake-apiserver.js';
import { LARGE_CLUSTER, scaleCluster, type ScaleShape } from '../test/support/k8s-scale.js';

export interface KubernetesScaleOptions {
  /** Which built agent: `dist/main.js` of this tree unless given (e.g. another checkout's). */
  readonly mainPath?: string;
  readonly label: string;
  readonly shape?: ScaleShape;
  readonly settleSeconds?: number;
  /** How long the API server stays down in the simulated restart. */
  readonly outageSeconds?: number;
  /** How long after the restart the calls are counted. */
  readonly afterRestartSeconds?: number;
}

export interface KubernetesScaleRun {
  readonly label: string;
  readonly shape: ScaleShape;
  readonly readySeconds: number;
  readonly settleSeconds: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** Calls during the settle window, after ready. */
  readonly atRest: CallCounts;
  readonly outageSeconds: number;
  readonly afterRestartSeconds: number;
  /** Calls from the restart to the end of the count: lists are relists. */
  readonly afterRestart: CallCounts;
  /** RSS at the end of the count after the restart. */
  readonly rssAfterRestartBytes: number;
}

const RESOURCES = ['pods', 'services', 'endpointslices', 'nodes'] as const;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const minus = (a: CallCounts, b: CallCounts): CallCounts => ({
  lists: a.lists - b.lists,
  pages: a.pages - b.pages,
  watches: a.watches - b.watches,
});

function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : Number.NaN;
}

export async function measureKubernetesScale(
  options: KubernetesScaleOptions,
): Promise<KubernetesScaleRun> {
  const shape = options.shape ?? LARGE_CLUSTER;
  const settleSeconds = options.settleSeconds ?? 30;
  const outageSeconds = options.outageSeconds ?? 2;
  const afterRestartSeconds = options.afterRestartSeconds ?? 30;
  const fake = await startFakeApiServer(scaleCluster(shape));
  // The seeding is history no watch needs: a watch from the list's resourceVersion replays none.
  fake.compact();
  const total = () => {
    const sum = { lists: 0, pages: 0, watches: 0 };
    for (const resource of RESOURCES) {
      const counts = fake.callCounts(resource);
      sum.lists += counts.lists;
      sum.pages += counts.pages;
      sum.watches += counts.watches;
    }
    return sum;
  };
  try {
    const kubeconfig = await fake.kubeConfigFile();
    const started = Date.now();
    const agent = await startBuiltAgent(
      ['--kubeconfig', kubeconfig, '--node-name', shape.nodeName],
      { probeMode: 'counters-only', mainPath: options.mainPath, readyTimeoutMs: 120_000 },
    );
    try {
      const readySeconds = (Date.now() - started) / 1000;
      // Ready is reported as the last watch is requested: the window starts once all are open.
      for (let i = 0; i < 100 && fake.watcherCount() < RESOURCES.length; i++) await sleep(100);
      const atReady = total();
      await sleep(settleSeconds * 1000);
      const atRest = minus(total(), atReady);
      const { rssBytes } = readProcessTimes(agent.pid);
      const heapUsedBytes = metricValue(
        await agent.metrics(),
        'conntrack_observer_nodejs_heap_size_used_bytes',
      );
      const beforeRestart = total();
      await fake.down();
      await sleep(outageSeconds * 1000);
      await fake.up();
      await sleep(afterRestartSeconds * 1000);
      const afterRestart = minus(total(), beforeRestart);
      const rssAfterRestartBytes = readProcessTimes(agent.pid).rssBytes;
      return {
        label: options.label,
        shape,
        readySeconds,
        settleSeconds,
        rssBytes,
        heapUsedBytes,
        atRest,
        outageSeconds,
        afterRestartSeconds,
        afterRestart,
        rssAfterRestartBytes,
      };
    } finally {
      await agent.stop();
    }
  } finally {
    await fake.close();
  }
}
