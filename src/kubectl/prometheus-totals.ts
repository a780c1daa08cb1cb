/** The agent series `kubectl conntrack-race nodes` sums, by column. */
export const NODE_TOTALS = {
  insertFailures: 'conntrack_observer_insert_failures_total',
  dnsDrops: 'conntrack_observer_dns_drops_total',
  clashesResolved: 'conntrack_observer_clash_resolved_total',
} as const;

export type NodeTotals = Record<keyof typeof NODE_TOTALS, number>;

/** Sums each counter over its series in Prometheus text exposition. */
export function totalsOfExposition(text: string): NodeTotals {
  const totals: NodeTotals = { insertFailures: 0, dnsDrops: 0, clashesResolved: 0 };
  const columns = Object.entries(NODE_TOTALS) as [keyof NodeTotals, string][];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    // name{labels} value  or  name value; label values may hold spaces, the value is last.
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(value)) continue;
    for (const [column, name] of columns) {
      if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) totals[column] += value;
    }
  }
  return totals;
}
