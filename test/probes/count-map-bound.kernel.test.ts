import { createLineDecoder } from '../../src/decode/decode.js';
import { DnsDropCounts } from '../../src/decode/dns-drop-counts.js';
import type { DnsDropEvent } from '../../src/events/types.js';
import { startProbe, type ProbeRun } from '../lab/bpftrace.js';
import { readDropReasons } from '../lab/drop-reasons.js';
import { readSnmpCounter } from '../lab/kernel-counters.js';
import { createLab, type Lab } from '../lab/lab.js';
import { sendQueries } from '../lab/scenarios/dns-queries.js';

// The detailed count maps are bounded (BPFTRACE_MAP_KEYS_MAX): past the bound the kernel
// refuses new keys silently. Here the bound is made small on purpose and more distinct keys
// than it are dropped (queries to silent addresses, one key each): the totals map must still
// count every drop, and the agent's reading must report exactly the shortfall as uncounted,
// so that counted + uncounted = the kernel's own Udp NoPorts count.

const reasons = readDropReasons();
const reasonNames = new Map([...reasons].map(([name, code]) => [code, name]));
const nameOf = (code: number): string => reasonNames.get(code) ?? `UNKNOWN_${code}`;
const decode = createLineDecoder('tracepoint/dns-drops', nameOf);

const timeoutMs = 90_000;
const MAP_KEYS = 4;
/** More silent destinations than the bound: each is a key of its own. */
const silentAddresses = Array.from({ length: 12 }, (_, index) => `192.0.2.${200 + index}`);
const QUERIES_EACH = 3;

let lab: Lab;
let probe: ProbeRun;

beforeAll(async () => {
  lab = await createLab();
  for (const address of silentAddresses) {
    await lab.exec(lab.upstream.netns, 'ip', ['addr', 'add', `${address}/32`, 'dev', 'lo']);
  }
  probe = await startProbe('tracepoint/dns-drops.bt', ['300'], 30_000, {
    BPFTRACE_MAP_KEYS_MAX: String(MAP_KEYS),
  });
}, timeoutMs);

afterAll(async () => {
  await probe?.stop();
  await lab?.destroy();
}, timeoutMs);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the agent reads from the printed maps: the drops counted per key, and the shortfall. */
function reading(): { counted: DnsDropEvent[]; uncounted: number } {
  const counts = new DnsDropCounts({
    probe: 'tracepoint/dns-drops',
    reasonName: nameOf,
    monotonicNs: () => 0n,
  });
  const counted: DnsDropEvent[] = [];
  let uncounted = 0;
  for (const line of probe.lines) {
    const decoded = decode(line);
    if (decoded.type === 'map_cleared') counts.cleared(decoded.map);
    if (decoded.type !== 'counts') continue;
    const update = counts.observe(decoded.map, decoded.entries);
    expect(update.rejectedKeys).toEqual([]);
    counted.push(...update.events);
    uncounted += update.uncounted.get('NO_SOCKET') ?? 0;
  }
  return { counted: counted.filter((event) => event.reason === 'NO_SOCKET'), uncounted };
}

const total = (events: readonly DnsDropEvent[]): number =>
  events.reduce((sum, event) => sum + (event.count ?? 0), 0);

it(
  'with more distinct keys than the map holds, counts every drop: the keys it has room for by key, the rest as uncounted',
  async () => {
    const noPortsBefore = await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts');
    const before = reading();
    for (const address of silentAddresses) {
      await sendQueries(lab, lab.pods[0]!.netns, address, QUERIES_EACH, 50);
    }
    const dropped = (await readSnmpCounter(lab.upstream.netns, 'Udp', 'NoPorts')) - noPortsBefore;
    expect(dropped).toBe(silentAddresses.length * QUERIES_EACH);

    // The maps are printed once a second: wait until the reading accounts for every drop.
    const deadline = Date.now() + 10_000;
    let after = reading();
    const accounted = () =>
      total(after.counted) - total(before.counted) + after.uncounted - before.uncounted;
    while (accounted() < dropped && Date.now() < deadline) {
      await sleep(250);
      after = reading();
    }
    await sleep(1200); // one more print: anything counted twice would show here
    after = reading();

    const countedNow = after.counted.slice(before.counted.length);
    const keys = new Set(countedNow.map((event) => event.tuple.dstIp));
    expect(keys.size).toBeGreaterThan(0);
    expect(keys.size).toBeLessThanOrEqual(MAP_KEYS);
    for (const key of keys) expect(silentAddresses).toContain(key);
    const uncounted = after.uncounted - before.uncounted;
    expect(uncounted).toBeGreaterThan(0);
    // Exact: each drop either under its key or in the shortfall, none in both, none missing.
    expect(total(countedNow) + uncounted).toBe(dropped);
  },
  timeoutMs,
);
