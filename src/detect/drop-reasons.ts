/**
 * The running kernel's `enum skb_drop_reason`. The numbers differ between kernels (values are
 * inserted in the middle of the enum from one release to the next), so they are read at
 * start-up and never hard-coded.
 */
export interface DropReasonTable {
  codeOf(name: string): number | undefined;
  /** Unknown codes are named `UNKNOWN_<code>` so that an event is never lost for want of a name. */
  nameOf(code: number): string;
  /** Every name, in the order of the kernel's table. */
  readonly names: readonly string[];
  readonly size: number;
}

export type DropReasonErrorCode =
  'no_reason_field' | 'no_symbol_table' | 'empty_symbol_table' | 'read_failed';

export interface DropReasonError {
  readonly code: DropReasonErrorCode;
  readonly message: string;
}

export type DropReasonResult =
  | { readonly ok: true; readonly table: DropReasonTable }
  | { readonly ok: false; readonly error: DropReasonError };

const SYMBOLIC_REASON = '__print_symbolic(REC->reason,';
const SYMBOL_ENTRY = /\{\s*(-?\d+|0x[0-9a-fA-F]+)\s*,\s*"([^"]*)"\s*\}/g;

export function createDropReasonTable(
  entries: Iterable<readonly [string, number]>,
): DropReasonTable {
  const byName = new Map<string, number>();
  const byCode = new Map<number, string>();
  for (const [name, code] of entries) {
    byName.set(name, code);
    if (!byCode.has(code)) byCode.set(code, name);
  }
  return {
    codeOf: (name) => byName.get(name),
    nameOf: (code) => byCode.get(code) ?? `UNKNOWN_${code}`,
    names: [...byName.keys()],
    size: byName.size,
  };
}

/** Parses the text of a tracepoint format file; never throws. */
export function parseDropReasons(formatText: string): DropReasonResult {
  if (!/field:[^;]*\breason;/.test(formatText)) {
    return failure(
      'no_reason_field',
      'skb:kfree_skb has no reason field: this kernel predates drop reasons (added in 5.17)',
    );
  }
  const start = formatText.indexOf(SYMBOLIC_REASON);
  if (start === -1) {
    return failure(
      'no_symbol_table',
      'skb:kfree_skb format has no __print_symbolic(REC->reason, …) table',
    );
  }
  const entries: [string, number][] = [];
  for (const match of formatText.slice(start + SYMBOLIC_REASON.length).matchAll(SYMBOL_ENTRY)) {
    const [, code, name] = match;
    if (code === undefined || name === undefined) continue;
    entries.push([name, Number(code)]);
  }
  if (entries.length === 0) {
    return failure('empty_symbol_table', 'skb:kfree_skb drop reason table is empty');
  }
  return { ok: true, table: createDropReasonTable(entries) };
}

/**
 * The drop reasons of a format file read once by capability detection (capabilities.ts):
 * parsed when it could be read, else an error value naming the path.
 */
export function dropReasonsOfFormat(
  path: string,
  formatText: string | undefined,
): DropReasonResult {
  return formatText === undefined
    ? failure('read_failed', `cannot read ${path} (is tracefs mounted?)`)
    : parseDropReasons(formatText);
}

function failure(code: DropReasonErrorCode, message: string): DropReasonResult {
  return { ok: false, error: { code, message } };
}
