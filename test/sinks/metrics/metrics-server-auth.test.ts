import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Counter, Registry } from 'prom-client';
import { kubernetesReviewApi } from '../../../src/sinks/metrics/kubernetes-review-api.js';
import {
  metricsSecurity,
  MetricsTlsError,
  type MetricsSecurityInput,
} from '../../../src/sinks/metrics/metrics-security.js';
import { MetricsServer } from '../../../src/sinks/metrics/metrics-server.js';
import { selfSignedCertificate } from '../../../src/sinks/metrics/self-signed-certificate.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { ManualClock } from '../../support/manual-clock.js';
import { httpGet, httpsGet } from './https-get.js';

const PROMETHEUS = 'system:serviceaccount:monitoring:prometheus';

describe('metrics server with --metrics-auth kubernetes', () => {
  let fake: FakeApiServer;
  let clock: ManualClock;
  let server: MetricsServer;
  let base: string;

  beforeEach(async () => {
    fake = await startFakeApiServer();
    fake.addTokenUser('prometheus-token', {
      username: PROMETHEUS,
      groups: ['system:serviceaccounts', 'system:serviceaccounts:monitoring'],
    });
    fake.addTokenUser('stranger-token', { username: 'system:serviceaccount:default:stranger' });
    fake.grantNonResource({ subject: PROMETHEUS, path: '/metrics', verbs: ['get'] });
    clock = new ManualClock();
    const registry = new Registry();
    new Counter({
      name: 'conntrack_observer_insert_failed_total',
      help: 'test',
      labelNames: ['namespace', 'pod'],
      registers: [registry],
    }).inc({ namespace: 'shop', pod: 'cart-0' }, 2);
    const security = await metricsSecurity({
      readText: (path) => readFile(path, 'utf8'),
      reviewApi: kubernetesReviewApi(fake.kubeConfig()),
      nowMs: () => clock.nowMs(),
    });
    server = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      readiness: () => ({ ready: true, detail: 'probes attached' }),
      ...security,
    });
    await server.start();
    base = `https://127.0.0.1:${server.address.port}`;
  });

  afterEach(async () => {
    await server.stop();
    await fake.close();
  });

  it('answers 401 without a token and to a token the API server rejects', async () => {
    const none = await httpsGet(`${base}/metrics`);
    expect([none.status, none.body]).toEqual([401, 'Unauthorized\n']);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect((await httpsGet(`${base}/metrics`, { authorization: 'Bearer forged' })).status).toBe(
      401,
    );
  });

  it('answers 403 to an authenticated user without get on /metrics', async () => {
    const answer = await httpsGet(`${base}/metrics`, { authorization: 'Bearer stranger-token' });
    expect([answer.status, answer.body]).toEqual([403, 'Forbidden\n']);
    expect(answer.body).not.toContain('conntrack_observer');
  });

  it("serves the agent's series to an allowed token", async () => {
    const answer = await httpsGet(`${base}/metrics`, { authorization: 'Bearer prometheus-token' });
    expect(answer.status).toBe(200);
    expect(answer.body).toContain(
      'conntrack_observer_insert_failed_total{namespace="shop",pod="cart-0"} 2',
    );
  });

  it('keeps /healthz and /readyz open without a token', async () => {
    expect(await httpsGet(`${base}/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
    expect(await httpsGet(`${base}/readyz`)).toMatchObject({
      status: 200,
      body: 'ready: probes attached\n',
    });
    expect(fake.reviewCount('tokenreviews')).toBe(0);
  });

  it('does not answer plain HTTP', async () => {
    const plain = `http://127.0.0.1:${server.address.port}`;
    for (const path of ['/metrics', '/healthz']) {
      await expect(httpGet(`${plain}${path}`)).rejects.toThrow();
    }
  });

  it('serves with a self-signed certificate when none is given', async () => {
    const answer = await httpsGet(`${base}/healthz`);
    expect(answer.peerCertificate?.subject?.CN).toBe('conntrack-race-observer');
    expect(answer.peerCertificate?.issuer?.CN).toBe('conntrack-race-observer');
  });

  it('asks the API server once per token while the decision holds, again after it expires', async () => {
    const scrape = () => httpsGet(`${base}/metrics`, { authorization: 'Bearer prometheus-token' });
    expect((await scrape()).status).toBe(200);
    expect((await scrape()).status).toBe(200);
    expect(fake.reviewCount('tokenreviews')).toBe(1);
    expect(fake.reviewCount('subjectaccessreviews')).toBe(1);
    clock.advance(120_001);
    expect((await scrape()).status).toBe(200);
    expect(fake.reviewCount('tokenreviews')).toBe(2);
    expect(fake.reviewCount('subjectaccessreviews')).toBe(2);
  });

  it('fails closed when the API server is unreachable', async () => {
    await fake.down();
    expect(
      (await httpsGet(`${base}/metrics`, { authorization: 'Bearer prometheus-token' })).status,
    ).toBe(401);
    expect((await httpsGet(`${base}/readyz`)).status).toBe(200);
  });
});

