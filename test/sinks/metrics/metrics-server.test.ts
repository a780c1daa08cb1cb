import { Counter, Registry } from 'prom-client';
import {
  MetricsServer,
  type MetricsServerOptions,
} from '../../../src/sinks/metrics/metrics-server.js';

async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server = new MetricsServer(options);
  await server.start();
  return server;
}

describe('metrics server', () => {
  it('serves metrics, health and readiness, and says why it is not ready', async () => {
    const registry = new Registry();
    new Counter({ name: 'conntrack_observer_test_total', help: 'test', registers: [registry] }).inc(
      3,
    );
    let ready = false;
    const server = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      readiness: () => ({ ready, detail: ready ? 'probes attached' : 'waiting for probe x' }),
    });
    const base = `http://127.0.0.1:${server.address.port}`;
    try {
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('conntrack_observer_test_total 3');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const notReady = await fetch(`${base}/readyz`);
      expect([notReady.status, await notReady.text()]).toEqual([
        503,
        'not ready: waiting for probe x\n',
      ]);
      ready = true;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/nope`)).status).toBe(404);
    } finally {
      await server.stop();
    }
  });

  it('fails to start with a clear error when the address is taken', async () => {
    const registry = new Registry();
    const first = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      readiness: () => ({ ready: true, detail: '' }),
    });
    try {
      await expect(
        startMetricsServer({
          host: '127.0.0.1',
          port: first.address.port,
          registry,
          readiness: () => ({ ready: true, detail: '' }),
        }),
      ).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.stop();
    }
  });
});
