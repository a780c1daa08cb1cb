import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import {
  dropReasonsOfFormat,
  parseDropReasons,
  type DropReasonTable,
} from '../../src/detect/drop-reasons.js';

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../fixtures/tracefs/${name}`, import.meta.url));

async function tableOf(name: string): Promise<DropReasonTable> {
  const result = parseDropReasons(await readFile(fixture(name), 'utf8'));
  if (!result.ok) throw new Error(`expected a table, got ${result.error.message}`);
  return result.table;
}

describe('drop reason table', () => {
  it('reads the numbers of the 6.18 kernel from its kfree_skb format file', async () => {
    const table = await tableOf('kfree_skb-format-6.18.txt');
    expect(table.codeOf('NETFILTER_DROP')).toBe(12);
    expect(table.codeOf('NO_SOCKET')).toBe(3);
    expect(table.codeOf('NOT_SPECIFIED')).toBe(2);
    expect(table.codeOf('MAX')).toBe(128);
    expect(table.size).toBe(127);
  });

  it('names codes in both directions', async () => {
    const table = await tableOf('kfree_skb-format-6.18.txt');
    expect(table.nameOf(12)).toBe('NETFILTER_DROP');
    expect(table.nameOf(table.codeOf('TCP_RESET')!)).toBe('TCP_RESET');
  });

  it('names an unknown code UNKNOWN_<n> and knows no unknown name', async () => {
    const table = await tableOf('kfree_skb-format-6.18.txt');
    expect(table.nameOf(999)).toBe('UNKNOWN_999');
    expect(table.nameOf(0)).toBe('UNKNOWN_0');
    expect(table.codeOf('NO_SUCH_REASON')).toBeUndefined();
  });

  it('returns an error naming the missing field for a kernel without drop reasons', async () => {
    const result = parseDropReasons(
      await readFile(fixture('kfree_skb-format-5.15-no-reason.txt'), 'utf8'),
    );
    expect(result).toEqual({
      ok: false,
      error: { code: 'no_reason_field', message: expect.stringContaining('no reason field') },
    });
  });

  it('returns an error for text that is not a format file', () => {
    expect(parseDropReasons('')).toMatchObject({ ok: false, error: { code: 'no_reason_field' } });
    expect(
      parseDropReasons('field:enum skb_drop_reason reason;\nprint fmt: "%d", REC->reason'),
    ).toMatchObject({
      ok: false,
      error: { code: 'no_symbol_table' },
    });
    expect(
      parseDropReasons(
        'field:enum skb_drop_reason reason;\nprint fmt: "%s", __print_symbolic(REC->reason, )',
      ),
    ).toMatchObject({ ok: false, error: { code: 'empty_symbol_table' } });
  });

  it('parses the table from the format text read once by capability detection', async () => {
    const result = dropReasonsOfFormat(
      fixture('kfree_skb-format-6.18.txt'),
      await readFile(fixture('kfree_skb-format-6.18.txt'), 'utf8'),
    );
    expect(result.ok && result.table.codeOf('NETFILTER_DROP')).toBe(12);
  });

  it('returns a read error naming the path when the file could not be read', () => {
    const result = dropReasonsOfFormat(
      '/nonexistent/tracing/events/skb/kfree_skb/format',
      undefined,
    );
    expect(result).toEqual({
      ok: false,
      error: {
        code: 'read_failed',
        message: expect.stringContaining('/nonexistent/tracing/events/skb/kfree_skb/format'),
      },
    });
  });
});
