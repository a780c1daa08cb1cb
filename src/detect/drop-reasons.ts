import { readFile } from 'node:fs/promises';

/** Where the running kernel describes `tracepoint:skb:kfree_skb`, its drop reasons included. */
export const KFREE_SKB_FORMAT_PATH = '/sys/kernel/tracing/events/skb/kfree_skb/format';

/**
 * The running kernel's `enum skb_drop_reason`. The numbers differ between kernels (values are
 * inserted in the middle of the enum from one release to the next), so they are read at
 * start-up and never hard-coded.
 */
export interface DropReasonTable {
  codeOf(name: string): number | undefined;
  /** Unknown codes are named `UNKNOWN_<code>` so that an event is never lost for want of a name. */
  nameOf(code: number): string;
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

export type ReadText = (path: string) => Promise<string>;

const readUtf8: ReadText = (path) => readFile(path, 'utf8');

/** Reads and parses the format file; an unreadable file is an error value, not an exception. */
export async function loadDropReasons(
  path: string = KFREE_SKB_FORMAT_PATH,
  readText: ReadText = readUtf8,
): Promise<DropReasonResult> {
  let text: string;
  try {
    text = await readText(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return failure('read_failed', `cannot read ${path} (is tracefs mounted?): ${reason}`);
  }
  return parseDropReasons(text);
}

function failure(code: DropReasonErrorCode, message: string): DropReasonResult {
  return { ok: false, error: { code, message } };
}
