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
  const bodies: string[] = [];
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
    bodies.push(`/* ==== probe ${script.name} ==== */\n${text.trim()}\n`);
  });
  const parts = [
    ...(begins.length > 0 ? [`BEGIN\n{\n${begins.join('\n')}\n}\n`] : []),
    ...bodies,
    ...(ends.length > 0 ? [`END\n{\n${ends.join('\n')}\n}\n`] : []),
  ];
  return parts.join('\n');
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

/**
 * Removes the top-level block `NAME { … }` (at the start of a line) and returns its body, the
 * braces matched on the text without comments and strings.
 */
function extractBlock(text: string, name: 'BEGIN' | 'END'): { rest: string; body?: string } {
  const code = stripComments(text).replace(/"(?:[^"\\\n]|\\.)*"/g, (s) => ' '.repeat(s.length));
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
