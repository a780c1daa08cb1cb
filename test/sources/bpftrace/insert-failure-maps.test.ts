import { readFileSync } from 'node:fs';

import {
  INSERT_FAILURE_MAPS,
  INSERT_FAILURE_TOTALS_MAP,
} from '../../../src/decode/insert-failure-counts.js';
import { probeCatalogue } from '../../../src/probes/catalogue.js';

const probesDir = new URL('../../../probes/', import.meta.url);
const insertFailureProbes = probeCatalogue.filter(
  (probe) => probe.observation === 'insertFailures',
);

describe('the insert-failure maps of both families', () => {
  it('are declared by every insert-failure probe, so that a combined process routes them', () => {
    expect(insertFailureProbes.map((probe) => probe.name).sort()).toEqual([
      'kprobe/conntrack-confirm',
      'tracepoint/conntrack-insert-failed',
    ]);
    for (const probe of insertFailureProbes) {
      expect([...(probe.maps ?? [])].sort()).toEqual(
        [INSERT_FAILURE_TOTALS_MAP, ...INSERT_FAILURE_MAPS].sort(),
      );
    }
  });

  it.each(insertFailureProbes.flatMap((probe) => probe.variants.map((variant) => variant.script)))(
    '%s writes, prints and clears the IPv4 and the IPv6 generations, and prints examples with the family',
    (script) => {
      const text = readFileSync(new URL(script, probesDir), 'utf8');
      for (const map of INSERT_FAILURE_MAPS) {
        expect(text).toContain(`${map}[$netns`);
        expect(text).toContain(`print(${map});`);
        expect(text).toContain(`clear(${map});`);
        expect(text).toContain(`map_cleared 1 ${map}\\n`);
      }
      expect(text).toContain(`print(${INSERT_FAILURE_TOTALS_MAP});`);
      expect(text).toMatch(/"insert_failed 3 [^"]* ipv4 /);
      expect(text).toMatch(/"insert_failed 3 [^"]* ipv6 /);
      // Both families pass the filter: ETH_P_IP and ETH_P_IPV6.
      expect(text.includes('0x86DD') || text.includes('l3num == 10')).toBe(true);
    },
  );
});
