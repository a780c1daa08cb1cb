import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import {
  parseConntrackStatFile,
  type ConntrackStatSnapshot,
} from '../../../src/sources/kernel-stats/conntrack-stat-file.js';

const fixture = (name: string): Promise<string> =>
  readFile(fileURLToPath(new URL(`../../fixtures/proc/${name}`, import.meta.url)), 'utf8');

async function statsOf(name: string): Promise<ConntrackStatSnapshot> {
  const result = parseConntrackStatFile(await fixture(name));
  if (!result.ok) throw new Error(`expected stats, got ${result.error.message}`);
  return result.stats;
}

describe('nf_conntrack stat file', () => {
  it('sums the per-CPU rows of a 6.18 namespace after a DNAT race (conntrack -S said clash_resolve=228+214)', async () => {
    const stats = await statsOf('nf_conntrack-6.18-dnat-race.txt');
    expect(stats.rows).toHaveLength(2);
    expect(stats.totals.get('clash_resolve')).toBe(442);
    expect(stats.totals.get('insert_failed')).toBe(0);
    expect(stats.hasClashResolve).toBe(true);
  });

  it('takes the table size from one row instead of summing it', async () => {
    const stats = await statsOf('nf_conntrack-6.18-dnat-race.txt');
    expect(stats.entries).toBe(0x3928);
    expect(stats.totals.has('entries')).toBe(false);
  });

  it('renames clashres and chainlength to the names conntrack -S uses and keeps every other column', async () => {
    const stats = await statsOf('nf_conntrack-6.18-idle.txt');
    expect(stats.columns).toEqual([
      'entries',
      'clash_resolve',
      'found',
      'new',
      'invalid',
      'ignore',
      'delete',
      'chaintoolong',
      'insert',
      'insert_failed',
      'drop',
      'early_drop',
      'icmp_error',
      'expect_new',
      'expect_create',
      'expect_delete',
      'search_restart',
    ]);
    expect([...stats.totals.values()].every((value) => value === 0)).toBe(true);
  });

  it('reads a pre-5.10 file, which has no clash_resolve column, and says so', async () => {
    const stats = await statsOf('nf_conntrack-5.4-no-clashres.txt');
    expect(stats.hasClashResolve).toBe(false);
    expect(stats.totals.has('clash_resolve')).toBe(false);
    expect(stats.totals.get('searched')).toBe(0);
    expect(stats.totals.get('delete_list')).toBe(0);
    expect(stats.totals.get('insert_failed')).toBe(0x0c + 0x07);
    expect(stats.totals.get('ignore')).toBe(0x41b + 0x322);
    expect(stats.entries).toBe(0x120);
  });

  it('reads full 32-bit values', () => {
    const result = parseConntrackStatFile(
      'entries  insert_failed\n00000001  ffffffff\n00000001  00000001\n',
    );
    expect(result.ok && result.stats.totals.get('insert_failed')).toBe(0xffffffff + 1);
  });

  it.each([
    ['an empty file', '', 'empty'],
    ['a header without rows', 'entries  clashres found\n', 'no_rows'],
    ['a header not starting with entries', 'cpu found\n00000000 00000000\n', 'no_entries_column'],
    ['a row with a missing field', 'entries  clashres found\n00000000  00000000\n', 'bad_row'],
    ['a row that is not hex', 'entries  clashres found\n00000000  0000000g 00000000\n', 'bad_row'],
    ['a value wider than 32 bits', 'entries  found\n00000000  100000000\n', 'bad_row'],
  ])('returns an error value for %s', (_what, text, code) => {
    expect(parseConntrackStatFile(text)).toMatchObject({ ok: false, error: { code } });
  });
});
