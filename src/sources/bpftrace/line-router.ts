/** What each probe of a combined bpftrace process prints, by name. */
export interface ProbeRoutes {
  readonly probe: string;
  /** printf records, the first word of the line: `insert_failed`, `dns_drop`, … */
  readonly records: readonly string[];
  /** Printed maps, `@dns_drops_0`, …; `map_cleared 1 @name` goes to the owner of `@name`. */
  readonly maps: readonly string[];
}

export type LineRoute = (line: string) => string | undefined;

// What bpftrace 0.17 `-f json` prints for printf() and print(@map): the decoder's own prefix.
const PRINTF_PREFIX = '{"type": "printf", "data": "';
const MAP_PREFIX = '{"type": "map", "data": {"';
const MAP_CLEARED = 'map_cleared';

/**
 * The probe a line of a combined process belongs to, from the record or map name it starts
 * with; undefined for what belongs to the process (attached_probes, lost_events) or to no
 * probe (garbage). A prefix scan, not a JSON parse: the probe's decoder parses the line after.
 */
export function createLineRouter(routes: readonly ProbeRoutes[]): LineRoute {
  const byRecord = new Map<string, string>();
  const byMap = new Map<string, string>();
  for (const route of routes) {
    for (const record of route.records) byRecord.set(record, route.probe);
    for (const map of route.maps) byMap.set(map, route.probe);
  }
  return (line) => {
    if (line.startsWith(PRINTF_PREFIX)) {
      const start = PRINTF_PREFIX.length;
      const space = line.indexOf(' ', start);
      if (space < 0) return undefined;
      const record = line.slice(start, space);
      if (record === MAP_CLEARED) {
        // map_cleared 1 @name\n
        const mapStart = line.indexOf(' ', space + 1);
        if (mapStart < 0) return undefined;
        const mapEnd = line.indexOf('\\', mapStart + 1);
        return byMap.get(line.slice(mapStart + 1, mapEnd < 0 ? undefined : mapEnd));
      }
      return byRecord.get(record);
    }
    if (line.startsWith(MAP_PREFIX)) {
      const start = MAP_PREFIX.length;
      const end = line.indexOf('"', start);
      return end < 0 ? undefined : byMap.get(line.slice(start, end));
    }
    return undefined;
  };
}