describe('metrics TLS configuration', () => {
  let dir: string;
  const input = (extra: Partial<MetricsSecurityInput>): MetricsSecurityInput => ({
    readText: (path) => readFile(path, 'utf8'),
    reviewApi: { reviewToken: async () => undefined, mayAccess: async () => false },
    nowMs: () => Date.now(),
    ...extra,
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'metrics-tls-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the given certificate', async () => {
    const pair = selfSignedCertificate({ commonName: 'given', nowMs: Date.now() });
    await writeFile(join(dir, 'tls.crt'), pair.cert);
    await writeFile(join(dir, 'tls.key'), pair.key);
    const security = await metricsSecurity(
      input({ tlsCertFile: join(dir, 'tls.crt'), tlsPrivateKeyFile: join(dir, 'tls.key') }),
    );
    expect(security.selfSigned).toBe(false);
    const server = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry: new Registry(),
      readiness: () => ({ ready: true, detail: '' }),
      ...security,
    });
    await server.start();
    try {
      const answer = await httpsGet(`https://127.0.0.1:${server.address.port}/healthz`);
      expect(answer.peerCertificate?.fingerprint256).toBe(
        new X509Certificate(pair.cert).fingerprint256,
      );
    } finally {
      await server.stop();
    }
  });

  it('fails with a clear error on a missing certificate file', async () => {
    const missing = join(dir, 'missing.crt');
    const attempt = metricsSecurity(input({ tlsCertFile: missing, tlsPrivateKeyFile: missing }));
    await expect(attempt).rejects.toBeInstanceOf(MetricsTlsError);
    await expect(attempt).rejects.toMatchObject({
      code: 'ERR_METRICS_TLS',
      message: expect.stringContaining(`cannot read TLS certificate ${missing}`),
    });
  });

  it('fails with a clear error on a key that does not match the certificate', async () => {
    const one = selfSignedCertificate({ commonName: 'one', nowMs: Date.now() });
    const two = selfSignedCertificate({ commonName: 'two', nowMs: Date.now() });
    await writeFile(join(dir, 'one.crt'), one.cert);
    await writeFile(join(dir, 'two.key'), two.key);
    await writeFile(join(dir, 'garbage.crt'), 'not a certificate');
    await expect(
      metricsSecurity(
        input({ tlsCertFile: join(dir, 'one.crt'), tlsPrivateKeyFile: join(dir, 'two.key') }),
      ),
    ).rejects.toThrow(/not a usable pair/);
    await expect(
      metricsSecurity(
        input({ tlsCertFile: join(dir, 'garbage.crt'), tlsPrivateKeyFile: join(dir, 'two.key') }),
      ),
    ).rejects.toThrow(/not a usable pair/);
  });
});
