import { noDataStopOf, searchListAnswerOf } from '../../src/events/nodata-stop.js';
import { dnsNoData } from '../support/events.js';
import { eventDiagnosis, muslSeed004Diagnosis } from '../support/pod-diagnoses.js';

const seed004 = {
  search: ['shop.svc.cluster.local', 'svc.cluster.local', 'corp.test'],
  options: { ndots: 5 },
};

describe('which search-list domain a question name was built from', () => {
  it('finds the domain appended to the name the pod asked for', () => {
    expect(searchListAnswerOf('www.example.test.corp.test', seed004)).toEqual({
      domain: 'corp.test',
      requested: 'www.example.test',
    });
  });

  it('takes the longest domain when several end the name', () => {
    expect(searchListAnswerOf('api.shop.svc.cluster.local', seed004)).toEqual({
      domain: 'shop.svc.cluster.local',
      requested: 'api',
    });
  });

  it('compares names without case or a trailing dot', () => {
    expect(
      searchListAnswerOf('WWW.Example.Test.CORP.test', { ...seed004, search: ['corp.test.'] }),
    ).toEqual({
      domain: 'corp.test',
      requested: 'www.example.test',
    });
  });

  it('is no search-list name when the asked name has as many dots as ndots (tried as is first)', () => {
    const ndots1 = { ...seed004, options: { ndots: 1 } };
    expect(searchListAnswerOf('www.example.test.corp.test', ndots1)).toBeUndefined();
    expect(searchListAnswerOf('db.corp.test', ndots1)).toEqual({
      domain: 'corp.test',
      requested: 'db',
    });
  });

  it('is no search-list name for the domain itself or a name outside the list', () => {
    expect(searchListAnswerOf('corp.test', seed004)).toBeUndefined();
    expect(searchListAnswerOf('www.example.test', seed004)).toBeUndefined();
    expect(searchListAnswerOf('xcorp.test', seed004)).toBeUndefined();
  });
});

describe("whether a NODATA answer stopped the pod's lookup", () => {
  it('stops a musl lookup at an A NODATA answer to a search-list name, naming the domain', () => {
    expect(noDataStopOf(dnsNoData(), eventDiagnosis(muslSeed004Diagnosis()))).toEqual({
      name: 'www.example.test.corp.test',
      requested: 'www.example.test',
      domain: 'corp.test',
      libc: 'musl',
      container: 'alpine',
      tried: [
        'www.example.test.shop.svc.cluster.local',
        'www.example.test.svc.cluster.local',
        'www.example.test.corp.test',
      ],
    });
  });

  it('does not stop a glibc lookup, which goes on searching', () => {
    expect(
      noDataStopOf(dnsNoData(), eventDiagnosis(muslSeed004Diagnosis('glibc'))),
    ).toBeUndefined();
  });

  it('does not count an AAAA NODATA alone: every IPv4-only name gets one beside its A answer', () => {
    expect(
      noDataStopOf(dnsNoData({ qtype: 'AAAA' }), eventDiagnosis(muslSeed004Diagnosis())),
    ).toBeUndefined();
  });

  it('decides nothing before the pod is diagnosed', () => {
    const unknown = { ...eventDiagnosis(), pod: { status: 'unknown' as const, reason: 'reading' } };
    expect(noDataStopOf(dnsNoData(), unknown)).toBeUndefined();
    expect(noDataStopOf(dnsNoData(), undefined)).toBeUndefined();
  });

  it('does not stop at a name outside the search list (the name itself has no data)', () => {
    expect(
      noDataStopOf(dnsNoData({ name: 'www.example.test' }), eventDiagnosis(muslSeed004Diagnosis())),
    ).toBeUndefined();
  });
});
