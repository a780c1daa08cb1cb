import { readFileSync } from 'node:fs';

import { DNS_DROP_MAPS, DNS_DROP_TOTALS_MAP } from '../../../src/decode/dns-drop-counts.js';
import { probeSpec } from '../../../src/probes/catalogue.js';

const probesDir = new URL('../../../probes/', import.meta.url);
const dnsDrops = probeSpec('tracepoint/dns-drops')!;

describe('the DNS-drop maps of both families', () => {
  it('are declared by the DNS-drop probe, so that a combined process routes them', () => {
    expect([...(dnsDrops.maps ?? [])].sort()).toEqual(
      [DNS_DROP_TOTALS_MAP, ...DNS_DROP_MAPS].sort(),
    );
  });

  it.each(dnsDrops.variants.map((variant) => variant.script))(
    '%s writes, prints and clears the IPv4 and the IPv6 generations, and prints examples with the family',
    (script) => {
      const text = readFileSync(new URL(script, probesDir), 'utf8');
      for (const map of DNS_DROP_MAPS) {
        expect(text).toContain(`${map}[$netns`);
        expect(text).toContain(`print(${map});`);
        expect(text).toContain(`clear(${map});`);
        expect(text).toContain(`map_cleared 1 ${map}\\n`);
      }
      expect(text).toContain(`print(${DNS_DROP_TOTALS_MAP});`);
      expect(text).toMatch(/"dns_drop 4 [^"]* ipv4 /);
      expect(text).toMatch(/"dns_drop 4 [^"]* ipv6 /);
      expect(text).not.toMatch(/"dns_drop [123] /);
      // ETH_P_IP is tested first: an IPv4 datagram pays one protocol comparison for IPv6.
      expect(text).toContain('/args->protocol == 0x0800 || args->protocol == 0x86DD/');
      expect(text).toContain('if (args->protocol == 0x0800) {');
    },
  );

  it('keeps the three variants alike but for the reason and the namespace lookup', () => {
    const strip = (script: string) =>
      readFileSync(new URL(script, probesDir), 'utf8')
        .replace(/^\/\*[\s\S]*?\*\/\n/, '')
        .split('\n')
        .filter((line) => /@dns_|printf|ntop|0x86DD|0x0800|\$ip \+/.test(line))
        .map((line) =>
          line
            .replace(/ %u ipv| - ipv/, ' R ipv')
            .replace(/\$netns, \$reason,/, '$netns,')
            .trim(),
        );
    const [first, ...rest] = dnsDrops.variants.map((variant) => strip(variant.script));
    for (const other of rest) expect(other).toEqual(first);
  });
});
