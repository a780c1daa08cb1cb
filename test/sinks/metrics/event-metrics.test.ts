import { Registry } from 'prom-client';
import { EventMetrics } from '../../../src/sinks/metrics/event-metrics.js';
import type { LookupEnd } from '../../../src/events/lookup-end.js';
import {
  attributed,
  dnsDrop,
  dnsNoData,
  dnsLookups,
  dnsQuery,
  insertFailure,
  podA,
} from '../../support/events.js';
import { eventDiagnosis, muslSeed004Diagnosis } from '../../support/pod-diagnoses.js';

async function valuesOf(registry: Registry, name: string) {
  const metric = await registry.getSingleMetric(name)?.get();
  return metric?.values ?? [];
}

describe('event metrics', () => {
  it('counts insert failures by race kind and client, once per event', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure()), false);
    metrics.record(attributed(insertFailure()), false);
    metrics.record(attributed(insertFailure({ race: 'dnat' })), false);
    const values = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(values).toEqual(
      expect.arrayContaining([
        {
          value: 2,
          labels: { race: 'snat', source_ip: '10.244.0.2', namespace: '', pod: '', service: '' },
        },
        {
          value: 1,
          labels: { race: 'dnat', source_ip: '10.244.0.2', namespace: '', pod: '', service: '' },
        },
      ]),
    );
    expect(values).toHaveLength(2);
  });

  it('counts DNS drops by reason and direction and never as insert failures', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(dnsDrop(), undefined, '10.244.0.3'), false);
    metrics.record(attributed(dnsDrop({ reason: 'NO_SOCKET' }), undefined, '10.244.0.3'), false);
    const drops = await valuesOf(registry, 'conntrack_observer_dns_drops_total');
    expect(drops.map((v) => [v.labels.reason, v.labels.direction, v.value])).toEqual([
      ['NETFILTER_DROP', 'query', 1],
      ['NO_SOCKET', 'query', 1],
    ]);
    expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toEqual([]);
  });

  it('counts a resolved clash apart from an insert failure', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed({ ...insertFailure(), kind: 'clash_resolved' }), false);
    expect(await valuesOf(registry, 'conntrack_observer_clash_resolved_total')).toHaveLength(1);
    expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toEqual([]);
  });

  it('counts events without a pod as unattributed only when pods are expected', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure()), false);
    expect(await valuesOf(registry, 'conntrack_observer_unattributed_events_total')).toEqual([]);
    metrics.record(attributed(insertFailure()), true);
    metrics.record(attributed(insertFailure(), podA), true);
    expect(await valuesOf(registry, 'conntrack_observer_unattributed_events_total')).toEqual([
      { value: 1, labels: { kind: 'insert_failed' } },
    ]);
  });

  it('removes every series of a forgotten pod and keeps the others', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const other = { ...podA, name: 'other', uid: 'uid-o' };
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(dnsDrop(), podA), true);
    metrics.record(attributed(insertFailure(), other), true);
    metrics.forgetPod('shop', 'cart-7d9f');
    const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(failures.map((v) => v.labels.pod)).toEqual(['other']);
    expect(await valuesOf(registry, 'conntrack_observer_dns_drops_total')).toEqual([]);
  });

  it('shows every event recorded between scrapes, and only once', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure(), podA), true);
    const first = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(first.map((v) => v.value)).toEqual([1]);
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(insertFailure(), podA), true);
    expect(await registry.metrics()).toContain(
      'conntrack_observer_insert_failures_total{race="snat",source_ip="10.244.0.2",namespace="shop",pod="cart-7d9f",service=""} 3',
    );
    const again = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(again.map((v) => v.value)).toEqual([3]);
  });

  it('drops the cached series of a forgotten pod, including counts no scrape has seen yet', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(dnsDrop(), podA), true);
    metrics.record(attributed(insertFailure()), true);
    expect(metrics.cachedSeries()).toBe(4); // two of the pod, one by IP, one unattributed
    metrics.forgetPod('shop', 'cart-7d9f');
    expect(metrics.cachedSeries()).toBe(2);
    const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(failures.map((v) => [v.labels.pod, v.value])).toEqual([['', 1]]);
    expect(await valuesOf(registry, 'conntrack_observer_dns_drops_total')).toEqual([]);
  });

  it('counts a pod that comes back under the same name from zero', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(insertFailure(), podA), true);
    await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    metrics.forgetPod('shop', 'cart-7d9f');
    metrics.record(attributed(insertFailure(), { ...podA, uid: 'uid-a2' }), true);
    const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(failures.map((v) => [v.labels.pod, v.value])).toEqual([['cart-7d9f', 1]]);
    expect(metrics.cachedSeries()).toBe(1);
  });

  it('keeps the cache bounded by the pods still known after many come and go', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    for (let i = 0; i < 500; i += 1) {
      const pod = { ...podA, name: `job-${i}`, uid: `uid-${i}` };
      metrics.record(attributed(insertFailure(), pod, `10.244.1.${i % 250}`), true);
      metrics.record(attributed(dnsDrop({ reason: 'NO_SOCKET' }), pod), true);
      if (i >= 10) metrics.forgetPod('shop', `job-${i - 10}`);
    }
    expect(metrics.cachedSeries()).toBe(20);
    expect(metrics.seriesAwaitingScrape()).toBe(20);
    expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toHaveLength(10);
    expect(await valuesOf(registry, 'conntrack_observer_dns_drops_total')).toHaveLength(10);
  });

  describe('series keyed by the client address alone', () => {
    const retention = { idleMs: 600_000, maxSeries: 3, sweepEveryMs: 30_000 };
    const forgotten = async (registry: Registry, reason: string) =>
      (await valuesOf(registry, 'conntrack_observer_event_series_forgotten_total')).find(
        (v) => v.labels.reason === reason,
      )?.value;

    it('forgets a source idle for the idle time at a scrape, once its counts were scraped', async () => {
      const registry = new Registry();
      let now = 0;
      const metrics = new EventMetrics(registry, { nowMs: () => now, retention });
      metrics.record(attributed(insertFailure(), undefined, '10.0.0.1'), false);
      metrics.record(attributed(insertFailure(), undefined, '10.0.0.2'), false);
      await registry.metrics();
      now = 300_000;
      metrics.record(attributed(insertFailure(), undefined, '10.0.0.2'), false);
      await registry.metrics();

      now = 600_000;
      const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
      expect(failures.map((v) => [v.labels.source_ip, v.value])).toEqual([['10.0.0.2', 2]]);
      expect(await forgotten(registry, 'idle')).toBe(1);
      expect(metrics.cachedSourceSeries()).toBe(1);
    });

    it('keeps an idle source whose last increments no scrape has seen yet, and forgets it after', async () => {
      const registry = new Registry();
      let now = 0;
      const metrics = new EventMetrics(registry, { nowMs: () => now, retention });
      metrics.record(attributed(insertFailure(), undefined, '10.0.0.1'), false);
      now = 900_000;
      const first = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
      expect(first.map((v) => [v.labels.source_ip, v.value])).toEqual([['10.0.0.1', 1]]);
      now = 930_000;
      expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toEqual([]);
    });

    it('evicts the least recently counted source past the cap, and counts it', async () => {
      const registry = new Registry();
      let now = 0;
      const metrics = new EventMetrics(registry, { nowMs: () => now, retention });
      for (const ip of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) {
        metrics.record(attributed(insertFailure(), undefined, ip), false);
        now += 1_000;
      }
      await registry.metrics();
      // 10.0.0.1 counted again after the scrape: now 10.0.0.2 is the least recent.
      metrics.record(attributed(insertFailure(), undefined, '10.0.0.1'), false);
      metrics.record(attributed(insertFailure(), undefined, '10.0.0.4'), false);
      const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
      expect(failures.map((v) => v.labels.source_ip).sort()).toEqual([
        '10.0.0.1',
        '10.0.0.3',
        '10.0.0.4',
      ]);
      expect(await forgotten(registry, 'limit')).toBe(1);
      expect(metrics.cachedSourceSeries()).toBe(3);
    });

    it('starts a source that comes back after it was forgotten from its new count (a counter reset)', async () => {
      const registry = new Registry();
      let now = 0;
      const metrics = new EventMetrics(registry, { nowMs: () => now, retention });
      for (let i = 0; i < 5; i += 1) {
        metrics.record(attributed(dnsDrop(), undefined, '10.0.0.9'), false);
      }
      await registry.metrics();
      now = 700_000;
      await registry.metrics();
      metrics.record(attributed(dnsDrop(), undefined, '10.0.0.9'), false);
      const drops = await valuesOf(registry, 'conntrack_observer_dns_drops_total');
      expect(drops.map((v) => [v.labels.source_ip, v.value])).toEqual([['10.0.0.9', 1]]);
    });

    it("never forgets a pod's series for being idle: the pod's deletion does", async () => {
      const registry = new Registry();
      let now = 0;
      const metrics = new EventMetrics(registry, { nowMs: () => now, retention });
      for (let i = 0; i < 5; i += 1) {
        metrics.record(attributed(insertFailure(), { ...podA, name: `p-${i}` }), true);
      }
      await registry.metrics();
      now = 10 * 600_000;
      expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toHaveLength(5);
      expect(await forgotten(registry, 'limit')).toBe(0);
      expect(await forgotten(registry, 'idle')).toBe(0);
    });

    it('exports how many series it holds', async () => {
      const registry = new Registry();
      const metrics = new EventMetrics(registry, { nowMs: () => 0, retention });
      metrics.record(attributed(insertFailure(), undefined, '10.0.0.1'), false);
      metrics.record(attributed(dnsDrop(), podA), true);
      const [held] = await valuesOf(registry, 'conntrack_observer_event_series');
      // The address's insert failures and the pod's drops.
      expect(held?.value).toBe(2);
    });
  });

  it('leaves a SNAT measurement that is not a finite non-negative number out of the histograms, and counts it', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const snat = {
      kind: 'snat_port_alloc' as const,
      probe: 'kprobe/snat-port-alloc',
      monotonicNs: 1n,
      cpu: 0,
      netnsInode: 1,
      protocol: 'udp' as const,
      original: { srcIp: '10.244.0.2', srcPort: 1, dstIp: '192.0.2.53', dstPort: 53 },
      translatedIp: '192.0.2.1',
      translatedPort: 1,
    };
    metrics.record(attributed({ ...snat, latencyNs: Number.NaN, attempts: 1 }), false);
    metrics.record(attributed({ ...snat, latencyNs: 10, attempts: -1 }), false);
    metrics.record(attributed({ ...snat, latencyNs: 10, attempts: 1 }), false);
    const [rejected] = await valuesOf(registry, 'conntrack_observer_event_values_rejected_total');
    expect(rejected).toMatchObject({ value: 2, labels: { kind: 'snat_port_alloc' } });
    const attempts = await valuesOf(registry, 'conntrack_observer_snat_port_allocation_attempts');
    const count = attempts.find((v) =>
      String((v as { metricName?: string }).metricName).endsWith('_count'),
    );
    expect(count?.value).toBe(1);
  });
});

