/**
 * What `bpftrace --info` says about itself and the kernel. bpftrace prints it on stderr
 * as sections of `key: value` lines; keys vary between versions (`btf (depends on
 * Build:libbpf)` in 0.9, `btf` later; `kfunc` became `fentry`), so keys are normalised and
 * absent keys read as unknown rather than as "no".
 */
export interface BpftraceInfo {
  /** `Build: version`, e.g. `v0.17.0`; undefined when the text carries none. */
  readonly version: string | undefined;
  /** Every section's entries, keys lower-cased without their parenthesised remarks. */
  readonly sections: ReadonlyMap<string, ReadonlyMap<string, string>>;
}

const SECTION = /^(\S.*?)\s*$/;
// A key may hold a colon inside its remark: `btf (depends on Build:libbpf): no`.
const ENTRY = /^\s+((?:[^:(]|\([^)]*\))+?)\s*:\s*(.*?)\s*$/;

function normaliseKey(key: string): string {
  return key
    .replace(/\([^)]*\)/g, '')
    .trim()
    .toLowerCase();
}

export function parseBpftraceInfo(text: string): BpftraceInfo {
  const sections = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const entry = ENTRY.exec(line);
    if (entry !== null && current !== undefined) {
      current.set(normaliseKey(entry[1] ?? ''), entry[2] ?? '');
      continue;
    }
    const section = SECTION.exec(line);
    if (section !== null && !line.startsWith(' ')) {
      current = new Map();
      sections.set(normaliseKey(section[1] ?? ''), current);
    }
  }
  return { version: sections.get('build')?.get('version'), sections };
}

/** `yes` → true, `no` → false, anything else or absent → undefined. */
export function bpftraceInfoFlag(
  info: BpftraceInfo,
  section: string,
  key: string,
): boolean | undefined {
  const value = info.sections.get(section)?.get(key);
  if (value === 'yes') return true;
  if (value === 'no') return false;
  return undefined;
}
