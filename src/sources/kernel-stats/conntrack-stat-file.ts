/** Per network namespace: `/proc/<pid>/net/stat/nf_conntrack` reads the namespace of <pid>. */
export const CONNTRACK_STAT_PATH = '/proc/net/stat/nf_conntrack';

/**
 * The kernel's header names differ from what they count on some kernels; these are renamed to
 * the names `conntrack -S` uses. `clashres` (5.10+) counts clashes resolved without a drop;
 * `chainlength` (5.15+, where `delete_list` was) counts inserts refused for a too long chain.
 */
export const COLUMN_ALIASES: Readonly<Record<string, string>> = {
  clashres: 'clash_resolve',
  chainlength: 'chaintoolong',
};

export const ENTRIES_COLUMN = 'entries';
export const CLASH_RESOLVE_COLUMN = 'clash_resolve';

export interface ConntrackStatSnapshot {
  /** Column names in file order, normalised, `entries` first. */
  readonly columns: readonly string[];
  /** One row per possible CPU, raw unsigned 32-bit values in `columns` order. */
  readonly rows: readonly (readonly number[])[];
  /** Conntrack entries in this namespace's table: printed identically on every row. */
  readonly entries: number;
  /** Every column but `entries`, summed over the CPUs. */
  readonly totals: ReadonlyMap<string, number>;
  /** False before kernel 5.10, where insert_failed also counted clashes that were resolved. */
  readonly hasClashResolve: boolean;
}

export type StatFileErrorCode = 'empty' | 'no_entries_column' | 'no_rows' | 'bad_row';

export type StatFileResult =
  | { readonly ok: true; readonly stats: ConntrackStatSnapshot }
  | {
      readonly ok: false;
      readonly error: { readonly code: StatFileErrorCode; readonly message: string };
    };

const HEX_U32 = /^[0-9a-fA-F]{1,8}$/;

/** Parses the text of an nf_conntrack stat file; never throws. Unknown columns are kept. */
export function parseConntrackStatFile(text: string): StatFileResult {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const [header, ...body] = lines;
  if (header === undefined) return failure('empty', 'the conntrack stat file is empty');
  const columns = header
    .trim()
    .split(/\s+/)
    .map((name) => COLUMN_ALIASES[name] ?? name);
  if (columns[0] !== ENTRIES_COLUMN) {
    return failure(
      'no_entries_column',
      `unexpected header, first column is not entries: "${header.slice(0, 120)}"`,
    );
  }
  if (body.length === 0)
    return failure('no_rows', 'the conntrack stat file has a header but no CPU rows');

  const rows: number[][] = [];
  for (const [index, line] of body.entries()) {
    const fields = line.trim().split(/\s+/);
    if (fields.length !== columns.length || !fields.every((field) => HEX_U32.test(field))) {
      return failure(
        'bad_row',
        `row ${index + 1} has ${fields.length} fields for ${columns.length} columns or a value that is not hex: "${line.slice(0, 120)}"`,
      );
    }
    rows.push(fields.map((field) => Number.parseInt(field, 16)));
  }

  const totals = new Map<string, number>();
  columns.forEach((column, index) => {
    if (index === 0) return;
    totals.set(
      column,
      rows.reduce((sum, row) => sum + (row[index] ?? 0), 0),
    );
  });
  return {
    ok: true,
    stats: {
      columns,
      rows,
      entries: rows[0]?.[0] ?? 0,
      totals,
      hasClashResolve: columns.includes(CLASH_RESOLVE_COLUMN),
    },
  };
}

function failure(code: StatFileErrorCode, message: string): StatFileResult {
  return { ok: false, error: { code, message } };
}
