import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';
import { EventMetrics } from '../../../src/sinks/metrics/event-metrics.js';
import { kubernetesReviewApi } from '../../../src/sinks/metrics/kubernetes-review-api.js';
import { metricsSecurity } from '../../../src/sinks/metrics/metrics-security.js';
import { MetricsServer } from '../../../src/sinks/metrics/metrics-server.js';
import { podStoryLookup, type PodStory } from '../../../src/sinks/metrics/pod-story.js';
import { attributed, dnsDrop, insertFailure, podA } from '../../support/events.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { ManualClock } from '../../support/manual-clock.js';
import { eventDiagnosis } from '../../support/pod-diagnoses.js';
import { httpGet, httpsGet } from './https-get.js';

const PROMETHEUS = 'system:serviceaccount:monitoring:prometheus';

function countedMetrics(registry: Registry): EventMetrics {
  const metrics = new EventMetrics(registry);
  metrics.record(attributed(insertFailure({ race: 'snat' }), podA), true);
  metrics.record(attributed(insertFailure({ race: 'snat' }), podA), true);
  metrics.record(attributed(insertFailure({ race: 'dnat' }), podA), true);
  metrics.record(attributed(dnsDrop({ count: 5 }), podA), true);
  metrics.record(attributed(dnsDrop({ direction: 'response', count: 2 }), podA), true);
  metrics.record(attributed(insertFailure({ race: 'snat' })), true);
  return metrics;
}

function lookupOf(metrics: EventMetrics) {
  return podStoryLookup({
    nodeName: 'lab-node',
    counts: (namespace, name) => metrics.podCounts(namespace, name),
    uidOf: (namespace, name) =>
      namespace === podA.namespace && name === podA.name ? podA.uid : undefined,
    diagnosisOf: (uid) => (uid === podA.uid ? eventDiagnosis() : undefined),
  });
}

describe('GET /pods/<namespace>/<name>', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  it("serves a pod's counts by race and drop reason, its diagnosis and remedies", async () => {
    const registry = new Registry();
    const metrics = countedMetrics(registry);
    // A scrape hands the counts to prom-client: they stay the pod's.
    await registry.metrics();
    metrics.record(attributed(insertFailure({ race: 'snat' }), podA), true);
    const server = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      readiness: () => ({ ready: true, detail: '' }),
      podStory: lookupOf(metrics),
    });
    await server.start();
    stops.push(() => server.stop());
    const base = `http://127.0.0.1:${server.address.port}`;
    const answer = await httpGet(`${base}/pods/${podA.namespace}/${podA.name}`);
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json');
    const story = JSON.parse(answer.body) as PodStory;
    expect(story.counts).toEqual({
      insertFailures: { snat: 3, dnat: 1 },
      clashesResolved: {},
      dnsDrops: { NETFILTER_DROP: 7 },
    });
    expect(story.node).toBe('lab-node');
    expect(story.diagnosis.status).toBe('diagnosed');
    const reopen = story.remedies.find((r) => r.id === 'single-request-reopen');
    expect(reopen?.yaml).toBe(
      'spec:\n  dnsConfig:\n    options:\n      - name: ndots\n        value: "2"\n      - name: single-request-reopen\n',
    );
    expect(story.remedies.map((r) => r.id)).toContain('random-fully');

    const unknown = await httpGet(`${base}/pods/${podA.namespace}/nobody`);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toEqual({ error: 'pod not known to this agent' });
    expect((await httpGet(`${base}/pods/${podA.namespace}`)).status).toBe(404);
  });

  it('is protected exactly like /metrics when --metrics-auth is on', async () => {
    const fake: FakeApiServer = await startFakeApiServer();
    stops.push(() => fake.close());
    fake.addTokenUser('prometheus-token', { username: PROMETHEUS });
    fake.addTokenUser('stranger-token', { username: 'system:serviceaccount:default:stranger' });
    fake.grantNonResource({ subject: PROMETHEUS, path: '/metrics', verbs: ['get'] });
    const clock = new ManualClock();
    const registry = new Registry();
    const security = await metricsSecurity({
      readText: (path) => readFile(path, 'utf8'),
      reviewApi: kubernetesReviewApi(fake.kubeConfig()),
      nowMs: () => clock.nowMs(),
    });
    const server = new MetricsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      readiness: () => ({ ready: true, detail: '' }),
      ...security,
      podStory: lookupOf(countedMetrics(registry)),
    });
    await server.start();
    stops.push(() => server.stop());
    const base = `https://127.0.0.1:${server.address.port}`;
    for (const path of ['/metrics', `/pods/${podA.namespace}/${podA.name}`]) {
      expect((await httpsGet(`${base}${path}`)).status).toBe(401);
      expect(
        (await httpsGet(`${base}${path}`, { authorization: 'Bearer stranger-token' })).status,
      ).toBe(403);
      expect(
        (await httpsGet(`${base}${path}`, { authorization: 'Bearer prometheus-token' })).status,
      ).toBe(200);
    }
    // Unknown pods are told apart only once authorized.
    expect((await httpsGet(`${base}/pods/x/y`)).status).toBe(401);
  });
});
