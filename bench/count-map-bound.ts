import { createLineDecoder } from '../src/decode/decode.js';
import { DnsDropCounts } from '../src/decode/dns-drop-counts.js';
import { mapKeysEnv } from '../src/probes/catalogue.js';
import { startProbe } from '../test/lab/bpftrace.js';
import { readDropReasons } from '../test/lab/drop-reasons.js';
import { createLab, readSnmpCounter, sendQueries } from '../test/lab/index.js';

/*
 * The detailed count maps reach their bound on purpose: the DNS-drop probe runs with a small
 * BPFTRACE_MAP_KEYS_MAX while queries go to more silent upstream addresses than that (each
 * address is a key of its own). The kernel's Udp NoPorts delta is the truth:
 * the agent's reading must count every drop, under its key where the map had room and as
 * uncounted (the `totals − Σ detail` shortfall) where it had not.
 */
export interface CountMapBound {
  /** What the bpftrace run prints for `--version`. */
  readonly bpftrace: string;
  readonly mapKeys: number;
  readonly distinctKeys: number;
  readonly dropped: number;
  readonly countedByKey: number;
  readonly keysHeld: number;
  readonly uncounted: number;
  /** Records bpftrace printed about failed helper calls (0.22 and later: each map update refused). */
  readonly helperErrors: number;
}

/** The bpftrace that runs the probe, and what its `--version` prints. */
export interface BoundBpftrace {
  readonly path: string;
  readonly version: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function measureCountMapBound(
  mapKeys: number,
  addresses: number,
  bpftrace: BoundBpftrace,
): Promise<CountMapBound> {
  if (addresses > 150) throw new Error('at most 150 silent addresses (192.0.2.100-249 of the lab)');
  const reasons = readDropReasons();
  const names = new Map([...reasons].map(([name, code]) => [code, name]));
  const nameOf = (code: number): string => names.get(code) ?? `UNKNOWN_${code}`;
  const decode = createLineDecoder('tracepoint/dns-drops', nameOf);
  const lab = await createLab();
  try {
    // Above the lab's own upstream addresses (192.0.2.1-99).
    const silent = Array.from({ length: addresses }, (_, index) => `192.0.2.${index + 100}`);
    for (const address of silent) {
      await lab.exec(lab.upstream.netns, 'ip', ['addr', 'add', `${address}/32`, 'dev', 'lo']);
    }
    const probe = await startProbe(
      'tracepoint/dns-drops.bt',
      ['300'],
      60_000,
      mapKeysEnv(mapKeys),
      bpftrace.path,
    );
    try {
      const noPortsBefore = await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
      for (const pod of lab.pods) {
        for (const address of silent) await sendQueries(lab, pod.netns, address, 1, 20);
      }
      const dropped = (await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts')) - noPortsBefore;
      const read = () => {
        const counts = new DnsDropCounts({
          probe: 'tracepoint/dns-drops',
          reasonName: nameOf,
          monotonicNs: () => 0n,
        });
        let countedByKey = 0;
        let uncounted = 0;
        let helperErrors = 0;
        const keys = new Set<string>();
        for (const line of probe.lines) {
          if (line.includes('"helper_error"')) helperErrors += 1;
          const decoded = decode(line);
          if (decoded.type === 'map_cleared') counts.cleared(decoded.map);
          if (decoded.type !== 'counts') continue;
          const update = counts.observe(decoded.map, decoded.entries);
          for (const event of update.events) {
            if (event.reason !== 'NO_SOCKET') continue;
            countedByKey += event.count ?? 0;
            keys.add(
              `${event.tuple.srcIp} ${event.tuple.dstIp} ${event.conntrack?.original.srcIp ?? ''}`,
            );
          }
          uncounted += update.uncounted.get('NO_SOCKET') ?? 0;
        }
        return { countedByKey, uncounted, keysHeld: keys.size, helperErrors };
      };
      const deadline = Date.now() + 15_000;
      let reading = read();
      while (reading.countedByKey + reading.uncounted < dropped && Date.now() < deadline) {
        await sleep(250);
        reading = read();
      }
      await sleep(1_200); // one more print: a drop counted twice would show here
      reading = read();
      return {
        bpftrace: bpftrace.version,
        mapKeys,
        // Both pods leave masqueraded as the node, and the upstream's conntrack entry holds that
        // address as original: one key per silent address.
        distinctKeys: silent.length,
        dropped,
        ...reading,
      };
    } finally {
      await probe.stop();
    }
  } finally {
    await lab.destroy();
  }
}
