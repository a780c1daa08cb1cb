import { FanOutWindows } from '../../src/events/fan-out.js';
import type { DnsQueryEvent } from '../../src/events/types.js';
import { dnsLookups, dnsQuery } from '../support/events.js';
import { eventDiagnosis, muslSeed004Diagnosis } from '../support/pod-diagnoses.js';

const lookups = (
  queriesPerLookup: number,
  count: number,
  lookupEnd: DnsQueryEvent['lookupEnd'] = 'nxdomain',
): DnsQueryEvent => dnsLookups(queriesPerLookup, count, { lookupEnd });

// ndots:5, search shop.svc.cluster.local svc.cluster.local corp.test.
const diagnosis = eventDiagnosis(muslSeed004Diagnosis());

describe('the search-list fan-out of a pod', () => {
  it('shows once a window of lookups costs at least 2 × (search domains) each, with the settings that explain it', () => {
    const windows = new FanOutWindows({ minLookups: 5, maxPods: 10 });
    expect(windows.observe('shop/cart', lookups(8, 4), diagnosis)).toBeUndefined();
    expect(windows.observe('shop/cart', lookups(2, 1, 'answered'), diagnosis)).toEqual({
      lookups: 5,
      meanQueries: 6.8,
      nxdomain: 4,
      ndots: 5,
      search: ['shop.svc.cluster.local', 'svc.cluster.local', 'corp.test'],
      nodeLocal: false,
    });
    // Below 2 × 3: no fan-out shown; each window is judged alone.
    expect(windows.observe('shop/cart', lookups(8, 3), diagnosis)).toBeUndefined();
    expect(windows.observe('shop/cart', lookups(2, 2, 'answered'), diagnosis)).toBeUndefined();
    // A new window starts: eight-query lookups again.
    expect(windows.observe('shop/cart', lookups(8, 5), diagnosis)).toMatchObject({
      lookups: 5,
      meanQueries: 8,
    });
  });

  it('is none for lookups that cost 1 per type, even without a search list or a diagnosis', () => {
    const windows = new FanOutWindows({ minLookups: 5, maxPods: 10 });
    expect(windows.observe('shop/a', lookups(2, 10, 'answered'), diagnosis)).toBeUndefined();
    const noSearch = muslSeed004Diagnosis();
    const bare = eventDiagnosis({
      ...noSearch,
      containers: noSearch.containers.map((c) => ({
        ...c,
        resolvConf: { ...c.resolvConf!, search: [] },
      })),
    });
    expect(windows.observe('shop/b', lookups(2, 10, 'answered'), bare)).toBeUndefined();
    expect(windows.observe('shop/c', lookups(2, 10), undefined)).toBeUndefined();
  });

  it("assumes Kubernetes' 3 search domains when the pod's resolv.conf was not read", () => {
    const windows = new FanOutWindows({ minLookups: 2, maxPods: 10 });
    expect(windows.observe('shop/cart', lookups(8, 2), undefined)).toEqual({
      lookups: 2,
      meanQueries: 8,
      nxdomain: 2,
      nodeLocal: false,
    });
    expect(windows.observe('shop/cart', lookups(4, 2), undefined)).toBeUndefined();
  });

  it('counts lookups past the probe cap as 33 queries, and ignores events that are not lookups', () => {
    const windows = new FanOutWindows({ minLookups: 1, maxPods: 10 });
    expect(windows.observe('shop/cart', dnsQuery(), diagnosis)).toBeUndefined();
    expect(windows.observe('shop/cart', lookups(Infinity, 1), diagnosis)).toMatchObject({
      meanQueries: 33,
    });
  });

  it('keeps at most maxPods windows, dropping the oldest', () => {
    const windows = new FanOutWindows({ minLookups: 2, maxPods: 2 });
    windows.observe('shop/a', lookups(8, 1), diagnosis);
    windows.observe('shop/b', lookups(8, 1), diagnosis);
    windows.observe('shop/c', lookups(8, 1), diagnosis);
    // a's first lookup was dropped with its window: one more does not complete it.
    expect(windows.observe('shop/a', lookups(8, 1), diagnosis)).toBeUndefined();
    expect(windows.observe('shop/c', lookups(8, 1), diagnosis)).toMatchObject({ lookups: 2 });
  });
});
