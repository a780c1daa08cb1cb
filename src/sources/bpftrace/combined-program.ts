/**
 * One bpftrace program made of several probe scripts, so that one bpftrace process (one LLVM,
 * one compile and attach) runs every probe of a mode. bpftrace 0.17 allows several blocks on
 * the same tracepoint or interval in one program, but:
 * - positional parameters belong to the whole program, so each script's `$1`, `$2`… is
 *   replaced by its own literal argument (they are integers);
 * - it refuses a second `BEGIN` or `END` ("More than one END probe defined"), so the bodies of
 *   those blocks are merged into one of each;
 * - maps are global: a map a probe prints (declared in `maps`) must be one probe's alone, else
 *   its output could not be routed; a private map used by several scripts (the kprobe scripts
 *   each keep `@confirming_skb`) is renamed in all but the first, so they keep their own.
 */

/** A probe script ready to join a combined program. */
export interface CombinableScript {
  readonly name: string;
  /** The script's text as read from its file. */
  readonly source: string;
  readonly args: readonly string[];
  /** Maps the probe prints, whose output is routed to it by name. */
  readonly maps: readonly string[];
}

export type CombineErrorCode = 'missing_positional' | 'not_integer_positional' | 'map_clash';

export class CombineError extends Error {
  override readonly name = 'CombineError';
  constructor(
    readonly code: CombineErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const POSITIONAL = /\$(\d+)(?![0-9A-Za-z_])/g;
const MAP_NAME = /@[A-Za-z_][A-Za-z0-9_]*/g;
const INTEGER = /^-?\d+$/;

/** The combined program's text; throws a CombineError when the scripts cannot share one. */
export function combineScripts(scripts: readonly CombinableScript[]): string {
  const owners = new Map<string, string>();
  for (const script of scripts) {
    for (const map of script.maps) {
      const owner = owners.get(map);
      if (owner !== undefined && owner !== script.name) {
        throw new CombineError(
          'map_clash',
          `${map} is printed by both ${owner} and ${script.name}`,
        );
      }
      owners.set(map, script.name);
    }
  }
  const seen = new Set<string>();
  const begins: string[] = [];
  const ends: string[] = [];
  const groups = new Map<string, ScriptBlock[]>();
  scripts.forEach((script, index) => {
    let text = substitutePositionals(script);
    const used = new Set(stripComments(text).match(MAP_NAME) ?? []);
    for (const map of used) {
      const owner = owners.get(map);
      if (owner !== undefined && owner !== script.name) {
        throw new CombineError(
          'map_clash',
          `${map} is printed by ${owner} and also used by ${script.name}`,
        );
      }
    }
    const renames = [...used].filter((map) => seen.has(map) && !owners.has(map));
    for (const map of renames) {
      text = text.replace(new RegExp(`${map}(?![A-Za-z0-9_])`, 'g'), `${map}__${String(index)}`);
    }
    for (const map of used) seen.add(renames.includes(map) ? `${map}__${String(index)}` : map);
    const begin = extractBlock(text, 'BEGIN');
    text = begin.rest;
    const end = extractBlock(text, 'END');
    text = end.rest;
    if (begin.body !== undefined) begins.push(`  /* ${script.name} */\n${begin.body}`);
    if (end.body !== undefined) ends.push(`  /* ${script.name} */\n${end.body}`);
    for (const block of probeBlocks(text)) {
      const group = groups.get(block.attach) ?? [];
      group.push({ ...block, script: script.name, index });
      // Re-inserted, so that a joined block stands where its last part stood: bpftrace infers
      // a map's type from the blocks before its reads (clash-resolved.bt reads a tuple in its
      // last block that its earlier blocks store).
      groups.delete(block.attach);
      groups.set(block.attach, group);
    }
  });
  const parts = [
    ...(begins.length > 0 ? [`BEGIN\n{\n${begins.join('\n')}\n}\n`] : []),
    ...[...groups.entries()].map(([attach, group]) => renderGroup(attach, group)),
    ...(ends.length > 0 ? [`END\n{\n${ends.join('\n')}\n}\n`] : []),
  ];
  return parts.join('\n');
}

/** One top-level block of a script: `attach /predicate/ { body }`. */
interface ProbeBlock {
  readonly attach: string;
  readonly predicate?: string;
  readonly body: string;
}

interface ScriptBlock extends ProbeBlock {
  readonly script: string;
  readonly index: number;
}

const SCRATCH_VARIABLE = /\$([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * The blocks of every script on one attach point, as one block: each script's predicate
 * becomes an `if` around its body. bpftrace would otherwise load one BPF program per block,
 * and on a tracepoint that fires for every freed packet (`skb:kfree_skb`) each program is paid
 * per packet: one program keeps more of a drop storm's packet rate (docs/benchmarks.md).
 * Scratch variables are per program in bpftrace, so those of every script after the first
 * are renamed, in case two scripts give one name different types.
 */
function renderGroup(attach: string, group: readonly ScriptBlock[]): string {
  const [only] = group;
  if (group.length === 1 && only !== undefined) {
    const predicate = only.predicate === undefined ? '' : `\n/${only.predicate}/`;
    return `/* ==== probe ${only.script} ==== */\n${attach}${predicate}\n{${only.body}}\n`;
  }
  const parts = group.map((block, position) => {
    const body =
      position === 0
        ? block.body
        : block.body.replace(
            SCRATCH_VARIABLE,
            (_m, name: string) => `$${name}__${String(block.index)}`,
          );
    const predicate =
      position === 0 || block.predicate === undefined
        ? block.predicate
        : block.predicate.replace(
            SCRATCH_VARIABLE,
            (_m, name: string) => `$${name}__${String(block.index)}`,
          );
    const code = predicate === undefined ? body : `if (${predicate}) {${body}}`;
    return `/* ==== probe ${block.script} ==== */\n${code}`;
  });
  return `${attach}\n{\n${parts.join('\n')}\n}\n`;
}

/** The top-level blocks of a script whose BEGIN and END blocks were taken out. */
function probeBlocks(text: string): ProbeBlock[] {
  const uncommented = stripComments(text);
  const code = blankCommentsAndStrings(text);
  const blocks: ProbeBlock[] = [];
  let start = 0;
  let depth = 0;
  let open = -1;
  for (let i = 0; i < code.length; i += 1) {
    if (code[i] === '{') {
      if (depth === 0) open = i;
      depth += 1;
    } else if (code[i] === '}') {
      depth -= 1;
      if (depth === 0) {
        const header = uncommented.slice(start, open).trim();
        const slash = header.indexOf('/');
        const attach = (slash < 0 ? header : header.slice(0, slash)).trim().replace(/\s+/g, ' ');
        const predicate =
          slash < 0 ? undefined : header.slice(slash + 1, header.lastIndexOf('/')).trim();
        blocks.push({
          attach,
          ...(predicate === undefined ? {} : { predicate }),
          body: text.slice(open + 1, i),
        });
        start = i + 1;
      }
    }
  }
  return blocks;
}

function substitutePositionals(script: CombinableScript): string {
  return script.source.replace(POSITIONAL, (_match, digits: string) => {
    const value = script.args[Number(digits) - 1];
    if (value === undefined) {
      throw new CombineError(
        'missing_positional',
        `${script.name} reads $${digits} but has ${String(script.args.length)} arguments`,
      );
    }
    if (!INTEGER.test(value)) {
      throw new CombineError(
        'not_integer_positional',
        `${script.name}: $${digits} is "${value}", not an integer`,
      );
    }
    return value;
  });
}

/** The text with comments blanked out (same length), for scanning code only. */
function stripComments(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' '))
    .replace(/\/\/[^\n]*/g, (comment) => ' '.repeat(comment.length));
}

/** The text with comments and string literals blanked out (same length). */
function blankCommentsAndStrings(text: string): string {
  return stripComments(text).replace(/"(?:[^"\\\n]|\\.)*"/g, (s) => ' '.repeat(s.length));
}

/**
 * Removes the top-level block `NAME { … }` (at the start of a line) and returns its body, the
 * braces matched on the text without comments and strings.
 */
function extractBlock(text: string, name: 'BEGIN' | 'END'): { rest: string; body?: string } {
  const code = blankCommentsAndStrings(text);
  const header = new RegExp(`^${name}\\s*\\{`, 'm').exec(code);
  if (header === null) return { rest: text };
  const open = header.index + header[0].length - 1;
  let depth = 0;
  for (let i = open; i < code.length; i += 1) {
    if (code[i] === '{') depth += 1;
    else if (code[i] === '}') {
      depth -= 1;
      if (depth === 0) {
        return {
          rest: text.slice(0, header.index) + text.slice(i + 1),
          body: text.slice(open + 1, i).replace(/^\n|\n\s*$/g, ''),
        };
      }
    }
  }
  return { rest: text };
}
