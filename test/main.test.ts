import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { startFakeApiServer } from './support/fake-apiserver.js';
import { httpGet, httpsGet } from './sinks/metrics/https-get.js';

/** Runs the agent's entry point as an operator would, with no ambient Kubernetes settings. */
function runMain(argv: readonly string[]) {
  return execa('node', ['--import', 'tsx', 'src/main.ts', ...argv], {
    reject: false,
    timeout: 60_000,
    env: { KUBECONFIG: '', NODE_NAME: '', METRICS_AUTH: '' },
  });
}

describe('the entry point refuses an unusable /metrics security setting', () => {
  it('exits 2 with one line when --metrics-auth kubernetes has no Kubernetes configuration', async () => {
    const result = await runMain(['--metrics-auth', 'kubernetes']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^conntrack-race-observer: --metrics-auth kubernetes needs a Kubernetes configuration/,
      ),
    ]);
  });

  it('exits 2 on a certificate without its key', async () => {
    const result = await runMain(['--metrics-auth', 'kubernetes', '--tls-cert-file', '/x.crt']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/--tls-cert-file and --tls-private-key-file go together/);
  });

  it('exits 1 naming the certificate file it cannot read, before serving anything', async () => {
    const fake = await startFakeApiServer();
    try {
      const result = await runMain([
        '--kubeconfig',
        await fake.kubeConfigFile(),
        '--node-name',
        'node-a',
        '--probe-mode',
        'counters-only',
        '--listen',
        '127.0.0.1:0',
        '--metrics-auth',
        'kubernetes',
        '--tls-cert-file',
        '/nonexistent/tls.crt',
        '--tls-private-key-file',
        '/nonexistent/tls.key',
      ]);
      expect(result.exitCode).toBe(1);
      const fatal = result.stdout
        .split('\n')
        .filter((line) => line.includes('"level":60'))
        .map((line) => (JSON.parse(line) as { msg: string }).msg);
      expect(fatal).toEqual([
        expect.stringMatching(/^cannot read TLS certificate \/nonexistent\/tls\.crt/),
      ]);
      expect(result.stdout).not.toContain('serving /metrics');
      expect(fake.watcherCount()).toBe(0);
    } finally {
      await fake.close();
    }
  });
});

describe('the entry point with --metrics-auth kubernetes', () => {
  it('serves /metrics over HTTPS to an allowed token only, the probes without one', async () => {
    const fake = await startFakeApiServer({ nodes: [{ metadata: { name: 'node-a' } }] });
    fake.addTokenUser('prometheus-token', { username: 'prometheus' });
    fake.grantNonResource({ subject: 'prometheus', path: '/metrics', verbs: ['get'] });
    const agent = execa(
      'node',
      [
        '--import',
        'tsx',
        'src/main.ts',
        '--kubeconfig',
        await fake.kubeConfigFile(),
        '--node-name',
        'node-a',
        '--probe-mode',
        'counters-only',
        '--listen',
        '127.0.0.1:0',
        '--metrics-auth',
        'kubernetes',
      ],
      { reject: false, timeout: 60_000, env: { KUBECONFIG: '', NODE_NAME: '', METRICS_AUTH: '' } },
    );
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const lines = createInterface({ input: agent.stdout! });
        lines.on('line', (line) => {
          const record = JSON.parse(line) as { msg: string; address?: { port: number } };
          if (record.msg === 'serving /metrics, /healthz and /readyz')
            resolve(record.address!.port);
        });
        agent.then((result) => reject(new Error(`agent exited: ${result.stderr}`)), reject);
      });
      const base = `https://127.0.0.1:${port}`;
      expect((await httpsGet(`${base}/healthz`)).status).toBe(200);
      expect([200, 503]).toContain((await httpsGet(`${base}/readyz`)).status);
      expect((await httpsGet(`${base}/metrics`)).status).toBe(401);
      const allowed = await httpsGet(`${base}/metrics`, {
        authorization: 'Bearer prometheus-token',
      });
      expect(allowed.status).toBe(200);
      expect(allowed.body).toContain('conntrack_observer_build_info');
      await expect(httpGet(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      agent.kill('SIGTERM');
      await agent;
      await fake.close();
    }
  });
});
