import { createLineRouter } from '../../../src/sources/bpftrace/line-router.js';

const route = createLineRouter([
  { probe: 'insert', records: ['insert_failed'], maps: [] },
  { probe: 'dns', records: ['dns_drop'], maps: ['@dns_drops_0', '@dns_drop_totals'] },
]);

describe('the line router of a combined bpftrace process', () => {
  it('hands a printf line to the probe that prints its record', () => {
    expect(route('{"type": "printf", "data": "insert_failed 1 2 3\\n"}')).toBe('insert');
    expect(route('{"type": "printf", "data": "dns_drop 1 2 3\\n"}')).toBe('dns');
  });

  it('hands a printed map, and the news of its clearing, to the probe that owns the map', () => {
    expect(route('{"type": "map", "data": {"@dns_drop_totals": {"12": 5}}}')).toBe('dns');
    expect(route('{"type": "printf", "data": "map_cleared 1 @dns_drops_0\\n"}')).toBe('dns');
  });

  it('leaves to the process what names no probe: attached, lost events, unknown records and maps, garbage', () => {
    for (const line of [
      '{"type": "attached_probes", "data": {"probes": 3}}',
      '{"type": "lost_events", "data": {"events": 7}}',
      '{"type": "printf", "data": "snat_port_alloc 1 2\\n"}',
      '{"type": "printf", "data": "map_cleared 1 @other\\n"}',
      '{"type": "printf", "data": "nospace"}',
      '{"type": "map", "data": {"@other": 1}}',
      'garbage',
    ]) {
      expect(route(line)).toBeUndefined();
    }
  });
});