describe('DNS query metrics', () => {
  const service = { namespace: 'kube-system', name: 'kube-dns' };

  it('counts answered queries by class and client, and their latency per pod from the kernel buckets', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(dnsQuery({ count: 3 }), podA), true);
    metrics.record(
      attributed(dnsQuery({ answer: 'NODATA', latencyBucketSeconds: Infinity, count: 2 }), podA),
      true,
    );
    const queries = await valuesOf(registry, 'conntrack_observer_dns_queries_total');
    expect(queries.map((v) => [v.labels.rcode, v.labels.pod, v.labels.source_ip, v.value])).toEqual(
      [
        ['NOERROR', 'cart-7d9f', '10.244.0.2', 3],
        ['NODATA', 'cart-7d9f', '10.244.0.2', 2],
      ],
    );
    const duration = await valuesOf(registry, 'conntrack_observer_dns_query_duration_seconds');
    const bucket = (le: number | string) => duration.find((v) => v.labels.le === le)?.value;
    expect(bucket(0.001)).toBe(0);
    expect(bucket(0.005)).toBe(3);
    expect(bucket(5)).toBe(3);
    expect(bucket('+Inf')).toBe(5);
    expect(await valuesOf(registry, 'conntrack_observer_unattributed_events_total')).toEqual([]);
  });

  it('counts unanswered queries by client and the Service asked, apart from answered ones', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const unanswered = dnsQuery({
      outcome: 'unanswered',
      answer: undefined,
      count: 4,
      cause: 'firewall',
    });
    metrics.record(
      {
        event: unanswered,
        attribution: { sourceIp: '10.244.0.2', netnsInode: 1, pod: podA, service },
        wallTimeMs: 0,
      },
      true,
    );
    expect(await valuesOf(registry, 'conntrack_observer_dns_unanswered_queries_total')).toEqual([
      {
        value: 4,
        labels: {
          cause: 'firewall',
          source_ip: '10.244.0.2',
          namespace: 'shop',
          pod: 'cart-7d9f',
          service: 'kube-system/kube-dns',
        },
      },
    ]);
    expect(await valuesOf(registry, 'conntrack_observer_dns_queries_total')).toEqual([]);
  });

  it('counts parallel queries per client apart from answered ones, and not twice as unattributed', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const parallel = (count: number) =>
      dnsQuery({ outcome: 'parallel', answer: undefined, latencyBucketSeconds: undefined, count });
    metrics.record(attributed(parallel(2), podA), true);
    metrics.record(attributed(parallel(3), podA), true);
    metrics.record(
      { event: parallel(1), attribution: { sourceIp: '10.244.9.9', netnsInode: 1 }, wallTimeMs: 0 },
      true,
    );
    expect(await valuesOf(registry, 'conntrack_observer_dns_parallel_queries_total')).toEqual([
      { value: 5, labels: { source_ip: '10.244.0.2', namespace: 'shop', pod: 'cart-7d9f' } },
      { value: 1, labels: { source_ip: '10.244.9.9', namespace: '', pod: '' } },
    ]);
    expect(await valuesOf(registry, 'conntrack_observer_dns_queries_total')).toEqual([]);
    const duration = await valuesOf(registry, 'conntrack_observer_dns_query_duration_seconds');
    expect(duration).toEqual([]);
    expect(await valuesOf(registry, 'conntrack_observer_unattributed_events_total')).toEqual([]);
  });

  it('observes lookups per pod at their query count, past the cap in +Inf, and not for an unattributed client', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const lookups = (queriesPerLookup: number, count: number) =>
      dnsLookups(queriesPerLookup, count);
    metrics.record(attributed(lookups(8, 3), podA), true);
    metrics.record(attributed(lookups(2, 1), podA), true);
    metrics.record(attributed(lookups(Infinity, 1), podA), true);
    metrics.record(
      {
        event: lookups(8, 1),
        attribution: { sourceIp: '10.244.9.9', netnsInode: 1 },
        wallTimeMs: 0,
      },
      true,
    );
    const values = await valuesOf(registry, 'conntrack_observer_dns_queries_per_lookup');
    const bucket = (le: number | string) =>
      values.find((v) => v.labels.le === le && v.labels.pod === 'cart-7d9f')?.value;
    expect(bucket(1)).toBe(0);
    expect(bucket(2)).toBe(1);
    expect(bucket(6)).toBe(1);
    expect(bucket(8)).toBe(4);
    expect(bucket(32)).toBe(4);
    expect(bucket('+Inf')).toBe(5);
    expect(values.filter((v) => v.labels.pod !== 'cart-7d9f')).toEqual([]);
    expect(await valuesOf(registry, 'conntrack_observer_dns_queries_total')).toEqual([]);
    expect(await valuesOf(registry, 'conntrack_observer_unattributed_events_total')).toEqual([]);
    metrics.forgetPod('shop', 'cart-7d9f');
    expect(await valuesOf(registry, 'conntrack_observer_dns_queries_per_lookup')).toEqual([]);
  });

  it('counts lookups per pod by how they ended, not for an unattributed client, and removes them with the pod', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const lookups = (queriesPerLookup: number, lookupEnd: LookupEnd, count: number) =>
      dnsLookups(queriesPerLookup, count, { lookupEnd });
    metrics.record(attributed(lookups(8, 'nxdomain', 3), podA), true);
    metrics.record(attributed(lookups(6, 'nodata', 1), podA), true);
    metrics.record(attributed(lookups(2, 'answered', 2), podA), true);
    metrics.record(attributed(lookups(8, 'nxdomain', 1), podA), true);
    metrics.record(
      {
        event: lookups(2, 'unanswered', 1),
        attribution: { sourceIp: '10.244.9.9', netnsInode: 1 },
        wallTimeMs: 0,
      },
      true,
    );
    const values = await valuesOf(registry, 'conntrack_observer_dns_lookups_total');
    expect(values).toEqual([
      { value: 4, labels: { outcome: 'nxdomain', namespace: 'shop', pod: 'cart-7d9f' } },
      { value: 1, labels: { outcome: 'nodata', namespace: 'shop', pod: 'cart-7d9f' } },
      { value: 2, labels: { outcome: 'answered', namespace: 'shop', pod: 'cart-7d9f' } },
    ]);
    metrics.forgetPod('shop', 'cart-7d9f');
    expect(await valuesOf(registry, 'conntrack_observer_dns_lookups_total')).toEqual([]);
  });

  it('removes every DNS query series of a pod with the pod', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(dnsQuery(), podA), true);
    metrics.record(attributed(dnsQuery({ outcome: 'unanswered', answer: undefined }), podA), true);
    metrics.record(attributed(dnsQuery({ outcome: 'parallel', answer: undefined }), podA), true);
    metrics.forgetPod('shop', 'cart-7d9f');
    expect(await valuesOf(registry, 'conntrack_observer_dns_queries_total')).toEqual([]);
    expect(await valuesOf(registry, 'conntrack_observer_dns_unanswered_queries_total')).toEqual([]);
    expect(await valuesOf(registry, 'conntrack_observer_dns_parallel_queries_total')).toEqual([]);
    const duration = await valuesOf(registry, 'conntrack_observer_dns_query_duration_seconds');
    expect(duration.filter((v) => v.labels.pod === 'cart-7d9f')).toEqual([]);
  });

  it('counts musl lookups stopped on NODATA per pod and domain, not glibc ones, and forgets them with the pod', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const musl = eventDiagnosis(muslSeed004Diagnosis('musl'));
    const glibc = eventDiagnosis(muslSeed004Diagnosis('glibc'));
    metrics.record({ ...attributed(dnsNoData(), podA), diagnosis: musl }, true);
    metrics.record({ ...attributed(dnsNoData(), podA), diagnosis: musl }, true);
    metrics.record({ ...attributed(dnsNoData(), podA), diagnosis: glibc }, true);
    metrics.record({ ...attributed(dnsNoData({ qtype: 'AAAA' }), podA), diagnosis: musl }, true);
    const name = 'conntrack_observer_dns_lookups_stopped_on_nodata_total';
    expect(await valuesOf(registry, name)).toEqual([
      {
        value: 2,
        labels: {
          domain: 'corp.test',
          source_ip: '10.244.0.2',
          namespace: 'shop',
          pod: 'cart-7d9f',
        },
      },
    ]);
    metrics.forgetPod('shop', 'cart-7d9f');
    expect(await valuesOf(registry, name)).toEqual([]);
  });

  it('counts queries the probe could not track', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.recordUntrackedDnsQueries(7);
    expect(await valuesOf(registry, 'conntrack_observer_dns_queries_untracked_total')).toEqual([
      { value: 7, labels: {} },
    ]);
  });
});
